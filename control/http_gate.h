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
//
// HTTPS: with a TLS context, each connection carries a TlsChannel (engine/wire/tls.h, TLS 1.3 over
// memory buffers). The gate reads what arrives into the connection, so the TLS handshake and the
// decryption of a head happen in the epoll thread under the same head deadline and size bound as
// plain HTTP: a client that stops mid-handshake holds a socket and no thread. A plain-HTTP client
// on a TLS port is answered 400 in clear and closed; a TLS client on a plain port is closed at
// once.
#ifndef CHUNKFERRY_CONTROL_HTTP_GATE_H_
#define CHUNKFERRY_CONTROL_HTTP_GATE_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/wire/tls.h"

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
  // Serve HTTPS (TLS 1.3) with this server context; null: plain HTTP.
  std::shared_ptr<engine::TlsContext> tls = nullptr;
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

  // For a handler: runs `hook` on this worker thread once the answer of the request it serves has
  // been written out (or could not be). What must not happen before the client can have its
  // answer (a webhook announcing the job the answer names) waits for it here.
  static void AfterResponse(std::function<void()> hook);

  // Connections held now (waiting for a request or being served).
  size_t connections() const { return held_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  // One client connection, owned by whichever thread holds it (the epoll thread while it waits,
  // a worker while it is served).
  struct Connection {
    int fd = -1;
    std::unique_ptr<engine::TlsChannel> tls;  // null: plain HTTP
    std::string inbox;       // request bytes received (decrypted) and not yet served
    size_t served = 0;       // requests served on this connection so far
    bool first_read = true;  // nothing received yet: the first byte tells TLS from plain HTTP
  };
  using ConnectionPtr = std::unique_ptr<Connection>;
  struct Waiting {
    Clock::time_point deadline;
    bool idle = true;  // between requests (keep-alive deadline) rather than within a head
    ConnectionPtr conn;
  };
  enum class Verdict { kWait, kReady, kClose };

  // httplib's accept loop hands each new connection here (on its small task pool).
  bool process_and_close_socket(socket_t sock) override;

  void Admit(ConnectionPtr conn);  // into the epoll set, with its deadline
  void Close(ConnectionPtr conn);
  void EpollLoop();
  // Places a connection handed in (new, or back from a worker) in the epoll set, or straight
  // in the ready queue when it already holds a whole head (a pipelined request).
  void Place(ConnectionPtr conn);
  void MakeReady(ConnectionPtr conn);
  // Receives what `conn` has been sent so far (decrypting it when TLS): kReady once a whole
  // head is there.
  Verdict Examine(Waiting& waiting);
  // After ciphertext arrived on a TLS connection: the handshake, then its plaintext into the
  // inbox.
  bool AdvanceTls(Connection& conn);
  void WorkerLoop();
  void Serve(ConnectionPtr conn);

  const GateOptions options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: makes the epoll loop look at `admitted_` and `stopping_`
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> held_{0};

  std::mutex mu_;
  std::vector<ConnectionPtr> admitted_;  // handed in, not yet in the epoll set
  std::deque<ConnectionPtr> ready_;      // whole heads waiting for a worker
  std::condition_variable ready_cv_;
  std::unordered_map<int, Waiting> waiting_;  // epoll thread only

  std::thread epoll_thread_;
  std::vector<std::thread> workers_;
  bool started_ = false;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_HTTP_GATE_H_
