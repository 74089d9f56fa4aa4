// TCP sockets for the store daemon and its clients: parsing "host:port", listening, accepting
// and connecting with timeouts, and tuning a connection for bulk transfer. Only setup lives
// here; the data itself moves through io::Queue (Request::Op::kSend / kRecv, io/queue.h) on the
// blocking sockets these functions return.
#ifndef CHUNKFERRY_IO_NET_H_
#define CHUNKFERRY_IO_NET_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/fd.h"

namespace chunkferry::io {

// Where to listen or connect: a host name, an IPv4 address or an IPv6 address (without
// brackets), and a TCP port (0: any free port, for Listen only).
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Parses "host:port", "1.2.3.4:port" or "[::1]:port" (an IPv6 address needs its brackets).
// The port is decimal, 0..65535. Returns InvalidArgument, quoting the text and saying what is
// wrong (no port, port not a number or out of range, empty host...). The host is not resolved.
[[nodiscard]] absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text);

// Formats an endpoint the way ParseEndpoint reads it ("[::1]:80" for IPv6 addresses).
std::string FormatEndpoint(const Endpoint& endpoint);

// Makes a Status from the errno of a socket operation: the message of ErrnoStatus ("<op>
// <what>: <strerror>"), with Unavailable for what a peer or the network did (connection
// refused, reset, broken pipe, unreachable, timed out), AlreadyExists for an address in use and
// ResourceExhausted for running out of descriptors. Use it for the -errno of a failed kSend or
// kRecv completion too.
absl::Status SocketErrorStatus(int err, std::string_view op, std::string_view what);

// Makes a listening TCP socket bound to `endpoint` (SO_REUSEADDR, close-on-exec, non-blocking
// so that Accept cannot hang) with the given backlog. The host is resolved; the first address
// that binds wins. Port 0 binds a free port: see LocalPort. Errors name the address.
[[nodiscard]] absl::StatusOr<Fd> Listen(const Endpoint& endpoint, int backlog);

// Returns the local port a socket is bound to (the one the kernel chose for port 0).
[[nodiscard]] absl::StatusOr<uint16_t> LocalPort(int fd);

// Waits up to `timeout_ms` (negative: without limit) for a connection on `listen_fd` and
// accepts it. Returns a blocking, close-on-exec socket, and its peer as "1.2.3.4:5678" or
// "[::1]:5678" in *peer when peer is not null. DeadlineExceeded when the time is up, so that a
// server loop can call it again after checking whether it should stop; signals (EINTR) and
// connections that vanish before being accepted do not end the wait early. ResourceExhausted
// when the process is out of descriptors.
[[nodiscard]] absl::StatusOr<Fd> Accept(int listen_fd, int64_t timeout_ms, std::string* peer);

// Resolves `endpoint` and connects to the first of its addresses that accepts, within
// `timeout_ms` in total (negative: the kernel's own limit). Returns a blocking, close-on-exec
// socket. Errors name the endpoint and each address tried with the reason, e.g. "connect
// 127.0.0.1:9: Connection refused" (Unavailable); DeadlineExceeded when the time ran out;
// NotFound when the host name does not resolve; InvalidArgument for port 0.
[[nodiscard]] absl::StatusOr<Fd> Connect(const Endpoint& endpoint, int64_t timeout_ms);

// The socket buffer size TuneSocket asks for.
inline constexpr int kSocketBufferBytes = 4 << 20;

// Prepares a connected TCP socket for request/response traffic and bulk transfer: TCP_NODELAY
// (small requests go out at once), and kSocketBufferBytes send and receive buffers when the
// system allows that much (net.core.wmem_max / rmem_max). Below that limit the buffers are left
// to the kernel's autotuning, which a fixed, smaller size would only switch off. Failure to
// set TCP_NODELAY is an error (not a TCP socket, bad fd); buffer sizes are best effort.
[[nodiscard]] absl::Status TuneSocket(int fd);

}  // namespace chunkferry::io

#endif  // CHUNKFERRY_IO_NET_H_
