// An httplib::Server whose connections wait for their requests in one epoll thread, not in
// worker threads: a worker takes a connection only once a whole request head has arrived, serves
// that one request, and gives the connection back. So idle keep-alive connections, and clients
// that send their headers a byte at a time (slowloris), hold a socket each and no thread; a head
// must arrive within a deadline and a size, a body within its own deadline; the accept queue is
// deep and the connections held are bounded.
//
// cpp-httplib (Debian's 0.11.4) serves one connection per worker thread from accept to close and
// times out each recv() alone, so 10 sockets dribbling header lines stalled it. Its request
// parsing is kept: the gate overrides the per-connection loop (process_and_close_socket) and
// calls the parser (process_request) on a stream of its own with deadlines.
#ifndef CHUNKFERRY_CONTROL_HTTP_GATE_H_
#define CHUNKFERRY_CONTROL_HTTP_GATE_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace chunkferry::control {

struct GateOptions {
  size_t worker_threads = 8;              // requests served at once
  size_t max_connections = 4096;          // held (waiting or served); beyond: closed at accept
  int64_t head_timeout_ms = 10'000;       // first byte of a request to the end of its head
  int64_t keep_alive_timeout_ms = 5'000;  // idle between two requests of one connection
  size_t keep_alive_max = 100;            // requests per connection
  int64_t body_timeout_ms = 30'000;       // the head's end to the body's end
  int64_t write_timeout_ms = 30'000;      // each wait to send more of an answer
  size_t max_head_bytes = 64 << 10;       // a longer head is answered 431 and closed
  int listen_backlog = 1024;
};

class GatedServer : public httplib::Server {
 public:
  explicit GatedServer(GateOptions options);
  ~GatedServer() override;
  GatedServer(const GatedServer&) = delete;
  GatedServer& operator=(const GatedServer&) = delete;

  // After bind_to_port / bind_to_any_port: deepens the listening socket's accept queue and starts
  // the gate's threads. False when they cannot start.
  bool StartGate();
  // After stop(): closes every waiting connection, lets the workers finish the requests they
  // serve, and joins them. Idempotent.
  void StopGate();

  // Connections held now (waiting for a request or being served).
  size_t connections() const { return held_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Waiting {
    Clock::time_point deadline;
    size_t served = 0;  // requests served on this connection so far
    bool idle = true;   // between requests (keep-alive deadline) rather than within a head
  };
  struct Ready {
    int fd;
    size_t served;
  };

  // httplib's accept loop hands each new connection here (on its small task pool).
  bool process_and_close_socket(socket_t sock) override;

  void Admit(int fd, size_t served);  // into the epoll set, with its deadline
  void Close(int fd);
  void EpollLoop();
  // Looks at what `fd` has received so far: moves it to a worker when a whole head is there.
  void Examine(int fd);
  void WorkerLoop();
  void Serve(const Ready& ready);

  const GateOptions options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: makes the epoll loop look at `admitted_` and `stopping_`
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> held_{0};

  std::mutex mu_;
  std::vector<std::pair<int, size_t>> admitted_;  // handed in, not yet in the epoll set
  std::deque<Ready> ready_;                       // whole heads waiting for a worker
  std::condition_variable ready_cv_;
  std::unordered_map<int, Waiting> waiting_;  // epoll thread only

  std::thread epoll_thread_;
  std::vector<std::thread> workers_;
  bool started_ = false;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_HTTP_GATE_H_
