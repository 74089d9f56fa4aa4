// Raw-socket helpers of the API daemon's connection tests (http_gate_test, https_gate_test):
// what a client on 127.0.0.1 sends and what it sees before the server closes.
#ifndef CHUNKFERRY_CONTROL_GATE_TEST_UTIL_H_
#define CHUNKFERRY_CONTROL_GATE_TEST_UTIL_H_

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/net.h"

namespace chunkferry::control::gate_test {

inline io::Fd ConnectLocal(uint16_t port) {
  auto fd = io::Connect(io::Endpoint{"127.0.0.1", port}, 5000);
  EXPECT_TRUE(fd.ok()) << fd.status();
  return fd.ok() ? *std::move(fd) : io::Fd();
}

inline bool SendAll(int fd, std::string_view bytes) {
  return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

// What the server sends until it closes (EOF or a reset) or `ms` pass; *closed says which.
inline std::string ReceiveUntilClosed(int fd, int ms, bool* closed = nullptr) {
  std::string got;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  char buf[4096];
  if (closed != nullptr) *closed = false;
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0) {
      if (closed != nullptr) *closed = true;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Occurrences of `what` in `text` (answers in a pipelined stream).
inline size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace chunkferry::control::gate_test

#endif  // CHUNKFERRY_CONTROL_GATE_TEST_UTIL_H_
