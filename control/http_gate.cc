#include "control/http_gate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::control {
namespace {

// Hooks a handler left for after its answer is written (GatedServer::AfterResponse): a worker
// serves one request at a time, from handler to written answer.
thread_local std::vector<std::function<void()>> after_response;

constexpr char kHeadEnd[] = "\r\n\r\n";
constexpr std::string_view kHeadTooLarge =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
    "Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";
// Sent in clear to a client that speaks plain HTTP to a TLS port, so its user learns why.
constexpr std::string_view kTlsOnly =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 46\r\n"
    "Connection: close\r\n\r\nThis port speaks HTTPS only (TLS 1.3, not HTTP)\n";
// The first byte of every TLS connection: a handshake record.
constexpr unsigned char kTlsHandshakeRecord = 0x16;
// Bytes taken off a socket per recv.
constexpr size_t kReadChunk = 16 << 10;
// Longest the epoll loop sleeps without looking at deadlines.
constexpr int kEpollMaxWaitMs = 1000;

int64_t MsUntil(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t - std::chrono::steady_clock::now())
      .count();
}

void IpAndPort(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

// Sends all of `bytes`, waiting at most `wait_ms` each time the socket is full (0: never waits,
// for the epoll thread). False when the socket fails or stays full.
bool SendAll(int fd, std::string_view bytes, int64_t wait_ms) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || errno != EAGAIN || wait_ms <= 0) return false;
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
    if (r <= 0 && !(r < 0 && errno == EINTR)) return false;
  }
  return true;
}

// Sends the ciphertext `tls` has waiting (handshake messages, records, tickets, alerts), straight
// from its output ring.
bool FlushTls(int fd, engine::TlsChannel& tls, int64_t wait_ms) {
  for (absl::Span<const uint8_t> run = tls.Output(); !run.empty(); run = tls.Output()) {
    if (!SendAll(fd, std::string_view(reinterpret_cast<const char*>(run.data()), run.size()),
                 wait_ms)) {
      return false;
    }
    tls.ConsumeOutput(run.size());
  }
  return true;
}

// Encrypts and sends all of `plaintext`.
bool SendTls(int fd, engine::TlsChannel& tls, std::string_view plaintext, int64_t wait_ms) {
  while (!plaintext.empty()) {
    absl::StatusOr<size_t> n = tls.Write(
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(plaintext.data()), plaintext.size()));
    if (!n.ok() || !FlushTls(fd, tls, wait_ms)) return false;
    plaintext.remove_prefix(*n);
  }
  return true;
}

// Receives what the socket holds (without waiting) straight into the input ring of `tls`:
// bytes received, 0 at EOF, -1 with errno (EAGAIN: nothing yet). *first: the first byte received.
ssize_t ReceiveCiphertext(int fd, engine::TlsChannel& tls, unsigned char* first = nullptr) {
  const absl::Span<uint8_t> room = tls.InputSpace();
  if (room.empty()) {  // DecryptInto leaves no whole record behind, and a record fits the ring
    errno = ENOBUFS;
    return -1;
  }
  const ssize_t n = ::recv(fd, room.data(), room.size(), MSG_DONTWAIT);
  if (n > 0) {
    if (first != nullptr) *first = room[0];
    tls.CommitInput(static_cast<size_t>(n));
  }
  return n;
}

// Decrypts everything the ciphertext received so far holds onto the end of `inbox`, so that
// OpenSSL keeps no plaintext back: what waits for the next request is always in the inbox.
bool DecryptInto(engine::TlsChannel& tls, std::string& inbox) {
  char buf[kReadChunk];
  for (;;) {
    absl::StatusOr<size_t> n =
        tls.Read(absl::MakeSpan(reinterpret_cast<uint8_t*>(buf), sizeof(buf)));
    if (!n.ok()) return false;  // the peer's close_notify, or a record that fails its MAC
    if (*n == 0) return true;
    inbox.append(buf, *n);
  }
}

