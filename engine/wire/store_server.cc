#include "engine/wire/store_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <new>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/wire/store_session.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

using wire_internal::Bytes;

// How often the accept thread looks whether Stop() was called.
constexpr int64_t kAcceptPollMs = 100;
// How long the accept thread waits for pushed-out handshakes to end before it refuses a new one.
constexpr int64_t kHandshakeRoomWaitMs = 500;
// How long a refused connection is given to read its ERROR before the socket is closed.
constexpr int kRefuseLingerMs = 200;

// Why a handshake failed, in the words of the log.
std::string RefusalReason(const absl::Status& status) {
  if (absl::IsUnauthenticated(status)) return "wrong key";
  if (absl::IsDeadlineExceeded(status)) return "handshake timeout";
  if (absl::StrContains(status.message(), "too many connections")) return "too many connections";
  if (absl::StrContains(status.message(), "version mismatch")) return "protocol version mismatch";
  if (absl::IsUnavailable(status)) return "closed during the handshake";
  if (absl::IsInvalidArgument(status) || absl::IsResourceExhausted(status) ||
      absl::IsDataLoss(status)) {
    return "protocol error";
  }
  return "handshake failed";
}

// Ends our side of `fd` after a last ERROR, then reads what the peer sent (its HELLO) until it
// closes or a short time is up: closing with unread bytes would reset the connection, and the
// peer could lose the ERROR.
void CloseWriteAndDrain(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRefuseLingerMs);
  uint8_t sink[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    const ssize_t n = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
  }
}

// Waits up to `timeout_ms` for the first byte from `fd` and says whether it opens a TLS
// handshake record (content type 22). False when nothing comes.
bool StartsLikeTls(int fd, int64_t timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int r = 0;
  do {
    r = ::poll(&p, 1, static_cast<int>(timeout_ms));
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return false;
  uint8_t first = 0;
  return ::recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT) == 1 && first == 22;
}

}  // namespace

const char* CommitStepName(CommitStep step) {
  switch (step) {
    case CommitStep::kFlushed:
      return "flush";
    case CommitStep::kManifestPublished:
      return "manifest";
    case CommitStep::kGroupPublished:
      return "group";
  }
  return "?";
}

StoreServer::StoreServer(LocalStore* store, ServerOptions options)
    : StoreServer(store != nullptr ? ServeLocalStore(*store) : nullptr, std::move(options)) {}

StoreServer::StoreServer(std::unique_ptr<ServedStore> served, ServerOptions options)
    : served_(std::move(served)),
      local_(served_ != nullptr ? served_->collectable() : nullptr),
      options_(std::move(options)),
      authority_(options_.keys ? *options_.keys : KeyRing::Single(options_.key),
                 options_.key_usage_file) {
  if (served_ != nullptr) welcome_.info = served_->store().info();
  welcome_.manifest_delta = true;
  welcome_.takes_delete = true;
  // A daemon of a pool takes GC too, and answers why it does not collect (the pool's own gc).
  welcome_.takes_gc = true;
  welcome_.takes_list_backups = true;
  welcome_.prefix_checksum = options_.prefix_checksum;
  welcome_.max_frame = options_.max_frame;
  welcome_.max_inflight = options_.max_inflight;
}

StoreServer::~StoreServer() { Stop(); }

absl::Status StoreServer::Start() {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (started_) return absl::FailedPreconditionError("the store server was started already");
  if (served_ == nullptr) return absl::InvalidArgumentError("the store server has no store");
  if (options_.max_connections == 0) {
    return absl::InvalidArgumentError("max_connections must be at least 1");
  }
  if (options_.max_frame < kMinMaxFrame) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_frame ", options_.max_frame, " is below the minimum of ", kMinMaxFrame));
  }
  if (options_.max_inflight < options_.max_frame) {
    return absl::InvalidArgumentError(absl::StrCat("max_inflight ", options_.max_inflight,
                                                   " is below max_frame ", options_.max_frame));
  }
  if (options_.idle_timeout_ms <= 0) {
    return absl::InvalidArgumentError("the idle timeout must be positive");
  }
  CF_RETURN_IF_ERROR(authority_.LoadUsage());
  CF_ASSIGN_OR_RETURN(listen_fd_, io::Listen(options_.listen, 64));
  CF_ASSIGN_OR_RETURN(uint16_t port, io::LocalPort(listen_fd_.get()));
  port_.store(port);
  started_ = true;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void StoreServer::Stop() {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (!started_ || stopping_.load()) return;
  stopping_.store(true);
  if (accept_thread_.joinable()) accept_thread_.join();
  // A connection thread registers its socket, then looks at stopping_; Stop sets stopping_,
  // then shuts down what is registered: every connection is caught by one side or the other.
  std::list<Conn> conns;
  {
    std::lock_guard<std::mutex> conns_lock(conns_mu_);
    for (Conn& c : conns_) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
    }
    conns.splice(conns.begin(), conns_);
  }
  for (Conn& c : conns) {
    if (c.thread.joinable()) c.thread.join();
  }
  listen_fd_.Reset();
  Log("stopped");
}

