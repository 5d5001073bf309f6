// A UDP end on 127.0.0.1 with a kernel-chosen port, standing for a phone or the iPBX in the
// media relay's tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "services/media_relay/session.h"

namespace rwg::media_relay {

class End {
 public:
  End() {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~End() { close(fd_); }
  End(const End&) = delete;
  End& operator=(const End&) = delete;
  int port() const { return port_; }
  Address address() const {
    Address a;
    Address::Parse("127.0.0.1", port_, &a);
    return a;
  }
  void SendTo(int port, const std::string& data) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  // One datagram within `ms`, or "" when none came.
  std::string Receive(int ms = 500) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, ms) != 1) return "";
    char buf[2048];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace rwg::media_relay