// One request's view of a connection for httplib's parser: bytes already received come from the
// connection's inbox, and only when it is empty from the socket (decrypted, for TLS); the body
// must arrive by `body_deadline`; each wait to send is bounded. What the request does not
// consume stays in the inbox for the next one (pipelining).
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int fd, engine::TlsChannel* tls, std::string& inbox,
                 std::chrono::steady_clock::time_point body_deadline, int64_t write_timeout_ms)
      : fd_(fd),
        tls_(tls),
        inbox_(inbox),
        body_deadline_(body_deadline),
        write_timeout_ms_(write_timeout_ms) {}
  ~DeadlineStream() override { inbox_.erase(0, pos_); }

  bool is_readable() const override {
    if (pos_ < inbox_.size()) return true;
    return Wait(POLLIN, MsUntil(body_deadline_));
  }
  bool is_writable() const override { return Wait(POLLOUT, write_timeout_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == inbox_.size()) {
      inbox_.clear();
      pos_ = 0;
      // Plain HTTP reads the socket straight into the parser's buffer: it asks for no more than
      // the request holds, so a pipelined request stays in the socket.
      if (tls_ == nullptr) return Receive(ptr, size);
      if (!Refill()) return -1;
    }
    const size_t n = std::min(size, inbox_.size() - pos_);
    std::memcpy(ptr, inbox_.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    const bool sent = tls_ == nullptr
                          ? SendAll(fd_, std::string_view(ptr, size), write_timeout_ms_)
                          : SendTls(fd_, *tls_, std::string_view(ptr, size), write_timeout_ms_);
    return sent ? static_cast<ssize_t>(size) : -1;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      IpAndPort(addr, ip, port);
    }
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      IpAndPort(addr, ip, port);
    }
  }
  socket_t socket() const override { return fd_; }

 private:
  bool Wait(short events, int64_t ms) const {
    if (ms <= 0) return false;
    pollfd p{fd_, events, 0};
    for (;;) {
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && (p.revents & events) != 0;
    }
  }

  ssize_t Receive(char* ptr, size_t size) {
    for (;;) {
      if (!Wait(POLLIN, MsUntil(body_deadline_))) return -1;
      const ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EINTR) return -1;
    }
  }

  // TLS: receives ciphertext until it decrypts to at least one byte of the inbox.
  bool Refill() {
    while (inbox_.empty()) {
      if (!Wait(POLLIN, MsUntil(body_deadline_))) return false;
      const ssize_t n = ReceiveCiphertext(fd_, *tls_);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return false;
      if (!DecryptInto(*tls_, inbox_)) return false;
    }
    return true;
  }

  const int fd_;
  engine::TlsChannel* const tls_;
  std::string& inbox_;
  size_t pos_ = 0;  // inbox_ before it is consumed
  const std::chrono::steady_clock::time_point body_deadline_;
  const int64_t write_timeout_ms_;
};

}  // namespace

GatedServer::GatedServer(GateOptions options) : options_(std::move(options)) {
  // httplib's own pool only hands accepted sockets to the gate: one thread is plenty.
  new_task_queue = [] { return new httplib::ThreadPool(1); };
}

GatedServer::~GatedServer() {
  StopGate();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool GatedServer::StartGate() {
  if (started_) return false;
  // httplib listens with a backlog of 5: a burst of connections would be refused by the kernel.
  const int sock = svr_sock_.load();
  if (sock < 0 || ::listen(sock, options_.listen_backlog) != 0) return false;
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) return false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) return false;
  started_ = true;
  epoll_thread_ = std::thread([this] { EpollLoop(); });
  for (size_t i = 0; i < std::max<size_t>(options_.worker_threads, 1); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  return true;
}

