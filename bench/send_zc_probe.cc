// Does io_uring's zero-copy send (IORING_OP_SEND_ZC) pay for the sync's APPEND frames? Sends the
// same bytes with plain IORING_OP_SEND and with SEND_ZC, frames of --frame bytes, one send in
// flight per connection as RemoteStore does, and prints wall time and the CPU time of the
// sending and the receiving thread for each. Not a test: a measurement to run on the machines
// that matter.
//
//   send_zc_probe --loopback [--bytes 2G] [--frame 8M] [--rounds 3]
//       sender and receiver in this process over 127.0.0.1, the modes alternated per round
//   send_zc_probe --listen PORT                 receiver on another node (drains, reports, loops)
//   send_zc_probe --connect HOST:PORT [--mode send|zc] [--bytes 2G] [--frame 8M]
//
// The send buffers are reused round-robin (two of them) the way frame buffers are: with SEND_ZC a
// buffer may be written again only after the kernel's notification for it, and the probe waits
// for that, as the sync would have to.
#include <liburing.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "io/fd.h"
#include "io/net.h"
#include "tools/flags.h"

namespace {

using chunkferry::io::Endpoint;
using chunkferry::io::Fd;

struct Options {
  std::string listen, connect, mode = "send";
  bool loopback = false;
  uint64_t bytes = 2ull << 30;
  uint64_t frame = 8u << 20;
  int rounds = 3;
};

double ThreadCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Receives until EOF into one buffer; returns the bytes and this thread's CPU seconds.
std::pair<uint64_t, double> Drain(int fd) {
  const double cpu0 = ThreadCpuSeconds();
  std::vector<char> buf(4u << 20);
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    total += static_cast<uint64_t>(n);
  }
  return {total, ThreadCpuSeconds() - cpu0};
}

// Sends `bytes` in frames through io_uring, SEND_ZC when `zc`. Returns the sender's CPU seconds.
absl::StatusOr<double> Send(int fd, bool zc, uint64_t bytes, uint64_t frame) {
  io_uring ring;
  if (int r = io_uring_queue_init(8, &ring, 0); r < 0) {
    return absl::InternalError(absl::StrCat("io_uring_queue_init: ", std::strerror(-r)));
  }
  const double cpu0 = ThreadCpuSeconds();
  std::vector<std::vector<char>> bufs(2, std::vector<char>(frame));
  for (size_t b = 0; b < bufs.size(); ++b) std::memset(bufs[b].data(), 'a' + b, frame);
  std::vector<int> busy(bufs.size(), 0);  // SEND_ZC: notifications not yet in, per buffer
  absl::Status status;
  uint64_t sent = 0;
  size_t next = 0;
  while (status.ok() && sent < bytes) {
    // Wait until the next buffer may be written, then "fill" it (one byte: the frame's header)
    // and send it whole.
    while (status.ok() && busy[next] > 0) {
      io_uring_cqe* cqe = nullptr;
      if (int r = io_uring_wait_cqe(&ring, &cqe); r < 0) {
        status = absl::InternalError(absl::StrCat("io_uring_wait_cqe: ", std::strerror(-r)));
        break;
      }
      if (cqe->flags & IORING_CQE_F_NOTIF) --busy[io_uring_cqe_get_data64(cqe)];
      io_uring_cqe_seen(&ring, cqe);
    }
    if (!status.ok()) break;
    bufs[next][0] = static_cast<char>(sent);
    const size_t len = static_cast<size_t>(std::min<uint64_t>(frame, bytes - sent));
    size_t off = 0;
    while (status.ok() && off < len) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);  // never null: one request at a time
      if (zc) {
        io_uring_prep_send_zc(sqe, fd, bufs[next].data() + off, len - off, MSG_WAITALL, 0);
      } else {
        io_uring_prep_send(sqe, fd, bufs[next].data() + off, len - off, MSG_WAITALL);
      }
      io_uring_sqe_set_data64(sqe, next);
      if (int r = io_uring_submit(&ring); r < 1) {
        status = absl::InternalError(
            absl::StrCat("io_uring_submit: ", r < 0 ? std::strerror(-r) : "nothing submitted"));
        break;
      }
      // The send's own completion (for SEND_ZC, with F_MORE: a notification follows).
      for (;;) {
        io_uring_cqe* cqe = nullptr;
        if (int r = io_uring_wait_cqe(&ring, &cqe); r < 0) {
          status = absl::InternalError(absl::StrCat("io_uring_wait_cqe: ", std::strerror(-r)));
          break;
        }
        const unsigned flags = cqe->flags;
        const int res = cqe->res;
        const uint64_t data = io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&ring, cqe);
        if (flags & IORING_CQE_F_NOTIF) {
          --busy[data];
          continue;
        }
        // A notification follows whenever F_MORE is set, a failed send's too.
        if (flags & IORING_CQE_F_MORE) ++busy[next];
        if (res < 0) {
          status =
              absl::InternalError(absl::StrCat(zc ? "send_zc: " : "send: ", std::strerror(-res)));
        } else {
          off += static_cast<size_t>(res);
        }
        break;
      }
    }
    sent += len;
    next = (next + 1) % bufs.size();
  }
  // Every notification in before the buffers go away, after an error too.
  while (busy[0] > 0 || busy[1] > 0) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring, &cqe) < 0) break;
    if (cqe->flags & IORING_CQE_F_NOTIF) --busy[io_uring_cqe_get_data64(cqe)];
    io_uring_cqe_seen(&ring, cqe);
  }
  const double cpu = ThreadCpuSeconds() - cpu0;
  io_uring_queue_exit(&ring);
  if (!status.ok()) return status;
  return cpu;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// A negative CPU figure is left out (the side this process does not run).
