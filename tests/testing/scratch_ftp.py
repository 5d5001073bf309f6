#!/usr/bin/python3
"""A scratch FTP / FTPS server for rwg's unit tests (tests/testing/scratch_ftp.h).

pyftpdlib's FTPServer on 127.0.0.1, port 0, with one user whose home is --dir; prints
"PORT <n>" on stdout once listening, then serves until killed or until its stdin closes (the
test that started it is gone, however it ended). Options make it behave like
the servers rwg meets: explicit TLS required on both channels, no MLSD (LIST only), a disk
that fills up (552, as RFC 959 says), a refused rename, a slow upload channel.
"""

import argparse
import os
import sys
import threading

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler, ThrottledDTPHandler, TLS_FTPHandler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--tls-cert", help="PEM with the certificate and its key: TLS required")
    p.add_argument("--tls13", action="store_true",
                   help="offer TLS 1.3 too (the server then sends session tickets on data "
                        "connections, which a client that never reads an upload's data "
                        "connection leaves unread: its close resets the connection and the "
                        "upload's tail can be lost)")
    p.add_argument("--no-mlsd", action="store_true", help="answer MLSD with 500")
    p.add_argument("--disk-bytes", type=int, default=0,
                   help="the directory's files may hold this many bytes in all (0: no limit)")
    p.add_argument("--refuse-rename", action="store_true", help="answer RNTO with 550")
    p.add_argument("--read-limit", type=int, default=0, help="upload bytes/s (0: no limit)")
    p.add_argument("--connections", help="a file that gets a line per control connection")
    a = p.parse_args()

    authorizer = DummyAuthorizer()
    authorizer.add_user(a.user, a.password, a.dir, perm="elradfmwMT")

    base = TLS_FTPHandler if a.tls_cert else FTPHandler
    dtp_base = base.dtp_handler
    if a.read_limit and not a.tls_cert:
        dtp_base = ThrottledDTPHandler

    class Dtp(dtp_base):
        if a.read_limit and not a.tls_cert:
            read_limit = a.read_limit

        def readable(self):
            # pyftpdlib's TLS data channel is polled before its transfer command arrives and
            # closes itself then; curl sends TYPE between opening the data connection and
            # STOR / RETR. Wait for the command (the handshake still goes on).
            if a.tls_cert and not self.receive and not self._initialized:
                return self._ssl_want_read
            return super().readable()

        def close(self):
            # A disk that filled up during the upload: 552 (exceeded storage allocation)
            # once the client has sent it all, as servers that read the rest of an upload
            # they cannot store answer.
            if getattr(self.file_obj, "full", False) and not self._closed:
                self._resp = ("552 Exceeded storage allocation (no space left on device).",
                              lambda *_: None)
            super().close()

    class Fs(AbstractedFS):
        def open(self, filename, mode):
            f = super().open(filename, mode)
            if a.disk_bytes and ("w" in mode or "a" in mode):
                return LimitedFile(f, a.dir, a.disk_bytes)
            return f

    class Handler(base):
        dtp_handler = Dtp
        abstracted_fs = Fs
        authorizer = None
        proto_cmds = dict(base.proto_cmds)
        if a.no_mlsd:
            proto_cmds.pop("MLSD", None)
            proto_cmds.pop("MLST", None)

        def on_connect(self):
            if a.connections:
                with open(a.connections, "a") as f:
                    f.write("connect\n")

        def ftp_RNTO(self, path):
            if a.refuse_rename:
                self.respond("550 Rename refused.")
                return
            return super().ftp_RNTO(path)

    Handler.authorizer = authorizer
    Handler.banner = "rwg scratch FTP server ready."
    Handler.auth_failed_timeout = 0.1  # not 3 s per refused login: tests try a few
    if a.tls_cert:
        Handler.certfile = a.tls_cert
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        if not a.tls13:
            from OpenSSL import SSL
            Handler.ssl_options = SSL.OP_NO_TLSv1_3

    from pyftpdlib.servers import FTPServer
    server = FTPServer(("127.0.0.1", 0), Handler)
    def exit_with_parent():
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    print("PORT %d" % server.address[1], flush=True)
    server.serve_forever(handle_exit=True)


class LimitedFile:
    """A file of a directory whose files may hold `limit` bytes in all: the rest is dropped."""

    def __init__(self, f, directory, limit):
        self._f = f
        self._dir = directory
        self._limit = limit

    full = False

    def write(self, data):
        if not self.full:
            self._f.flush()
            used = sum(e.stat().st_size for e in os.scandir(self._dir) if e.is_file())
            self.full = used + len(data) > self._limit
        if self.full:
            return len(data)  # what no longer fits is dropped
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


if __name__ == "__main__":
    main()
