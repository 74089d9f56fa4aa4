#include "engine/wire/remote_store.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "engine/format/manifest.h"
#include "engine/format/manifest_delta.h"
#include "engine/store/scratch_manifest.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// APPEND frames queued per connection, the one being sent included.
constexpr size_t kMaxQueuedFrames = 2;
// MANIFEST_DATA frames queued on connection 0 while a manifest streams out.
constexpr size_t kMaxQueuedManifestFrames = 4;
// Most ids in one HAVE or READ (besides the frame limit): small enough to pipeline.
constexpr size_t kMaxIdsPerRequest = 1u << 16;
// Largest receive request without a rate limit: a stalled peer is noticed within the timeout
// as long as it moves this much per kWireIoTimeoutMs.
constexpr size_t kMaxRecvPiece = 16u << 20;
// Most record bytes handed to a ReadRecordsFor sink at once.
constexpr size_t kSinkBatchBytes = 4u << 20;
// FLUSH makes the daemon fsync its packs, which may take long after a big push.
constexpr int64_t kFlushTimeoutMs = 10 * 60'000;
// BYE at close: how long to wait for it to leave.
constexpr int64_t kByeTimeoutMs = 2'000;

uint64_t Tag(size_t conn, bool recv) { return conn * 2 + (recv ? 1 : 0); }

// A daemon that turned the connection away for now ("too many connections"): worth retrying.
bool IsBusy(const absl::Status& status) {
  return absl::IsResourceExhausted(status) &&
         absl::StrContains(status.message(), "too many connections");
}

absl::Span<const uint8_t> StrBytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Bounds a client handshake in time. ClientHandshake waits up to kHandshakeTimeoutMs per step,
// so a daemon that accepts a connection and never answers would hold Connect() for that long
// whatever RemoteOptions::connect_timeout_ms says. When the deadline passes before Disarm(), a
// watchdog thread shuts the socket down, which fails the handshake's pending send or receive at
// once (on either I/O backend); Disarm() then reports that the deadline fired, so the caller can
// turn the resulting "peer closed" into DeadlineExceeded. Used only while connecting: one short-
// lived thread per connection is cheap next to a TCP handshake.
class HandshakeDeadline {
 public:
  HandshakeDeadline(int fd, std::chrono::steady_clock::time_point deadline)
      : thread_([this, fd, deadline] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_until(lock, deadline, [this] { return disarmed_; })) {
            fired_ = true;
            ::shutdown(fd, SHUT_RDWR);
          }
        }) {}
  ~HandshakeDeadline() { (void)Disarm(); }
  HandshakeDeadline(const HandshakeDeadline&) = delete;
  HandshakeDeadline& operator=(const HandshakeDeadline&) = delete;

  // Stops the watchdog; true when the deadline had passed and the socket was shut down.
  bool Disarm() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      disarmed_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  bool fired_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

// ---- Rate limit. ----

RemoteStore::TokenBucket::TokenBucket(uint64_t rate)
    : rate_(static_cast<double>(rate)), capacity_(0), tokens_(0), last_(Clock::now()) {
  if (rate > 0) {
    // A tenth of a second's worth, and at least the largest piece posted at once.
    const double piece = static_cast<double>(std::clamp<uint64_t>(rate / 20, 4096, 1u << 20));
    capacity_ = std::max(piece, rate_ / 10);
    tokens_ = capacity_;
  }
}

