#include "io/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/fd.h"

namespace chunkferry::io {
namespace {

using Clock = std::chrono::steady_clock;

// Abseil here is built with its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0).
absl::string_view View(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status BadEndpoint(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad endpoint \"", View(text), "\": ", View(why),
                                                 " (want host:port, ",
                                                 "1.2.3.4:port or [::1]:port)"));
}

// Returns the deadline `timeout_ms` from now, or nullopt for a negative (unlimited) timeout.
std::optional<Clock::time_point> DeadlineAfter(int64_t timeout_ms) {
  // Beyond a few years the clock arithmetic could overflow; that is "unlimited" anyway.
  constexpr int64_t kUnlimitedMs = int64_t{1} << 40;
  if (timeout_ms < 0 || timeout_ms >= kUnlimitedMs) return std::nullopt;
  return Clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Returns poll(2)'s timeout for what is left until `deadline`: -1 without one, rounded up so
// that a wait never ends just before its deadline and spins.
int PollTimeout(const std::optional<Clock::time_point>& deadline) {
  if (!deadline.has_value()) return -1;
  const auto left = *deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

// Waits for `events` on `fd` until `deadline`, through EINTR. Returns 1 when ready (or in
// error: the next call on the socket tells which), 0 when the time is up, or -errno.
int PollUntil(int fd, short events, const std::optional<Clock::time_point>& deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, PollTimeout(deadline));
    if (rc > 0) return 1;
    if (rc == 0) {
      // poll may wake a hair early; only a passed deadline counts as timed out.
      if (deadline.has_value() && Clock::now() < *deadline) continue;
      return 0;
    }
    if (errno != EINTR) return -errno;
  }
}

// Formats a socket address as "1.2.3.4:80" or "[::1]:80".
std::string AddressString(const sockaddr* addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
  }
  return absl::StrCat("(address family ", addr->sa_family, ")");
}

struct AddrinfoDeleter {
  void operator()(addrinfo* info) const { ::freeaddrinfo(info); }
};
using AddrinfoList = std::unique_ptr<addrinfo, AddrinfoDeleter>;

// Resolves `endpoint` to TCP addresses; `passive` for binding (an empty result is impossible:
// getaddrinfo fails instead).
absl::StatusOr<AddrinfoList> Resolve(const Endpoint& endpoint, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const std::string port = std::to_string(endpoint.port);
  addrinfo* result = nullptr;
  const int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &result);
  if (rc == 0) return AddrinfoList(result);
  if (rc == EAI_SYSTEM) return SocketErrorStatus(errno, "resolve", FormatEndpoint(endpoint));
  const std::string message =
      absl::StrCat("resolve ", FormatEndpoint(endpoint), ": ", ::gai_strerror(rc));
  switch (rc) {
    case EAI_NONAME:
    case EAI_NODATA:
    case EAI_ADDRFAMILY:
      return absl::NotFoundError(message);
    case EAI_AGAIN:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status SetBlocking(int fd, bool blocking) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return SocketErrorStatus(errno, "fcntl(F_GETFL)", absl::StrCat("fd ", fd));
  const int wanted = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) != 0) {
    return SocketErrorStatus(errno, "fcntl(F_SETFL)", absl::StrCat("fd ", fd));
  }
  return absl::OkStatus();
}