void GatedServer::StopGate() {
  if (!started_ || stopping_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (epoll_thread_.joinable()) epoll_thread_.join();
  ready_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (ConnectionPtr& conn : admitted_) Close(std::move(conn));
  admitted_.clear();
  for (ConnectionPtr& conn : ready_) Close(std::move(conn));
  ready_.clear();
}

bool GatedServer::process_and_close_socket(socket_t sock) {
  if (stopping_.load() || held_.load() >= options_.max_connections) {
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return false;
  }
  ++held_;
  // An answer leaves in several writes (head, body; with TLS also the session tickets): Nagle
  // could hold one back behind the client's delayed ACK, 40 ms (as it did to a Python client
  // that did not set TCP_NODELAY itself, bench/api_idle_bench.py --tls).
  const int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto conn = std::make_unique<Connection>();
  conn->fd = sock;
  if (options_.tls != nullptr) {
    conn->tls = std::make_unique<engine::TlsChannel>(options_.tls, engine::TlsChannel::kSmallRing);
  }
  Admit(std::move(conn));
  return true;
}

void GatedServer::Admit(ConnectionPtr conn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    admitted_.push_back(std::move(conn));
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void GatedServer::Close(ConnectionPtr conn) {
  if (conn->tls != nullptr && conn->tls->established()) {  // close_notify, if the socket takes it
    conn->tls->Close();
    FlushTls(conn->fd, *conn->tls, 0);
  }
  ::shutdown(conn->fd, SHUT_RDWR);
  ::close(conn->fd);
  --held_;
}

void GatedServer::MakeReady(ConnectionPtr conn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(std::move(conn));
  }
  ready_cv_.notify_one();
}

void GatedServer::Place(ConnectionPtr conn) {
  if (conn->inbox.find(kHeadEnd) != std::string::npos) {
    MakeReady(std::move(conn));
    return;
  }
  const int fd = conn->fd;
  Waiting& w = waiting_[fd];
  // Idle between requests, unless part of the next head came with the last request.
  w.idle = conn->served > 0 && conn->inbox.empty();
  w.deadline = Clock::now() + std::chrono::milliseconds(w.idle ? options_.keep_alive_timeout_ms
                                                               : options_.head_timeout_ms);
  w.conn = std::move(conn);
  epoll_event ev{};
  // Edge-triggered: a connection with part of a head wakes the loop again only when more
  // arrives, not at every turn. (Adding a socket that already holds bytes reports them.)
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ConnectionPtr failed = std::move(w.conn);
    waiting_.erase(fd);
    Close(std::move(failed));
  }
}

void GatedServer::EpollLoop() {
  std::vector<epoll_event> events(256);
  auto take = [this](int fd) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    auto it = waiting_.find(fd);
    ConnectionPtr conn = std::move(it->second.conn);
    waiting_.erase(it);
    return conn;
  };
  while (!stopping_.load()) {
    auto earliest = Clock::now() + std::chrono::milliseconds(kEpollMaxWaitMs);
    for (const auto& [fd, w] : waiting_) earliest = std::min(earliest, w.deadline);
    const int timeout =
        static_cast<int>(std::clamp<int64_t>(MsUntil(earliest) + 1, 0, kEpollMaxWaitMs));
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t count = 0;
        (void)!::read(wake_fd_, &count, sizeof(count));
        continue;
      }
      auto it = waiting_.find(fd);
      if (it == waiting_.end()) continue;
      switch (Examine(it->second)) {
        case Verdict::kWait:
          break;
        case Verdict::kReady:
          MakeReady(take(fd));
          break;
        case Verdict::kClose:
          Close(take(fd));
          break;
      }
    }
    std::vector<ConnectionPtr> admitted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      admitted.swap(admitted_);
    }
    for (ConnectionPtr& conn : admitted) Place(std::move(conn));
    // Connections past their deadline: a head (or a TLS handshake) that does not come, or an
    // idle keep-alive.
    const auto now = Clock::now();
    std::vector<int> expired;
    for (const auto& [fd, w] : waiting_) {
      if (w.deadline <= now) expired.push_back(fd);
    }
    for (const int fd : expired) Close(take(fd));
  }
  std::vector<int> left;
  for (const auto& [fd, w] : waiting_) left.push_back(fd);
  for (const int fd : left) Close(take(fd));
}

