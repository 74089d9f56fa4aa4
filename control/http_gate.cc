#include "control/http_gate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace chunkferry::control {
namespace {

constexpr char kHeadEnd[] = "\r\n\r\n";
constexpr char kHeadTooLarge[] =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
    "Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";
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

// One request's view of a connection for httplib's parser: the head, already received whole,
// comes from memory; the body must arrive by `body_deadline`; each wait to send is bounded.
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int fd, std::string head, std::chrono::steady_clock::time_point body_deadline,
                 int64_t write_timeout_ms)
      : fd_(fd),
        head_(std::move(head)),
        body_deadline_(body_deadline),
        write_timeout_ms_(write_timeout_ms) {}

  bool is_readable() const override {
    if (pos_ < head_.size()) return true;
    return Wait(POLLIN, MsUntil(body_deadline_));
  }
  bool is_writable() const override { return Wait(POLLOUT, write_timeout_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ < head_.size()) {
      const size_t n = std::min(size, head_.size() - pos_);
      std::memcpy(ptr, head_.data() + pos_, n);
      pos_ += n;
      return static_cast<ssize_t>(n);
    }
    for (;;) {
      if (!is_readable()) return -1;
      const ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EINTR) return -1;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      if (!is_writable()) return -1;
      const ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EINTR) return -1;
    }
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

  const int fd_;
  const std::string head_;
  size_t pos_ = 0;
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
  for (const auto& [fd, served] : admitted_) Close(fd);
  admitted_.clear();
  for (const Ready& r : ready_) Close(r.fd);
  ready_.clear();
}

bool GatedServer::process_and_close_socket(socket_t sock) {
  if (stopping_.load() || held_.load() >= options_.max_connections) {
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return false;
  }
  ++held_;
  Admit(sock, 0);
  return true;
}

void GatedServer::Admit(int fd, size_t served) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    admitted_.emplace_back(fd, served);
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void GatedServer::Close(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  --held_;
}

void GatedServer::EpollLoop() {
  std::vector<epoll_event> events(256);
  while (!stopping_.load()) {
    auto earliest = Clock::now() + std::chrono::milliseconds(kEpollMaxWaitMs);
    for (const auto& [fd, w] : waiting_) earliest = std::min(earliest, w.deadline);
    const int timeout =
        static_cast<int>(std::clamp<int64_t>(MsUntil(earliest) + 1, 0, kEpollMaxWaitMs));
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wake_fd_) {
        uint64_t count = 0;
        (void)!::read(wake_fd_, &count, sizeof(count));
        continue;
      }
      if (waiting_.contains(events[i].data.fd)) Examine(events[i].data.fd);
    }
    std::vector<std::pair<int, size_t>> admitted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      admitted.swap(admitted_);
    }
    const auto now = Clock::now();
    for (const auto& [fd, served] : admitted) {
      Waiting& w = waiting_[fd];
      w.served = served;
      w.idle = served > 0;
      w.deadline = now + std::chrono::milliseconds(w.idle ? options_.keep_alive_timeout_ms
                                                          : options_.head_timeout_ms);
      epoll_event ev{};
      // Edge-triggered: a connection with part of a head wakes the loop again only when more
      // arrives, not at every turn.
      ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
      ev.data.fd = fd;
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        waiting_.erase(fd);
        Close(fd);
      }
    }
    // Connections past their deadline: a head that does not come, or an idle keep-alive.
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->second.deadline <= now) {
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->first, nullptr);
        Close(it->first);
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& [fd, w] : waiting_) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    Close(fd);
  }
  waiting_.clear();
}

void GatedServer::Examine(int fd) {
  std::string peek(options_.max_head_bytes, '\0');
  const ssize_t n = ::recv(fd, peek.data(), peek.size(), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  auto drop = [&] {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    waiting_.erase(fd);
  };
  if (n <= 0) {  // closed by the peer, or broken
    drop();
    Close(fd);
    return;
  }
  peek.resize(static_cast<size_t>(n));
  const size_t end = peek.find(kHeadEnd);
  if (end != std::string::npos) {
    const size_t served = waiting_[fd].served;
    drop();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(Ready{fd, served});
    }
    ready_cv_.notify_one();
    return;
  }
  if (peek.size() >= options_.max_head_bytes) {
    (void)!::send(fd, kHeadTooLarge, sizeof(kHeadTooLarge) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    drop();
    Close(fd);
    return;
  }
  Waiting& w = waiting_[fd];
  if (w.idle) {  // the next request has begun: its head gets the head deadline from now
    w.idle = false;
    w.deadline = Clock::now() + std::chrono::milliseconds(options_.head_timeout_ms);
  }
}

void GatedServer::WorkerLoop() {
  for (;;) {
    Ready ready{};
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_cv_.wait(lock, [this] { return stopping_.load() || !ready_.empty(); });
      if (stopping_.load()) return;
      ready = ready_.front();
      ready_.pop_front();
    }
    Serve(ready);
  }
}

void GatedServer::Serve(const Ready& ready) {
  // Takes exactly the head off the socket (it is all there): a pipelined next request stays
  // in the socket for the gate.
  std::string head(options_.max_head_bytes, '\0');
  ssize_t n = ::recv(ready.fd, head.data(), head.size(), MSG_PEEK | MSG_DONTWAIT);
  const size_t end = n > 0 ? std::string_view(head.data(), static_cast<size_t>(n)).find(kHeadEnd)
                           : std::string_view::npos;
  if (end == std::string_view::npos) {
    Close(ready.fd);
    return;
  }
  head.resize(end + 4);
  n = ::recv(ready.fd, head.data(), head.size(), MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(head.size())) {
    Close(ready.fd);
    return;
  }
  DeadlineStream stream(ready.fd, std::move(head),
                        Clock::now() + std::chrono::milliseconds(options_.body_timeout_ms),
                        options_.write_timeout_ms);
  const bool last = ready.served + 1 >= options_.keep_alive_max;
  bool connection_closed = false;
  const bool ok = process_request(stream, last, connection_closed, nullptr);
  if (!ok || connection_closed || last || stopping_.load()) {
    Close(ready.fd);
    return;
  }
  Admit(ready.fd, ready.served + 1);
}

}  // namespace chunkferry::control