// Connects a fresh socket to one address, waiting until `deadline`.
absl::StatusOr<Fd> ConnectOne(const addrinfo& ai, const std::optional<Clock::time_point>& deadline,
                              int64_t timeout_ms) {
  const std::string where = AddressString(ai.ai_addr);
  Fd fd(::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.ai_protocol));
  if (!fd.valid()) return SocketErrorStatus(errno, "socket for", where);
  if (::connect(fd.get(), ai.ai_addr, ai.ai_addrlen) != 0) {
    // A non-blocking connect does not restart after a signal; either way it carries on in the
    // background and poll tells when it is done.
    if (errno != EINPROGRESS && errno != EINTR) return SocketErrorStatus(errno, "connect", where);
    const int ready = PollUntil(fd.get(), POLLOUT, deadline);
    if (ready < 0) return SocketErrorStatus(-ready, "poll connecting to", where);
    if (ready == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("connect ", where, ": no answer within ", timeout_ms, " ms"));
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return SocketErrorStatus(err, "connect", where);
  }
  if (absl::Status blocking = SetBlocking(fd.get(), true); !blocking.ok()) return blocking;
  return fd;
}

}  // namespace

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text) {
  if (text.empty()) return BadEndpoint(text, "empty");
  for (const char c : text) {
    if (c <= ' ' || c == 0x7f) return BadEndpoint(text, "contains a space or control character");
  }
  std::string_view host;
  std::string_view rest;  // ":port" when well formed
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return BadEndpoint(text, "'[' without ']'");
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    if (!host.empty() && host.find(':') == std::string_view::npos) {
      return BadEndpoint(text, "brackets are for IPv6 addresses");
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return BadEndpoint(text, "no port");
    host = text.substr(0, colon);
    rest = text.substr(colon);
    if (host.find(':') != std::string_view::npos) {
      return BadEndpoint(text, "an IPv6 address needs brackets, as in [::1]:port");
    }
    if (host.find_first_of("[]") != std::string_view::npos) {
      return BadEndpoint(text, "stray bracket");
    }
  }
  if (host.empty()) return BadEndpoint(text, "empty host");
  if (rest.empty() || rest.front() != ':') return BadEndpoint(text, "no port after the host");
  const std::string_view port = rest.substr(1);
  if (port.empty()) return BadEndpoint(text, "empty port");
  if (port.find_first_not_of("0123456789") != std::string_view::npos) {
    return BadEndpoint(text, absl::StrCat("port \"", View(port), "\" is not a decimal number"));
  }
  uint32_t value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return BadEndpoint(text, absl::StrCat("port ", View(port), " is out of range [0, 65535]"));
  }
  return Endpoint{std::string(host), static_cast<uint16_t>(value)};
}

std::string FormatEndpoint(const Endpoint& endpoint) {
  if (endpoint.host.find(':') != std::string::npos) {
    return absl::StrCat("[", endpoint.host, "]:", endpoint.port);
  }
  return absl::StrCat(endpoint.host, ":", endpoint.port);
}

absl::Status SocketErrorStatus(int err, std::string_view op, std::string_view what) {
  const absl::Status status = ErrnoStatus(err, op, what);
  switch (err) {
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case EHOSTDOWN:
    case ENETUNREACH:
    case ENETDOWN:
    case ENETRESET:
    case ENOTCONN:
    case EADDRNOTAVAIL:
      return absl::UnavailableError(status.message());
    case EADDRINUSE:
      return absl::AlreadyExistsError(status.message());
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      return absl::ResourceExhaustedError(status.message());
    default:
      return status;
  }
}

absl::StatusOr<Fd> Listen(const Endpoint& endpoint, int backlog) {
  absl::StatusOr<AddrinfoList> addrs = Resolve(endpoint, /*passive=*/true);
  if (!addrs.ok()) return addrs.status();
  absl::Status last = absl::InternalError(
      absl::StrCat("listen ", FormatEndpoint(endpoint), ": no address to bind"));
  for (const addrinfo* ai = addrs->get(); ai != nullptr; ai = ai->ai_next) {
    const std::string where = AddressString(ai->ai_addr);
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = SocketErrorStatus(errno, "socket for", where);
      continue;
    }
    // A restarted daemon can bind again while its old connections sit in TIME_WAIT.
    const int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
      last = SocketErrorStatus(errno, "setsockopt(SO_REUSEADDR) on", where);
      continue;
    }
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last = SocketErrorStatus(errno, "bind", where);
      continue;
    }
    if (::listen(fd.get(), backlog) != 0) {
      last = SocketErrorStatus(errno, "listen", where);
      continue;
    }
    return fd;
  }
  return last;
}