absl::Status StoreServer::WithStore(const std::function<absl::Status(LocalStore&)>& fn) {
  if (local_ == nullptr) {
    return absl::FailedPreconditionError("the served store is not a local one");
  }
  std::lock_guard<std::mutex> lock(store_mu_);
  return fn(*local_);
}

size_t StoreServer::active_connections() {
  std::lock_guard<std::mutex> lock(conns_mu_);
  size_t n = 0;
  for (const Conn& c : conns_) n += c.done ? 0 : 1;
  return n;
}

void StoreServer::ReplaceKeys(KeyRing keys) {
  std::string names;
  for (const ClientKey& k : keys.keys()) {
    absl::StrAppend(&names, names.empty() ? "" : ", ", k.name, " (", FormatRights(k.rights), ")");
  }
  authority_.Replace(std::move(keys));
  Log(absl::StrCat("keys in force: ", names));
}

uint64_t StoreServer::key_usage(absl::string_view name) { return authority_.used(name); }

void StoreServer::Log(const std::string& line) {
  if (!options_.log) return;
  std::lock_guard<std::mutex> lock(log_mu_);
  options_.log(line);
}

void StoreServer::ReapFinished() {
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->done) {
        finished.push_back(std::move(it->thread));
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& t : finished) {
    if (t.joinable()) t.join();
  }
}

void StoreServer::AcceptLoop() {
  Log(absl::StrCat("listening on ", io::FormatEndpoint({options_.listen.host, port_.load()}),
                   " for store ", welcome_.info.uuid));
  while (!stopping_.load()) {
    std::string peer;
    absl::StatusOr<io::Fd> socket = io::Accept(listen_fd_.get(), kAcceptPollMs, &peer);
    ReapFinished();
    if (!socket.ok()) {
      if (absl::IsDeadlineExceeded(socket.status())) continue;
      Log(absl::StrCat("accept failed: ", socket.status().message()));
      // Out of descriptors, most likely: give the connections time to end.
      std::this_thread::sleep_for(std::chrono::milliseconds(kAcceptPollMs));
      continue;
    }
    std::unique_lock<std::mutex> lock(conns_mu_);
    const uint64_t id = next_conn_id_++;
    Log(absl::StrCat("#", id, " ", peer, ": connection accepted"));
    if (absl::Status tuned = io::TuneSocket(socket->get()); !tuned.ok()) {
      Log(absl::StrCat("#", id, " ", peer, ": ", tuned.message()));
    }
    // When a flood has pushed out as many handshakes as the budget and their threads have not
    // ended yet, wait a moment for them rather than turn this connection away.
    if (!conn_ended_.wait_for(lock, std::chrono::milliseconds(kHandshakeRoomWaitMs),
                              [&] { return MakeRoomForAHandshakeLocked(id, peer); })) {
      lock.unlock();
      Log(absl::StrCat("#", id, " ", peer, ": refused: too many handshakes in progress"));
      Refuse(*std::move(socket));
      continue;
    }
    Conn& conn = conns_.emplace_back();
    conn.id = id;
    conn.peer = peer;
    conn.thread = std::thread(
        [this, c = &conn, s = *std::move(socket)]() mutable { ServeConnection(c, std::move(s)); });
  }
}

bool StoreServer::MakeRoomForAHandshakeLocked(uint64_t id, const std::string& peer) {
  const size_t budget = std::max<size_t>(options_.max_pending_handshakes, 1);
  size_t pending = 0, ending = 0;
  Conn* oldest = nullptr;
  for (Conn& c : conns_) {
    if (c.done || c.authenticated) continue;
    if (c.evicted) {
      ++ending;
    } else {
      ++pending;
      if (oldest == nullptr && c.fd >= 0) oldest = &c;  // conns_ is in accept order
    }
  }
  if (pending < budget) return true;
  // Threads of pushed-out handshakes end within a moment; a flood faster than that is refused.
  if (ending >= budget || oldest == nullptr) return false;
  oldest->evicted = true;
  ::shutdown(oldest->fd, SHUT_RDWR);
  Log(absl::StrCat("#", oldest->id, " ", oldest->peer, ": pushed out of the handshake budget (",
                   budget, " pending) by #", id, " ", peer));
  return true;
}

