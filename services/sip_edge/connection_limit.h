// A cap on the TCP and TLS connections one source may hold open on the set-side listeners:
// thousands of idle connections from one address would otherwise cost a file descriptor and
// a sofia-sip transport each, for as long as the kernel keeps them. A source is an IPv4
// address or an IPv6 /64 (as for the flood protection, protection.h). A connection beyond the
// cap is closed as soon as it is accepted, before anything is read from it.
//
// How: sofia-sip accepts connections with accept(2) through the dynamic linker; sip-edge
// defines accept() (calling libc's) and, for the listening sockets given here, counts each
// source's connections that are still open (a connection is known by its descriptor and its
// socket's inode: one closed since, a descriptor reused for another socket, or a connection
// its peer closed no longer counts). Other sockets of the process (gRPC, metrics) pass
// through untouched.
#pragma once

#include <prometheus/counter.h>

#include <cstddef>
#include <vector>

namespace rwg::sip_edge {

// Applies `limit` connections per source (0: no limit) to the connections accepted on
// `listeners`, replacing any previous setting. Each connection closed for the limit counts in
// `refused` (may be null; must outlive the listeners).
void SetConnectionLimit(const std::vector<int>& listeners, size_t limit,
                        prometheus::Counter* refused);

// Whether sofia-sip's accept() calls reach the limit (the dynamic linker bound it here).
bool ConnectionLimitActive();

// Connections counted now for the source of `ip` (tests).
size_t CountedConnections(const char* ip);

}  // namespace rwg::sip_edge