bool RemoteStore::TokenBucket::Take(size_t n, int64_t* wait_ms) {
  if (rate_ <= 0) return true;
  const auto now = Clock::now();
  tokens_ =
      std::min(capacity_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
  last_ = now;
  const double want = static_cast<double>(n);
  if (tokens_ >= want) {
    tokens_ -= want;
    return true;
  }
  const auto ms = static_cast<int64_t>((want - tokens_) / rate_ * 1000.0) + 1;
  *wait_ms = *wait_ms < 0 ? ms : std::min(*wait_ms, ms);
  return false;
}

// ---- Setup and teardown. ----

RemoteStore::RemoteStore(const RemoteOptions& options, std::string location)
    : options_(options),
      location_(std::move(location)),
      peer_(absl::StrCat("store daemon ", location_)),
      send_bucket_(options.rate_limit_bytes_per_s),
      recv_bucket_(options.rate_limit_bytes_per_s) {
  if (options.rate_limit_bytes_per_s > 0) {
    piece_ = std::clamp<uint64_t>(options.rate_limit_bytes_per_s / 20, 4096, 1u << 20);
  }
}

absl::StatusOr<std::unique_ptr<RemoteStore>> RemoteStore::Connect(const RemoteOptions& options) {
  const std::string location = io::FormatEndpoint(options.endpoint);
  if (options.connections < 1 || options.connections > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store daemon ", location, ": connections must be 1..64, not ", options.connections));
  }
  if (options.max_frame < kMinMaxFrame) {
    return absl::InvalidArgumentError(absl::StrCat("store daemon ", location, ": max_frame ",
                                                   options.max_frame, " is below the minimum of ",
                                                   kMinMaxFrame));
  }
  if (options.io_timeout_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("store daemon ", location, ": the I/O timeout must be positive"));
  }
  std::unique_ptr<RemoteStore> s(new RemoteStore(options, location));
  io::QueueOptions qo;
  qo.backend = options.backend;
  qo.single_thread = false;  // the caller's thread also blocks in other stores' queues
  // One send and one receive per connection; on the threads backend a waiting receive holds a
  // worker, so every request in flight gets one.
  qo.depth = static_cast<unsigned>(2 * options.connections + 4);
  qo.threads = static_cast<unsigned>(2 * options.connections + 2);
  auto queue = io::MakeQueue(qo);
  if (!queue.ok()) {
    return absl::Status(queue.status().code(),
                        absl::StrCat(s->peer_, ": ", queue.status().message()));
  }
  s->queue_ = *std::move(queue);

  // One deadline for every TCP connect and every handshake of Connect(); renewed only when a busy
  // daemon ("too many connections") made us wait and try again.
  const bool bounded = options.connect_timeout_ms > 0;
  const auto connect_timeout =
      std::chrono::milliseconds(std::max<int64_t>(options.connect_timeout_ms, 0));
  Clock::time_point deadline = Clock::now() + connect_timeout;
  const Clock::time_point busy_deadline =
      Clock::now() + std::chrono::milliseconds(std::max<int64_t>(options.busy_wait_ms, 0));
  auto ms_left = [&] {
    if (!bounded) return options.connect_timeout_ms;  // the kernel's own limit
    return std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
  };
  std::string expect = options.expect_uuid;
  // Connects and authenticates connection `i`.
  auto dial = [&](size_t i) -> absl::StatusOr<std::pair<std::unique_ptr<WireConn>, Welcome>> {
    auto fd = io::Connect(options.endpoint, ms_left());
    if (!fd.ok()) return s->PeerStatus(fd.status().code(), fd.status().message());
    if (absl::Status st = io::TuneSocket(fd->get()); !st.ok()) {
      return s->PeerStatus(st.code(), st.message());
    }
    auto wire = WireConn::Make(*std::move(fd), location, options.backend);
    if (!wire.ok()) return s->PeerStatus(wire.status().code(), wire.status().message());
    std::optional<HandshakeDeadline> watchdog;
    if (bounded) watchdog.emplace((*wire)->fd(), deadline);
    absl::Status tls;
    if (options.tls != nullptr) {
      tls = (*wire)->StartTls(options.tls, bounded ? ms_left() : kHandshakeTimeoutMs);
    }
    absl::StatusOr<Welcome> welcome =
        tls.ok() ? ClientHandshake(**wire, options.key, expect, options.max_frame)
                 : absl::StatusOr<Welcome>(tls);
    if (watchdog.has_value() && watchdog->Disarm()) {
      return s->PeerStatus(
          absl::StatusCode::kDeadlineExceeded,
          absl::StrCat("connection ", i,
                       " got no complete handshake within the connect timeout of ",
                       options.connect_timeout_ms,
                       " ms (the daemon accepted the connection but did not answer in time)"));
    }
    if (!welcome.ok()) {
      // The handshake names the daemon in most of its errors; not in those of the socket.
      if (absl::StrContains(welcome.status().message(), "store daemon")) return welcome.status();
      return s->PeerStatus(welcome.status().code(), welcome.status().message());
    }
    return std::make_pair(*std::move(wire), *std::move(welcome));
  };
  std::minstd_rand jitter(static_cast<uint32_t>(Clock::now().time_since_epoch().count()));
  for (size_t i = 0; i < options.connections; ++i) {
    auto dialed = dial(i);
    // A busy daemon is retried with exponential backoff (and jitter, so that the clients it
    // turned away do not all come back at once) until busy_wait_ms is spent.
    for (int64_t backoff_ms = 50; !dialed.ok() && IsBusy(dialed.status());
         backoff_ms = std::min<int64_t>(2 * backoff_ms, 2000)) {
      const auto wait = std::chrono::milliseconds(backoff_ms / 2 + jitter() % (backoff_ms / 2 + 1));
      if (Clock::now() + wait >= busy_deadline) break;
      std::this_thread::sleep_for(wait);
      deadline = Clock::now() + connect_timeout;
      dialed = dial(i);
    }
    if (!dialed.ok()) return dialed.status();
    std::unique_ptr<WireConn>& wire = dialed->first;
    const Welcome& welcome = dialed->second;
    if (i == 0) {
      s->info_ = welcome.info;
      s->max_frame_ = welcome.max_frame;
      s->max_inflight_ = std::min<uint64_t>(welcome.max_inflight, 2 * uint64_t{options.max_frame});
      s->manifest_delta_ = welcome.manifest_delta;
      s->takes_delete_ = welcome.takes_delete;
      s->takes_gc_ = welcome.takes_gc;
      s->takes_list_backups_ = welcome.takes_list_backups;
      s->prefix_checksum_ = welcome.prefix_checksum;
      expect = welcome.info.uuid;
    } else if (welcome.info.uuid != expect) {
      return s->PeerStatus(absl::StatusCode::kFailedPrecondition,
                           absl::StrCat("connection ", i, " reached store ", welcome.info.uuid,
                                        ", connection 0 store ", expect));
    } else {
      s->max_frame_ = std::min(s->max_frame_, welcome.max_frame);
      // APPEND frames go to any connection: the flag only when every one takes it.
      s->prefix_checksum_ = s->prefix_checksum_ && welcome.prefix_checksum;
      s->max_inflight_ = std::min(s->max_inflight_, welcome.max_inflight);
    }
    Conn c;
    c.fd = wire->fd();
    c.tls = wire->TakeTls();
    c.wire = std::move(wire);
    s->conns_.push_back(std::move(c));
  }
  s->frame_target_ =
      std::clamp<size_t>(options.append_frame_bytes, 64u << 10, s->max_frame_ - kAppendPrefixSize);
  return s;
}

RemoteStore::~RemoteStore() {
  if (queue_ == nullptr) return;  // Connect failed before the queue existed
  bool idle = broken_.ok() && !open_.open;
  for (const Conn& c : conns_) idle = idle && c.pending.empty();
  if (idle) {
    // BYE: nothing is waiting for a reply, so the daemon just closes after it.
    for (size_t i = 0; i < conns_.size(); ++i) Enqueue(i, MakeFrame(MsgType::kBye, {}), nullptr);
    (void)RunUntil(
        [this] {
          for (const Conn& c : conns_) {
            if (!c.out.empty() || (c.tls != nullptr && c.tls->pending() > 0)) return false;
          }
          return true;
        },
        kByeTimeoutMs);
  }
  // Requests still in flight complete at once on sockets shut down; their buffers live in
  // conns_ until then.
  for (Conn& c : conns_) ::shutdown(c.fd, SHUT_RDWR);
  std::vector<io::Completion> done(2 * conns_.size() + 4);
  while (queue_->in_flight() > 0) {
    if (!queue_->Reap(absl::MakeSpan(done), 1).ok()) break;
  }
  queue_.reset();
  conns_.clear();  // closes the sockets
}

// ---- Errors. ----

absl::Status RemoteStore::PeerStatus(absl::StatusCode code, absl::string_view message) const {
  return absl::Status(code, absl::StrCat(peer_, ": ", message));
}

absl::Status RemoteStore::PeerError(absl::Span<const uint8_t> error_payload) const {
  const absl::Status st = DecodeError(error_payload);
  return PeerStatus(st.code(), st.message());
}

absl::Status RemoteStore::Unexpected(uint16_t type, absl::string_view waiting_for) const {
  return PeerStatus(
      absl::StatusCode::kInvalidArgument,
      absl::StrCat("protocol error: unexpected frame ", std::string(MsgTypeName(type)),
                   " while waiting for ", waiting_for));
}