absl::Status StoreServer::Admit(Conn* conn, const ClientKey& key, Welcome* welcome) {
  std::lock_guard<std::mutex> lock(conns_mu_);
  size_t served = 0, served_for_key = 0;
  for (const Conn& c : conns_) {
    if (c.done || !c.authenticated) continue;
    ++served;
    if (c.key_name == key.name) ++served_for_key;
  }
  if (served >= options_.max_connections) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many connections: the daemon serves at most ", options_.max_connections,
                     " at once; try again later"));
  }
  if (key.max_connections != 0 && served_for_key >= key.max_connections) {
    return absl::ResourceExhaustedError(absl::StrCat("too many connections: key '", key.name,
                                                     "' may have at most ", key.max_connections,
                                                     " at once; try again later"));
  }
  if (key.max_inflight != 0) {
    welcome->max_inflight =
        std::max<uint64_t>(std::min(welcome->max_inflight, key.max_inflight), welcome->max_frame);
  }
  conn->authenticated = true;
  conn->key_name = key.name;
  return absl::OkStatus();
}

void StoreServer::Refuse(io::Fd socket) {
  std::string frame;
  AppendFrame(static_cast<uint16_t>(MsgType::kError),
              Bytes(EncodeError(absl::ResourceExhaustedError(
                  "too many connections: the daemon is busy with handshakes; try again later"))),
              &frame);
  // A fresh socket's buffer takes a small frame at once; never block the accept thread on it.
  (void)::send(socket.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  CloseWriteAndDrain(socket.get());
}

void StoreServer::ServeConnection(Conn* conn, io::Fd socket) {
  const std::string who = absl::StrCat("#", conn->id, " ", conn->peer, ": ");
  auto log = [this, &who](const std::string& line) { Log(who + line); };
  const int fd = socket.get();
  absl::StatusOr<std::unique_ptr<WireConn>> made =
      WireConn::Make(std::move(socket), conn->peer, options_.backend);
  std::unique_ptr<WireConn> wc;
  bool stop = false;
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    if (made.ok()) {
      wc = *std::move(made);
      conn->fd = fd;
    }
    stop = stopping_.load();
  }
  if (!made.ok()) {
    log(absl::StrCat("closed: ", made.status().message()));
  } else if (stop) {
    log("closed: the server is stopping");
  } else {
    // A peer can make the daemon allocate (a frame up to max_frame, a manifest's checks): when
    // memory runs out, this connection ends and the daemon goes on serving the others.
    try {
      HandshakeAndServe(conn, *wc, log);
    } catch (const std::bad_alloc&) {
      log(absl::StrCat("closed: out of memory while serving it (", wc->bytes_received(),
                       " bytes in); the daemon goes on"));
    }
  }
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    conn->fd = -1;
  }
  wc.reset();  // closes the socket
  std::lock_guard<std::mutex> lock(conns_mu_);
  conn->done = true;
  conn_ended_.notify_all();
}

void StoreServer::HandshakeAndServe(Conn* conn, WireConn& wc,
                                    const std::function<void(const std::string&)>& log) {
  if (options_.tls != nullptr) {
    // A TLS client's first byte is a handshake record (22); anything else is a plain-text
    // client, told so in the protocol it speaks.
    if (!StartsLikeTls(wc.fd(), kHandshakeTimeoutMs)) {
      wc.SendError(absl::FailedPreconditionError(
          "this daemon speaks TLS only: connect with TLS (sync --tls-ca or --tls-peer-sha256)"));
      CloseWriteAndDrain(wc.fd());
      wc.Shutdown();
      log("refused: a plain-text client (TLS is required)");
      return;
    }
    if (absl::Status st = wc.StartTls(options_.tls, kHandshakeTimeoutMs); !st.ok()) {
      log(absl::StrCat("refused: TLS handshake failed (", st.message(), ")"));
      return;
    }
  }
  // The ring in force when the handshake began; requests are checked against later ones.
  const std::shared_ptr<const KeyRing> keys = authority_.keys();
  absl::StatusOr<const ClientKey*> key =
      ServerHandshake(wc, *keys, welcome_,
                      [this, conn](const ClientKey& k, Welcome* w) { return Admit(conn, k, w); });
  if (!key.ok()) {
    log(absl::StrCat("refused: ", RefusalReason(key.status()), " (", key.status().message(), ")"));
    return;
  }
  log(absl::StrCat("authenticated with key '", (*key)->name, "' (", FormatRights((*key)->rights),
                   ")", wc.tls() ? absl::StrCat(" over ", wc.TlsDescription()) : std::string()));
  wire_internal::KeyGrant grant{&authority_, (*key)->name, (*key)->key};
  wire_internal::StoreSession session(wc, *served_, store_mu_, gc_running_, options_,
                                      std::move(grant), log);
  const std::string why = session.Run();
  log(absl::StrCat("closed (", why, "): ", wc.bytes_received(), " bytes in, ", wc.bytes_sent(),
                   " bytes out, ", session.records_appended(), " records appended"));
}

}  // namespace chunkferry::engine