GatedServer::Verdict GatedServer::Examine(Waiting& waiting) {
  Connection& conn = *waiting.conn;
  char buf[kReadChunk];
  // Edge-triggered: read until the socket is empty, a head is whole, or the head bound is hit.
  for (;;) {
    // TLS receives straight into the channel's ring; plain HTTP into the inbox through `buf`.
    unsigned char first = 0;
    const ssize_t n = conn.tls != nullptr ? ReceiveCiphertext(conn.fd, *conn.tls, &first)
                                          : ::recv(conn.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return Verdict::kClose;  // closed by the peer, or broken
    if (std::exchange(conn.first_read, false)) {
      if (conn.tls == nullptr) first = static_cast<unsigned char>(buf[0]);
      const bool tls_record = first == kTlsHandshakeRecord;
      // A TLS client on a plain port: nothing it could read would help it.
      if (conn.tls == nullptr && tls_record) return Verdict::kClose;
      if (conn.tls != nullptr && !tls_record) {
        SendAll(conn.fd, kTlsOnly, 0);
        return Verdict::kClose;
      }
    }
    if (conn.tls == nullptr) {
      conn.inbox.append(buf, static_cast<size_t>(n));
    } else if (!AdvanceTls(conn)) {
      return Verdict::kClose;
    }
    if (conn.inbox.find(kHeadEnd) != std::string::npos) return Verdict::kReady;
    if (conn.inbox.size() >= options_.max_head_bytes) {
      if (conn.tls != nullptr) {
        SendTls(conn.fd, *conn.tls, kHeadTooLarge, 0);
      } else {
        SendAll(conn.fd, kHeadTooLarge, 0);
      }
      return Verdict::kClose;
    }
  }
  if (waiting.idle && !conn.inbox.empty()) {
    // The next request has begun: its head gets the head deadline from now.
    waiting.idle = false;
    waiting.deadline = Clock::now() + std::chrono::milliseconds(options_.head_timeout_ms);
  }
  return Verdict::kWait;
}

bool GatedServer::AdvanceTls(Connection& conn) {
  engine::TlsChannel& tls = *conn.tls;
  if (!tls.established()) {
    absl::StatusOr<bool> done = tls.Handshake();
    // The server's flight fits any fresh socket's send buffer: a client that does not read it
    // is not worth waiting for.
    if (!FlushTls(conn.fd, tls, 0) || !done.ok()) return false;
    if (!*done) return true;
  }
  if (!DecryptInto(tls, conn.inbox)) return false;
  return FlushTls(conn.fd, tls, 0);  // session tickets, key updates
}

void GatedServer::WorkerLoop() {
  for (;;) {
    ConnectionPtr conn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_cv_.wait(lock, [this] { return stopping_.load() || !ready_.empty(); });
      if (stopping_.load()) return;
      conn = std::move(ready_.front());
      ready_.pop_front();
    }
    Serve(std::move(conn));
  }
}

void GatedServer::AfterResponse(std::function<void()> hook) {
  after_response.push_back(std::move(hook));
}

void GatedServer::Serve(ConnectionPtr conn) {
  const bool last = conn->served + 1 >= options_.keep_alive_max;
  bool connection_closed = false;
  bool ok = false;
  {
    DeadlineStream stream(conn->fd, conn->tls.get(), conn->inbox,
                          Clock::now() + std::chrono::milliseconds(options_.body_timeout_ms),
                          options_.write_timeout_ms);
    ok = process_request(stream, last, connection_closed, nullptr);
  }
  std::vector<std::function<void()>> hooks;
  hooks.swap(after_response);
  for (auto& hook : hooks) hook();
  if (!ok || connection_closed || last || stopping_.load()) {
    Close(std::move(conn));
    return;
  }
  ++conn->served;
  Admit(std::move(conn));
}

}  // namespace chunkferry::control