absl::Status RemoteStore::Break(absl::Status status) {
  if (broken_.ok()) {
    broken_ = status;
    for (Conn& c : conns_) {
      ::shutdown(c.fd, SHUT_RDWR);
      // Nobody waits for these replies any more (their callers return broken_).
      c.pending.clear();
      c.unacked = 0;
    }
    unacked_ids_.clear();
  }
  return broken_;
}

absl::Status RemoteStore::CheckUsable() const {
  if (!broken_.ok()) return broken_;
  if (in_sink_) {
    return absl::FailedPreconditionError(
        absl::StrCat(peer_, ": the store was used from inside its own ReadRecordsFor sink"));
  }
  return absl::OkStatus();
}

// ---- Frames and the I/O loop. ----

std::vector<uint8_t> RemoteStore::TakeBuffer() {
  if (free_buffers_.empty()) return {};
  std::vector<uint8_t> b = std::move(free_buffers_.back());
  free_buffers_.pop_back();
  return b;
}

void RemoteStore::ReturnBuffer(std::vector<uint8_t> buffer) {
  // Enough for every APPEND frame that may exist at once; small (control) buffers are dropped.
  if (buffer.capacity() >= frame_target_ / 2 && free_buffers_.size() < 2 * conns_.size() + 1) {
    buffer.clear();
    free_buffers_.push_back(std::move(buffer));
  }
}

RemoteStore::OutFrame RemoteStore::MakeFrame(MsgType type, absl::Span<const uint8_t> payload) {
  OutFrame f;
  f.bytes.resize(kFrameHeaderSize + payload.size());
  if (!payload.empty())
    std::memcpy(f.bytes.data() + kFrameHeaderSize, payload.data(), payload.size());
  EncodeFrameHeader(static_cast<uint16_t>(type), payload,
                    std::span<uint8_t, kFrameHeaderSize>(f.bytes.data(), kFrameHeaderSize));
  return f;
}

void RemoteStore::Enqueue(size_t c, OutFrame frame, ReplyHandler on_reply,
                          uint64_t append_payload) {
  Conn& conn = conns_[c];
  conn.out.push_back(std::move(frame));
  if (on_reply) {
    conn.pending.push_back(Pending{std::move(on_reply), append_payload});
    conn.unacked += append_payload;
  }
}