void Report(const char* mode, uint64_t bytes, double wall, double send_cpu, double recv_cpu) {
  std::printf("%-5s %8.1f MB  wall %.3f s  %7.0f MB/s", mode, bytes / 1e6, wall,
              bytes / 1e6 / wall);
  if (send_cpu >= 0) std::printf("  sender CPU %.3f s", send_cpu);
  if (recv_cpu >= 0) std::printf("  receiver CPU %.3f s", recv_cpu);
  std::printf("\n");
}

int RunLoopback(const Options& o) {
  auto listener = chunkferry::io::Listen(Endpoint{"127.0.0.1", 0}, 4);
  if (!listener.ok()) return std::fprintf(stderr, "%s\n", listener.status().ToString().c_str()), 1;
  auto port = chunkferry::io::LocalPort(listener->get());
  if (!port.ok()) return std::fprintf(stderr, "%s\n", port.status().ToString().c_str()), 1;
  for (int round = 0; round < o.rounds; ++round) {
    for (const bool zc : {round % 2 == 0, round % 2 != 0}) {
      std::pair<uint64_t, double> got;
      std::thread receiver([&] {
        auto c = chunkferry::io::Accept(listener->get(), 10'000, nullptr);
        if (c.ok()) got = Drain(c->get());
      });
      auto conn = chunkferry::io::Connect(Endpoint{"127.0.0.1", *port}, 10'000);
      if (!conn.ok()) {
        receiver.join();  // its Accept gives up after 10 s
        return std::fprintf(stderr, "%s\n", conn.status().ToString().c_str()), 1;
      }
      (void)chunkferry::io::TuneSocket(conn->get());
      const auto t0 = std::chrono::steady_clock::now();
      auto cpu = Send(conn->get(), zc, o.bytes, o.frame);
      ::shutdown(conn->get(), SHUT_WR);
      receiver.join();
      const double wall = Seconds(t0);
      if (!cpu.ok()) return std::fprintf(stderr, "%s\n", cpu.status().ToString().c_str()), 1;
      if (got.first != o.bytes) {
        return std::fprintf(stderr, "receiver got %llu bytes of %llu\n",
                            static_cast<unsigned long long>(got.first),
                            static_cast<unsigned long long>(o.bytes)),
               1;
      }
      Report(zc ? "zc" : "send", o.bytes, wall, *cpu, got.second);
    }
  }
  return 0;
}

int RunListen(const Options& o) {
  auto ep = chunkferry::io::ParseEndpoint(
      o.listen.find(':') == std::string::npos ? absl::StrCat("0.0.0.0:", o.listen) : o.listen);
  if (!ep.ok()) return std::fprintf(stderr, "%s\n", ep.status().ToString().c_str()), 2;
  auto listener = chunkferry::io::Listen(*ep, 4);
  if (!listener.ok()) return std::fprintf(stderr, "%s\n", listener.status().ToString().c_str()), 1;
  for (;;) {
    std::string peer;
    auto c = chunkferry::io::Accept(listener->get(), -1, &peer);
    if (!c.ok()) continue;
    (void)chunkferry::io::TuneSocket(c->get());
    const auto t0 = std::chrono::steady_clock::now();
    const auto [bytes, cpu] = Drain(c->get());
    std::printf("from %s: ", peer.c_str());
    Report("recv", bytes, Seconds(t0), -1, cpu);
    std::fflush(stdout);
  }
}

int RunConnect(const Options& o) {
  auto ep = chunkferry::io::ParseEndpoint(o.connect);
  if (!ep.ok()) return std::fprintf(stderr, "%s\n", ep.status().ToString().c_str()), 2;
  auto conn = chunkferry::io::Connect(*ep, 10'000);
  if (!conn.ok()) return std::fprintf(stderr, "%s\n", conn.status().ToString().c_str()), 1;
  (void)chunkferry::io::TuneSocket(conn->get());
  const auto t0 = std::chrono::steady_clock::now();
  auto cpu = Send(conn->get(), o.mode == "zc", o.bytes, o.frame);
  if (!cpu.ok()) return std::fprintf(stderr, "%s\n", cpu.status().ToString().c_str()), 1;
  ::shutdown(conn->get(), SHUT_WR);
  char c;
  while (::recv(conn->get(), &c, 1, 0) > 0) {
  }
  Report(o.mode.c_str(), o.bytes, Seconds(t0), *cpu, -1);
  return 0;
}

// A size for --bytes or --frame (binary suffixes): positive; a frame must fit one request.
bool ParseSize(const char* text, uint64_t* out) {
  absl::StatusOr<uint64_t> v = chunkferry::tools::ParseSize(text);
  if (!v.ok() || *v == 0 || *v > (uint64_t{1} << 40)) return false;
  *out = *v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--loopback") {
      o.loopback = true;
    } else if (a == "--listen" && has_value) {
      o.listen = argv[++i];
    } else if (a == "--connect" && has_value) {
      o.connect = argv[++i];
    } else if (a == "--mode" && has_value) {
      o.mode = argv[++i];
    } else if (a == "--bytes" && has_value && ParseSize(argv[i + 1], &o.bytes)) {
      ++i;
    } else if (a == "--frame" && has_value && ParseSize(argv[i + 1], &o.frame)) {
      ++i;
    } else if (a == "--rounds" && has_value && (o.rounds = std::atoi(argv[++i])) > 0) {
    } else {
      std::fprintf(stderr,
                   "send_zc_probe: bad argument '%s' (see the head of bench/send_zc_probe.cc)\n",
                   a.c_str());
      return 2;
    }
  }
  if (o.frame > (1u << 30)) {
    std::fprintf(stderr, "send_zc_probe: --frame is at most 1G\n");
    return 2;
  }
  if (o.mode != "send" && o.mode != "zc") {
    std::fprintf(stderr, "send_zc_probe: --mode is send or zc\n");
    return 2;
  }
  if (o.loopback) return RunLoopback(o);
  if (!o.listen.empty()) return RunListen(o);
  if (!o.connect.empty()) return RunConnect(o);
  std::fprintf(stderr, "send_zc_probe: one of --loopback, --listen PORT, --connect HOST:PORT\n");
  return 2;
}