absl::StatusOr<uint16_t> LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return SocketErrorStatus(errno, "getsockname", absl::StrCat("fd ", fd));
  }
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return absl::InvalidArgumentError(
      absl::StrCat("fd ", fd, " is not an IP socket (address family ", addr.ss_family, ")"));
}

absl::StatusOr<Fd> Accept(int listen_fd, int64_t timeout_ms, std::string* peer) {
  const std::optional<Clock::time_point> deadline = DeadlineAfter(timeout_ms);
  for (;;) {
    const int ready = PollUntil(listen_fd, POLLIN, deadline);
    if (ready < 0)
      return SocketErrorStatus(-ready, "poll", absl::StrCat("listening fd ", listen_fd));
    if (ready == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("accept on fd ", listen_fd, ": no connection within ", timeout_ms, " ms"));
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    // The accepted socket is blocking whatever the listener is: the queue's threads backend
    // needs blocking calls.
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd >= 0) {
      if (peer != nullptr) *peer = AddressString(reinterpret_cast<sockaddr*>(&addr));
      return Fd(fd);
    }
    switch (errno) {
      // Another accept got there first, a signal, or a connection that was reset before we
      // took it (accept(2) reports such network errors of the pending connection): wait on.
      case EAGAIN:
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case ENETUNREACH:
        continue;
      default:
        return SocketErrorStatus(errno, "accept on", absl::StrCat("fd ", listen_fd));
    }
  }
}

absl::StatusOr<Fd> Connect(const Endpoint& endpoint, int64_t timeout_ms) {
  if (endpoint.port == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect ", FormatEndpoint(endpoint), ": port 0 cannot be connected to"));
  }
  const std::optional<Clock::time_point> deadline = DeadlineAfter(timeout_ms);
  absl::StatusOr<AddrinfoList> addrs = Resolve(endpoint, /*passive=*/false);
  if (!addrs.ok()) return addrs.status();
  std::vector<std::string> failures;
  absl::StatusCode code = absl::StatusCode::kInternal;
  for (const addrinfo* ai = addrs->get(); ai != nullptr; ai = ai->ai_next) {
    absl::StatusOr<Fd> fd = ConnectOne(*ai, deadline, timeout_ms);
    if (fd.ok()) return fd;
    failures.push_back(std::string(fd.status().message()));
    code = fd.status().code();
    if (absl::IsDeadlineExceeded(fd.status())) break;  // no time left for the others
  }
  if (failures.size() == 1) return absl::Status(code, failures.front());
  return absl::Status(code, absl::StrCat("connect ", FormatEndpoint(endpoint), ": ",
                                         absl::StrJoin(failures, "; ")));
}

absl::Status TuneSocket(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return SocketErrorStatus(errno, "setsockopt(TCP_NODELAY) on", absl::StrCat("fd ", fd));
  }
  // Setting SO_SNDBUF / SO_RCVBUF fixes the size (capped at the sysctl) and turns autotuning
  // off for the socket, which then often ends up with less than autotuning would give. So ask
  // only when the cap lets us have the full size.
  struct Buffer {
    int option;
    const char* sysctl;
  };
  for (const Buffer& b : {Buffer{SO_SNDBUF, "/proc/sys/net/core/wmem_max"},
                          Buffer{SO_RCVBUF, "/proc/sys/net/core/rmem_max"}}) {
    long long cap = 0;
    if (std::FILE* f = std::fopen(b.sysctl, "re"); f != nullptr) {
      if (std::fscanf(f, "%lld", &cap) != 1) cap = 0;
      std::fclose(f);
    }
    if (cap < kSocketBufferBytes) continue;
    // Best effort: a failure leaves the kernel's default, which works, only slower.
    (void)::setsockopt(fd, SOL_SOCKET, b.option, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
  }
  return absl::OkStatus();
}

}  // namespace chunkferry::io