absl::Status RemoteStore::Post(int64_t* wait_ms) {
  for (size_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    if (!c.send_in_flight) {
      // What goes out next: under TLS the ciphertext of the frames, else the frames themselves.
      uint8_t* buf = nullptr;
      size_t left = 0;
      if (c.tls != nullptr) {
        CF_RETURN_IF_ERROR(Encrypt(c));
        const absl::Span<const uint8_t> run = c.tls->Output();
        buf = const_cast<uint8_t*>(run.data());  // a send only reads it
        left = run.size();
      } else if (!c.out.empty()) {
        OutFrame& f = c.out.front();
        buf = f.bytes.data() + f.sent;
        left = f.bytes.size() - f.sent;
      }
      const size_t n = send_bucket_.limited() ? std::min(left, piece_) : left;
      if (n > 0 && send_bucket_.Take(n, wait_ms)) {
        io::Request r;
        r.op = io::Request::Op::kSend;
        r.fd = c.fd;
        r.buf = buf;
        r.len = static_cast<uint32_t>(n);
        r.tag = Tag(i, false);
        CF_RETURN_IF_ERROR(queue_->Submit(r));
        c.send_in_flight = true;
        c.send_len = n;
      }
    }
    if (c.tls != nullptr && !c.recv_in_flight && !c.pending.empty()) {
      // What arrived with earlier ciphertext may already answer the newest request.
      CF_RETURN_IF_ERROR(Decrypt(c));
    }
    if (!c.recv_in_flight && !c.pending.empty()) {
      // Under TLS any amount of ciphertext; else exactly the rest of the header or payload.
      const size_t piece = recv_bucket_.limited() ? piece_ : kMaxRecvPiece;
      uint8_t* buf = nullptr;
      size_t n = piece;
      uint32_t flags = 0;
      if (c.tls != nullptr) {
        const absl::Span<uint8_t> room = c.tls->InputSpace();
        buf = room.data();
        n = std::min(n, room.size());  // 0 only if Decrypt could not drain a whole record
      } else {
        const size_t need =
            c.in_payload ? c.header.payload_length - c.got : kFrameHeaderSize - c.got;
        n = std::min(need, piece);
        buf = c.in_payload ? c.payload.data() + c.got : c.header_bytes + c.got;
        flags = io::Request::kRecvAll;
      }
      if (n > 0 && recv_bucket_.Take(n, wait_ms)) {
        io::Request r;
        r.op = io::Request::Op::kRecv;
        r.fd = c.fd;
        r.buf = buf;
        r.len = static_cast<uint32_t>(n);
        r.flags = flags;
        r.tag = Tag(i, true);
        CF_RETURN_IF_ERROR(queue_->Submit(r));
        c.recv_in_flight = true;
        c.recv_len = n;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RemoteStore::HandleCompletion(const io::Completion& completion) {
  const size_t i = completion.tag / 2;
  const bool recv = (completion.tag % 2) != 0;
  if (i >= conns_.size()) return absl::InternalError("completion for an unknown connection");
  Conn& c = conns_[i];
  const int64_t res = completion.result;
  if (!recv) {
    c.send_in_flight = false;
    if (!broken_.ok()) return broken_;
    if (res < 0) {
      const absl::Status st = io::SocketErrorStatus(static_cast<int>(-res), "send", "frame");
      return Break(PeerStatus(st.code(), st.message()));
    }
    last_progress_ = Clock::now();
    c.bytes_sent += static_cast<uint64_t>(res);
    if (c.tls != nullptr) {
      c.tls->ConsumeOutput(static_cast<size_t>(res));
      return absl::OkStatus();
    }
    OutFrame& f = c.out.front();
    f.sent += static_cast<size_t>(res);
    if (f.sent == f.bytes.size()) {
      ReturnBuffer(std::move(f.bytes));
      c.out.pop_front();
    }
    return absl::OkStatus();
  }
  c.recv_in_flight = false;
  if (!broken_.ok()) return broken_;
  if (res < 0) {
    const absl::Status st = io::SocketErrorStatus(static_cast<int>(-res), "receive", "frame");
    return Break(PeerStatus(st.code(), st.message()));
  }
  c.bytes_received += static_cast<uint64_t>(res);
  if (c.tls != nullptr) {
    if (res == 0) {
      return Break(PeerStatus(absl::StatusCode::kUnavailable, "the daemon closed the connection"));
    }
    last_progress_ = Clock::now();
    c.tls->CommitInput(static_cast<size_t>(res));
    return Decrypt(c);
  }
  if (static_cast<size_t>(res) < c.recv_len) {
    return Break(PeerStatus(absl::StatusCode::kUnavailable,
                            c.got == 0 && !c.in_payload && res == 0
                                ? "the daemon closed the connection"
                                : "the daemon closed the connection in the middle of a frame"));
  }
  last_progress_ = Clock::now();
  return Advance(c, static_cast<size_t>(res));
}

absl::Status RemoteStore::Decrypt(Conn& c) {
  while (broken_.ok() && !c.pending.empty()) {
    uint8_t* dest = c.in_payload ? c.payload.data() + c.got : c.header_bytes + c.got;
    const size_t need = c.in_payload ? c.header.payload_length - c.got : kFrameHeaderSize - c.got;
    absl::StatusOr<size_t> n = c.tls->Read(absl::MakeSpan(dest, need));
    if (absl::IsUnavailable(n.status())) {
      return Break(PeerStatus(absl::StatusCode::kUnavailable,
                              "the daemon closed the connection (TLS close_notify)"));
    }
    if (!n.ok()) return Break(PeerStatus(n.status().code(), n.status().message()));
    if (*n == 0) break;  // the rest is in ciphertext not received yet
    CF_RETURN_IF_ERROR(Advance(c, *n));
  }
  return broken_;
}

absl::Status RemoteStore::Encrypt(Conn& c) {
  while (!c.out.empty()) {
    OutFrame& f = c.out.front();
    absl::StatusOr<size_t> n = c.tls->Write(absl::MakeConstSpan(f.bytes).subspan(f.sent));
    if (!n.ok()) return Break(PeerStatus(n.status().code(), n.status().message()));
    f.sent += *n;
    if (f.sent < f.bytes.size()) break;  // the ring is full; the rest goes in a later call
    ReturnBuffer(std::move(f.bytes));
    c.out.pop_front();
  }
  return absl::OkStatus();
}

absl::Status RemoteStore::Advance(Conn& c, size_t n) {
  c.got += n;
  if (!c.in_payload) {
    if (c.got < kFrameHeaderSize) return absl::OkStatus();
    auto header = ParseFrameHeader(
        std::span<const uint8_t, kFrameHeaderSize>(c.header_bytes, kFrameHeaderSize), max_frame_);
    if (!header.ok()) return Break(PeerStatus(header.status().code(), header.status().message()));
    c.header = *header;
    c.in_payload = true;
    c.got = 0;
    if (c.payload.size() < c.header.payload_length) c.payload.resize(c.header.payload_length);
    if (c.header.payload_length > 0) return absl::OkStatus();
  } else if (c.got < c.header.payload_length) {
    return absl::OkStatus();
  }
  const auto payload = absl::MakeConstSpan(c.payload.data(), c.header.payload_length);
  if (absl::Status st = CheckFramePayload(c.header, payload); !st.ok()) {
    return Break(PeerStatus(st.code(), st.message()));
  }
  c.in_payload = false;
  c.got = 0;
  return OnFrame(c);
}

absl::Status RemoteStore::OnFrame(Conn& c) {
  const uint16_t type = c.header.type;
  const auto payload = absl::MakeConstSpan(c.payload.data(), c.header.payload_length);
  if (c.pending.empty()) return Break(Unexpected(type, "nothing"));
  // The handler may run a sink for long, or fail the store; it stays in the deque meanwhile.
  absl::StatusOr<bool> done = c.pending.front().on_frame(type, payload);
  if (!broken_.ok()) return broken_;
  if (!done.ok()) return Break(done.status());
  last_progress_ = Clock::now();  // a sink may have run for long
  if (*done) {
    c.unacked -= c.pending.front().append_payload;
    c.pending.pop_front();
  }
  return absl::OkStatus();
}

absl::Status RemoteStore::RunUntil(const std::function<bool()>& done, int64_t timeout_ms) {
  if (timeout_ms <= 0) timeout_ms = options_.io_timeout_ms;
  last_progress_ = Clock::now();
  std::vector<io::Completion> completions(2 * conns_.size() + 4);
  for (;;) {
    if (!broken_.ok()) return broken_;
    if (done()) return absl::OkStatus();
    int64_t rate_wait = -1;
    if (absl::Status st = Post(&rate_wait); !st.ok()) {
      return Break(PeerStatus(st.code(), st.message()));
    }
    if (queue_->in_flight() == 0) {
      if (rate_wait < 0) {
        return Break(PeerStatus(absl::StatusCode::kInternal,
                                "the client waits for a reply it never asked for"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rate_wait));
      continue;
    }
    const int64_t idle =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_progress_)
            .count();
    if (idle >= timeout_ms) {
      return Break(
          PeerStatus(absl::StatusCode::kDeadlineExceeded,
                     absl::StrCat("no progress for ", static_cast<double>(timeout_ms) / 1000,
                                  " s (the daemon or the network stalled)")));
    }
    int64_t wait = timeout_ms - idle;
    if (rate_wait >= 0) wait = std::min(wait, rate_wait);
    auto n = queue_->ReapFor(absl::MakeSpan(completions), 1, wait);
    if (!n.ok()) return Break(PeerStatus(n.status().code(), n.status().message()));
    for (size_t k = 0; k < *n; ++k) {
      // Every completion is handled, even after a failure, so that the flags stay true.
      (void)HandleCompletion(completions[k]);
    }
  }
}

absl::Status RemoteStore::Poll() {
  if (!broken_.ok()) return broken_;
  int64_t rate_wait = -1;
  if (absl::Status st = Post(&rate_wait); !st.ok()) {
    return Break(PeerStatus(st.code(), st.message()));
  }
  std::vector<io::Completion> completions(2 * conns_.size() + 4);
  auto n = queue_->ReapFor(absl::MakeSpan(completions), 0, 0);
  if (!n.ok()) return Break(PeerStatus(n.status().code(), n.status().message()));
  for (size_t k = 0; k < *n; ++k) (void)HandleCompletion(completions[k]);
  if (!broken_.ok()) return broken_;
  if (absl::Status st = Post(&rate_wait); !st.ok()) {
    return Break(PeerStatus(st.code(), st.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> RemoteStore::Call(MsgType type,
                                                       absl::Span<const uint8_t> payload,
                                                       MsgType reply, int64_t timeout_ms) {
  CF_RETURN_IF_ERROR(CheckUsable());
  bool done = false;
  absl::Status status;
  std::vector<uint8_t> out;
  Enqueue(0, MakeFrame(type, payload),
          [&, reply](uint16_t t, absl::Span<const uint8_t> p) -> absl::StatusOr<bool> {
            if (t == static_cast<uint16_t>(reply)) {
              out.assign(p.begin(), p.end());
            } else if (t == static_cast<uint16_t>(MsgType::kError)) {
              status = PeerError(p);
            } else {
              return Unexpected(t, std::string(MsgTypeName(reply)));
            }
            done = true;
            return true;
          });
  CF_RETURN_IF_ERROR(RunUntil([&] { return done; }, timeout_ms));
  if (!status.ok()) return status;
  return out;
}

// ---- Chunks. ----

namespace {

// The answers of HAVE frames sent ahead, filled in by their reply handlers; shared with them,
// as they outlive a query dropped unanswered (its replies are then read and dropped).
struct HaveAnswers {
  std::vector<bool> have;
  std::vector<size_t> asked;  // index in `have` of each id sent, in order
  size_t outstanding = 0;     // HAVE frames without their reply
  absl::Status status;
};

}  // namespace

class RemoteStore::PendingHave : public Store::HaveQuery {
 public:
  PendingHave(RemoteStore* store, std::shared_ptr<HaveAnswers> answers)
      : store_(store), answers_(std::move(answers)) {}
  absl::Status Wait(std::vector<bool>* have) override {
    HaveAnswers& a = *answers_;
    CF_RETURN_IF_ERROR(store_->RunUntil([&a] { return a.outstanding == 0; }));
    if (!a.status.ok()) return a.status;
    *have = std::move(a.have);
    return absl::OkStatus();
  }

 private:
  RemoteStore* store_;
  std::shared_ptr<HaveAnswers> answers_;
};

absl::StatusOr<std::unique_ptr<Store::HaveQuery>> RemoteStore::AskHave(
    absl::Span<const codec::ChunkId> ids) {
  CF_RETURN_IF_ERROR(CheckUsable());
  auto answers = std::make_shared<HaveAnswers>();
  answers->have.assign(ids.size(), false);
  // Chunks on their way count as held (Store); the rest are asked, many per HAVE, pipelined.
  std::vector<codec::ChunkId> ask_ids;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (unacked_ids_.contains(ids[i])) {
      answers->have[i] = true;
    } else {
      answers->asked.push_back(i);
      ask_ids.push_back(ids[i]);
    }
  }
  const size_t per = std::min(MaxIdsPerFrame(max_frame_), kMaxIdsPerRequest);
  for (size_t start = 0; start < ask_ids.size(); start += per) {
    const size_t n = std::min(per, ask_ids.size() - start);
    const std::string payload = EncodeHave(absl::MakeConstSpan(ask_ids).subspan(start, n));
    ++answers->outstanding;
    Enqueue(
        0, MakeFrame(MsgType::kHave, StrBytes(payload)),
        [this, answers, start, n](uint16_t t, absl::Span<const uint8_t> p) -> absl::StatusOr<bool> {
          HaveAnswers& a = *answers;
          if (t == static_cast<uint16_t>(MsgType::kHaveReply)) {
            auto bits = DecodeHaveReply(p, n);
            if (!bits.ok()) return PeerStatus(bits.status().code(), bits.status().message());
            for (size_t k = 0; k < n; ++k) a.have[a.asked[start + k]] = (*bits)[k];
          } else if (t == static_cast<uint16_t>(MsgType::kError)) {
            if (a.status.ok()) a.status = PeerError(p);
          } else {
            return Unexpected(t, "HAVE_REPLY");
          }
          --a.outstanding;
          return true;
        });
  }
  // On their way now, not at the next wait.
  CF_RETURN_IF_ERROR(Poll());
  return std::make_unique<PendingHave>(this, std::move(answers));
}

absl::Status RemoteStore::HaveChunks(absl::Span<const codec::ChunkId> ids,
                                     std::vector<bool>* have) {
  CF_ASSIGN_OR_RETURN(std::unique_ptr<HaveQuery> query, AskHave(ids));
  return query->Wait(have);
}

absl::Status RemoteStore::ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                                         const RecordSink& sink) {
  CF_RETURN_IF_ERROR(CheckUsable());
  if (ids.empty()) return absl::OkStatus();
  if (open_.open) CF_RETURN_IF_ERROR(SealAppend());
  // Shared with the READs' handlers, which outlive this call when it stops early: their
  // remaining replies are then read and dropped by later calls.
  struct ReadState {
    const RecordSink* sink = nullptr;
    size_t outstanding = 0;
    bool stopped = false;
    absl::Status status;
    // A record holding ids of two connections' slices comes on both: the sink sees it once.
    absl::flat_hash_set<std::pair<codec::ChunkId, uint64_t>> seen;
    std::vector<absl::Span<const uint8_t>> fresh;
  };
  auto state = std::make_shared<ReadState>();
  state->sink = &sink;
  const size_t per_frame = std::min(MaxIdsPerFrame(max_frame_), kMaxIdsPerRequest);
  const size_t per_conn = (ids.size() + conns_.size() - 1) / conns_.size();
  for (size_t c = 0; c < conns_.size(); ++c) {
    const size_t begin = std::min(ids.size(), c * per_conn);
    const size_t end = std::min(ids.size(), begin + per_conn);
    for (size_t start = begin; start < end; start += per_frame) {
      const size_t n = std::min(per_frame, end - start);
      const std::string payload = EncodeRead(ids.subspan(start, n));
      ++state->outstanding;
      Enqueue(c, MakeFrame(MsgType::kRead, StrBytes(payload)),
              [this, state](uint16_t t, absl::Span<const uint8_t> p) -> absl::StatusOr<bool> {
                if (t == static_cast<uint16_t>(MsgType::kRecords)) {
                  auto records = DecodeRecords(p);
                  if (!records.ok()) {
                    return PeerStatus(records.status().code(), records.status().message());
                  }
                  if (state->stopped) return false;
                  state->fresh.clear();
                  for (const auto& r : *records) {
                    auto view = codec::ParseRecord(r);
                    if (!view.ok())
                      return PeerStatus(view.status().code(), view.status().message());
                    if (state->seen.insert({view->chunk(0).id, view->payload_checksum}).second) {
                      state->fresh.push_back(r);
                    }
                  }
                  // In slices: the sink's store copies each batch while it checks it, and
                  // a daemon's RECORDS frame may be as large as max_frame.
                  const auto fresh = absl::MakeConstSpan(state->fresh);
                  for (size_t at = 0; at < fresh.size() && !state->stopped;) {
                    size_t stop = at, bytes = 0;
                    while (stop < fresh.size() &&
                           (stop == at || bytes + fresh[stop].size() <= kSinkBatchBytes)) {
                      bytes += fresh[stop++].size();
                    }
                    in_sink_ = true;
                    absl::Status st = (*state->sink)(fresh.subspan(at, stop - at));
                    in_sink_ = false;
                    if (!st.ok()) {
                      state->status = std::move(st);
                      state->stopped = true;
                    }
                    at = stop;
                  }
                  return false;
                }
                if (t == static_cast<uint16_t>(MsgType::kReadEnd)) {
                  if (absl::Status st = CheckEmptyPayload(MsgType::kReadEnd, p); !st.ok()) {
                    return PeerStatus(st.code(), st.message());
                  }
                } else if (t == static_cast<uint16_t>(MsgType::kError)) {
                  if (!state->stopped) {
                    state->status = PeerError(p);
                    state->stopped = true;
                  }
                } else {
                  return Unexpected(t, "RECORDS or READ_END");
                }
                --state->outstanding;
                return true;
              });
    }
  }
  CF_RETURN_IF_ERROR(RunUntil([&] { return state->outstanding == 0 || state->stopped; }));
  return state->status;
}

void RemoteStore::ForgetIds(absl::Span<const codec::ChunkId> ids) {
  for (const auto& id : ids) {
    auto it = unacked_ids_.find(id);
    if (it == unacked_ids_.end()) continue;
    if (--it->second == 0) unacked_ids_.erase(it);
  }
}

absl::Status RemoteStore::SealAppend() {
  OpenAppend& o = open_;
  o.open = false;
  EncodeAppendPrefix(o.mode, o.records, o.frame.bytes.data() + kFrameHeaderSize);
  const uint64_t payload_size = o.frame.bytes.size() - kFrameHeaderSize;
  // Every record checks itself (its header's and payload's XXH3-64), and the daemon checks them
  // all: where it takes the flag, the frame's checksum covers the prefix alone.
  const uint16_t flags = prefix_checksum_ ? kFrameFlagPrefixChecksum : 0;
  const auto payload = absl::MakeConstSpan(o.frame.bytes.data() + kFrameHeaderSize, payload_size);
  EncodeFrameHeader(static_cast<uint16_t>(MsgType::kAppend), static_cast<uint32_t>(payload_size),
                    FrameChecksum(payload, flags),
                    std::span<uint8_t, kFrameHeaderSize>(o.frame.bytes.data(), kFrameHeaderSize),
                    flags);
  auto room = [&](const Conn& c) {
    return c.out.size() < kMaxQueuedFrames &&
           (c.unacked == 0 || c.unacked + payload_size <= max_inflight_);
  };
  absl::Status st = RunUntil([&] {
    for (const Conn& c : conns_) {
      if (room(c)) return true;
    }
    return false;
  });
  if (!st.ok()) {
    ForgetIds(o.ids);
    o.ids.clear();
    return st;
  }
  size_t best = conns_.size();
  for (size_t i = 0; i < conns_.size(); ++i) {
    if (!room(conns_[i])) continue;
    if (best == conns_.size() || conns_[i].unacked < conns_[best].unacked) best = i;
  }
  AppendStats* stats = o.stats;
  Enqueue(
      best, std::move(o.frame),
      [this, stats, ids = std::move(o.ids)](uint16_t t,
                                            absl::Span<const uint8_t> p) -> absl::StatusOr<bool> {
        if (t == static_cast<uint16_t>(MsgType::kAppendAck)) {
          auto ack = DecodeAppendAck(p);
          if (!ack.ok()) return PeerStatus(ack.status().code(), ack.status().message());
          if (stats != nullptr) {
            stats->records_received += ack->records_received;
            stats->records_appended += ack->records_appended;
            stats->bytes_appended += ack->bytes_appended;
            stats->chunks_added += ack->chunks_added;
          }
        } else if (t == static_cast<uint16_t>(MsgType::kError)) {
          if (append_error_.ok()) append_error_ = PeerError(p);
        } else {
          return Unexpected(t, "APPEND_ACK");
        }
        ForgetIds(ids);
        return true;
      },
      payload_size);
  o.frame = OutFrame();
  o.ids = {};
  o.records = 0;
  return absl::OkStatus();
}

absl::Status RemoteStore::AppendRecords(absl::Span<const absl::Span<const uint8_t>> records,
                                        VerifyMode mode, AppendStats* stats) {
  CF_RETURN_IF_ERROR(CheckUsable());
  if (!append_error_.ok()) return append_error_;
  for (size_t i = 0; i < records.size(); ++i) {
    const absl::Span<const uint8_t> r = records[i];
    auto view = codec::ParseRecord(r);
    if (!view.ok() || view->size != r.size()) {
      return absl::Status(
          view.ok() ? absl::StatusCode::kInvalidArgument : view.status().code(),
          absl::StrCat("record ", i, " of a batch for ", peer_, " is malformed: ",
                       view.ok() ? "bytes follow the record" : view.status().message()));
    }
    if (kAppendPrefixSize + r.size() > max_frame_) {
      return absl::ResourceExhaustedError(absl::StrCat("record of ", r.size(),
                                                       " bytes does not fit a frame of ", peer_,
                                                       " (max_frame ", max_frame_, ")"));
    }
    if (open_.open && (open_.mode != mode || open_.stats != stats ||
                       open_.frame.bytes.size() - kFrameHeaderSize + r.size() > frame_target_)) {
      CF_RETURN_IF_ERROR(SealAppend());
    }
    if (!open_.open) {
      open_.open = true;
      open_.mode = mode;
      open_.stats = stats;
      open_.records = 0;
      open_.frame.sent = 0;
      open_.frame.bytes = TakeBuffer();
      open_.frame.bytes.reserve(kFrameHeaderSize + std::max(frame_target_, r.size() + 64));
      open_.frame.bytes.resize(kFrameHeaderSize + kAppendPrefixSize);
    }
    open_.frame.bytes.insert(open_.frame.bytes.end(), r.begin(), r.end());
    ++open_.records;
    for (uint32_t k = 0; k < view->chunk_count; ++k) {
      const codec::ChunkId id = view->chunk(k).id;
      open_.ids.push_back(id);
      ++unacked_ids_[id];
    }
  }
  if (open_.open && open_.frame.bytes.size() - kFrameHeaderSize >= frame_target_) {
    CF_RETURN_IF_ERROR(SealAppend());
  }
  // Keep the sockets busy and collect the acks that are in, without waiting.
  CF_RETURN_IF_ERROR(Poll());
  return append_error_;
}

absl::Status RemoteStore::Flush() {
  CF_RETURN_IF_ERROR(CheckUsable());
  if (open_.open) CF_RETURN_IF_ERROR(SealAppend());
  CF_RETURN_IF_ERROR(RunUntil([this] {
    for (const Conn& c : conns_) {
      if (c.unacked > 0) return false;
    }
    return true;
  }));
  if (!append_error_.ok()) return append_error_;
  CF_ASSIGN_OR_RETURN(auto reply, Call(MsgType::kFlush, {}, MsgType::kFlushAck,
                                       std::max(kFlushTimeoutMs, options_.io_timeout_ms)));
  if (absl::Status st = CheckEmptyPayload(MsgType::kFlushAck, reply); !st.ok()) {
    return Break(PeerStatus(st.code(), st.message()));
  }
  return absl::OkStatus();
}

// ---- Manifests and groups. ----

absl::Status RemoteStore::SendManifestStream(MsgType type, const std::string& header,
                                             const std::string& path) {
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(fd.get(), path));
  CF_RETURN_IF_ERROR(CheckUsable());
  Enqueue(0, MakeFrame(type, StrBytes(header)), nullptr);
  std::vector<uint8_t> chunk;
  for (uint64_t off = 0; off < size;) {
    chunk.resize(static_cast<size_t>(std::min<uint64_t>(kMaxManifestData, size - off)));
    if (absl::Status st = io::PreadFull(fd.get(), absl::MakeSpan(chunk), off); !st.ok()) {
      // The daemon waits for the rest of the manifest: connection 0 is out of step for good.
      return Break(st);
    }
    CF_RETURN_IF_ERROR(
        RunUntil([this] { return conns_[0].out.size() < kMaxQueuedManifestFrames; }));
    Enqueue(0, MakeFrame(MsgType::kManifestData, chunk), nullptr);
    off += chunk.size();
  }
  bool done = false;
  absl::Status status;
  Enqueue(0, MakeFrame(MsgType::kManifestEnd, {}),
          [&](uint16_t t, absl::Span<const uint8_t> p) -> absl::StatusOr<bool> {
            if (t == static_cast<uint16_t>(MsgType::kOk)) {
              if (absl::Status st = CheckEmptyPayload(MsgType::kOk, p); !st.ok()) {
                return PeerStatus(st.code(), st.message());
              }
            } else if (t == static_cast<uint16_t>(MsgType::kError)) {
              status = PeerError(p);
            } else {
              return Unexpected(t, "OK");
            }
            done = true;
            return true;
          });
  CF_RETURN_IF_ERROR(RunUntil([&] { return done; }));
  return status;
}

absl::Status RemoteStore::PutManifest(const VolumeBackupMeta& meta, ManifestSource& entries) {
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(ValidateMeta(meta));
  // The daemon takes the manifest file itself: write it here, then stream it.
  CF_ASSIGN_OR_RETURN(ScratchDir dir, ScratchDir::Make());
  CF_ASSIGN_OR_RETURN(const std::string path, WriteScratchManifest(dir, meta, entries));
  engine::PutManifest put;
  put.backup_uuid = meta.uuid;
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(put.file_length, io::FileSize(fd.get(), path));
  return SendManifestStream(MsgType::kPutManifest, EncodePutManifest(put), path);
}

absl::Status RemoteStore::PutManifestWithBase(const VolumeBackupMeta& meta, ManifestSource& entries,
                                              ManifestSource* base, const std::string& base_uuid) {
  if (base == nullptr || !manifest_delta_ || !IsValidUuid(base_uuid)) {
    return PutManifest(meta, entries);
  }
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(ValidateMeta(meta));
  // The delta is written to a scratch file first (its length goes in the request), as streams.
  CF_ASSIGN_OR_RETURN(ScratchDir dir, ScratchDir::Make());
  const std::string path = dir.File("manifest");
  uint64_t length = 0;
  {
    CF_ASSIGN_OR_RETURN(io::Fd fd,
                        io::OpenFile(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    auto sink = [&](absl::string_view bytes) -> absl::Status {
      CF_RETURN_IF_ERROR(io::PwriteFull(fd.get(), AsBytes(bytes), length));
      length += bytes.size();
      return absl::OkStatus();
    };
    CF_RETURN_IF_ERROR(EncodeManifestDelta(meta, entries, *base, sink));
  }
  if (length > kMaxManifestLength) return PutManifest(meta, entries);
  engine::PutManifestDelta put;
  put.backup_uuid = meta.uuid;
  put.base_uuid = base_uuid;
  put.delta_length = length;
  absl::Status st =
      SendManifestStream(MsgType::kPutManifestDelta, EncodePutManifestDelta(put), path);
  if (absl::IsNotFound(st) || absl::IsFailedPrecondition(st)) {
    // The daemon lacks the base (or cannot use this delta): the whole manifest then.
    ++delta_fallbacks_;
    return PutManifest(meta, entries);
  }
  if (st.ok()) ++deltas_sent_;
  return st;
}

absl::StatusOr<std::unique_ptr<ManifestSource>> RemoteStore::OpenManifest(
    const std::string& backup_uuid) {
  CF_RETURN_IF_ERROR(CheckUsable());
  if (!IsValidUuid(backup_uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume backup uuid '", backup_uuid, "' is malformed"));
  }
  CF_ASSIGN_OR_RETURN(ScratchDir dir, ScratchDir::Make());
  const std::string path = dir.File("manifest");
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  bool done = false;
  absl::Status status;
  uint64_t offset = 0;
  Enqueue(0, MakeFrame(MsgType::kOpenManifest, StrBytes(EncodeOpenManifest(backup_uuid))),
          [&](uint16_t t, absl::Span<const uint8_t> p) -> absl::StatusOr<bool> {
            if (t == static_cast<uint16_t>(MsgType::kManifestData)) {
              auto data = DecodeManifestData(p);
              if (!data.ok()) return PeerStatus(data.status().code(), data.status().message());
              if (data->size() > options_.max_manifest_bytes - offset) {
                return PeerStatus(absl::StatusCode::kResourceExhausted,
                                  absl::StrCat("the manifest of ", backup_uuid,
                                               " runs past this client's limit of ",
                                               options_.max_manifest_bytes, " bytes"));
              }
              if (status.ok()) {
                status = io::PwriteFull(fd.get(), *data, offset);
                offset += data->size();
              }
              return false;
            }
            if (t == static_cast<uint16_t>(MsgType::kManifestEnd)) {
              if (absl::Status st = CheckEmptyPayload(MsgType::kManifestEnd, p); !st.ok()) {
                return PeerStatus(st.code(), st.message());
              }
            } else if (t == static_cast<uint16_t>(MsgType::kError)) {
              if (status.ok()) status = PeerError(p);
            } else {
              return Unexpected(t, "MANIFEST_DATA or MANIFEST_END");
            }
            done = true;
            return true;
          });
  CF_RETURN_IF_ERROR(RunUntil([&] { return done; }));
  CF_RETURN_IF_ERROR(status);
  fd = io::Fd();
  // Checked whole before any entry is used; the reader keeps its descriptor, so the file can go.
  auto reader = ManifestReader::Open(path);
  if (!reader.ok()) return PeerStatus(reader.status().code(), reader.status().message());
  if ((*reader)->meta().uuid != backup_uuid) {
    return PeerStatus(absl::StatusCode::kDataLoss,
                      absl::StrCat("asked for the manifest of ", backup_uuid, ", got that of ",
                                   (*reader)->meta().uuid));
  }
  return std::unique_ptr<ManifestSource>(*std::move(reader));
}

absl::Status RemoteStore::PutGroup(const GroupRecord& group) {
  CF_ASSIGN_OR_RETURN(auto reply,
                      Call(MsgType::kPutGroup, StrBytes(EncodePutGroup(group)), MsgType::kOk));
  if (absl::Status st = CheckEmptyPayload(MsgType::kOk, reply); !st.ok()) {
    return PeerStatus(st.code(), st.message());
  }
  return absl::OkStatus();
}

absl::StatusOr<GroupRecord> RemoteStore::GetGroup(const std::string& group_uuid) {
  if (!IsValidUuid(group_uuid)) {
    return absl::InvalidArgumentError(absl::StrCat("group uuid '", group_uuid, "' is malformed"));
  }
  CF_ASSIGN_OR_RETURN(
      auto reply, Call(MsgType::kGetGroup, StrBytes(EncodeGetGroup(group_uuid)), MsgType::kGroup));
  auto group = DecodeGroupReply(reply);
  if (!group.ok()) return PeerStatus(group.status().code(), group.status().message());
  if (group->group_uuid != group_uuid) {
    return PeerStatus(absl::StatusCode::kDataLoss,
                      absl::StrCat("asked for group ", group_uuid, ", got ", group->group_uuid));
  }
  return group;
}

absl::StatusOr<std::vector<std::string>> RemoteStore::ListGroups() {
  CF_ASSIGN_OR_RETURN(auto reply, Call(MsgType::kListGroups, {}, MsgType::kGroupList));
  auto list = DecodeGroupList(reply);
  if (!list.ok()) return PeerStatus(list.status().code(), list.status().message());
  return list;
}

absl::StatusOr<std::vector<std::string>> RemoteStore::ListBackups() {
  if (!takes_list_backups_) {
    return absl::UnimplementedError(
        "the daemon does not take LIST_BACKUPS (an older version): only the volume backups its "
        "groups name can be listed");
  }
  CF_ASSIGN_OR_RETURN(auto reply, Call(MsgType::kListBackups, {}, MsgType::kBackupList));
  auto list = DecodeBackupList(reply);
  if (!list.ok()) return PeerStatus(list.status().code(), list.status().message());
  return list;
}

uint64_t RemoteStore::wire_bytes_sent() const {
  uint64_t n = 0;
  for (const Conn& c : conns_) n += c.bytes_sent + c.wire->bytes_sent();
  return n;
}

uint64_t RemoteStore::wire_bytes_received() const {
  uint64_t n = 0;
  for (const Conn& c : conns_) n += c.bytes_received + c.wire->bytes_received();
  return n;
}

absl::StatusOr<DeleteResult> RemoteStore::Delete(DeleteKind kind, const std::string& uuid) {
  if (!IsValidUuid(uuid)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kind == DeleteKind::kGroup ? "group" : "volume backup", " uuid '", uuid, "' is malformed"));
  }
  if (!takes_delete_) {
    return PeerStatus(absl::StatusCode::kFailedPrecondition,
                      "the daemon does not take DELETE (an older version): upgrade it first");
  }
  CF_ASSIGN_OR_RETURN(
      auto reply, Call(MsgType::kDelete, StrBytes(EncodeDelete({kind, uuid})), MsgType::kDeleted));
  auto result = DecodeDeleted(reply);
  if (!result.ok()) return PeerStatus(result.status().code(), result.status().message());
  return result;
}

absl::StatusOr<DeleteResult> RemoteStore::DeleteGroup(const std::string& group_uuid) {
  return Delete(DeleteKind::kGroup, group_uuid);
}

absl::StatusOr<DeleteResult> RemoteStore::DeleteBackup(const std::string& backup_uuid) {
  return Delete(DeleteKind::kBackup, backup_uuid);
}

absl::StatusOr<GcStats> RemoteStore::CollectGarbage(const GcRequest& request) {
  if (!takes_gc_) {
    return PeerStatus(absl::StatusCode::kFailedPrecondition,
                      "the daemon does not take GC (an older version): upgrade it first");
  }
  // A collection of a large store takes as long as reading its manifests and rewriting packs.
  constexpr int64_t kGcTimeoutMs = int64_t{24} * 3600 * 1000;
  CF_ASSIGN_OR_RETURN(auto reply, Call(MsgType::kGc, StrBytes(EncodeGc(request)), MsgType::kGcDone,
                                       std::max(kGcTimeoutMs, options_.io_timeout_ms)));
  auto totals = DecodeGcDone(reply);
  if (!totals.ok()) return PeerStatus(totals.status().code(), totals.status().message());
  return totals;
}

}  // namespace chunkferry::engine
