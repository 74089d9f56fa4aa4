// A store on another node, reached through its store daemon (`chunkferry serve`) with the wire
// protocol of docs/PROTOCOL.md. It implements the Store interface, so the copier pushes to it and
// pulls from it as it copies between local stores.
//
// Connections. Connect() opens `connections` TCP connections and authenticates each one
// (ClientHandshake over a WireConn); all must reach the same store. After the handshake the
// WireConns only keep their sockets alive: every later frame goes through one io::Queue owned by
// the RemoteStore, which drives all sockets from the thread calling the Store methods. Per
// connection it keeps at most one send and one receive in flight (io/queue.h), a short FIFO of
// frames waiting to be sent, and the FIFO of requests whose replies have not arrived yet (the
// daemon answers in order). Connection 0 carries the control requests (HAVE, FLUSH, manifests,
// groups); APPEND and READ frames spread over all connections.
//
// Push: AppendRecords() copies the records once into an APPEND frame (up to
// RemoteOptions::append_frame_bytes), sends full frames to the connection with the least
// unacknowledged payload, and returns while they travel; APPEND_ACKs add into the AppendStats of
// their batch as they come back; to a daemon that takes PREFIX_CHECKSUM, a frame's checksum
// covers its prefix only. HAVE questions can be asked ahead (AskHave) and answered while records
// travel. The unacknowledged APPEND payload per connection stays at or below WELCOME's
// max_inflight, and frame buffers come from a bounded pool, so memory stays bounded however much
// is pushed. An ERROR reply is remembered and returned by the next
// AppendRecords() or Flush(). Flush() waits for every APPEND_ACK, then FLUSH → FLUSH_ACK.
//
// Pull: ReadRecordsFor() splits the ids over the connections, pipelines READs on each, and hands
// each RECORDS frame to the sink as it arrives, whichever connection it came on.
//
// Not thread-safe (Store): one thread drives a RemoteStore at a time. Every error names the
// daemon ("store daemon 10.0.0.2:7170: …").
#ifndef CHUNKFERRY_ENGINE_WIRE_REMOTE_STORE_H_
#define CHUNKFERRY_ENGINE_WIRE_REMOTE_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/record.h"
#include "engine/store/store.h"
#include "engine/wire/auth.h"
#include "engine/wire/wire_conn.h"
#include "io/net.h"
#include "io/queue.h"

namespace chunkferry::engine {

struct RemoteOptions {
  io::Endpoint endpoint;
  AuthKey key;
  size_t connections = 2;  // 1..64
  io::Backend backend = io::Backend::kAuto;
  // When not empty, the daemon must serve the store with this uuid (checked in the handshake).
  std::string expect_uuid;
  // Caps the bytes sent and the bytes received (each, separately) per second; 0: no limit.
  uint64_t rate_limit_bytes_per_s = 0;
  // Payload an APPEND frame is filled to before it is sent (capped at the daemon's max_frame; a
  // record larger than this travels alone in a frame of its own size).
  size_t append_frame_bytes = 8u << 20;
  // Bounds the whole of Connect(): every TCP connect and every handshake, so that a daemon that
  // accepts connections and never answers fails within this time (DeadlineExceeded). Negative:
  // the kernel's connect limit and the handshake's own (kHandshakeTimeoutMs per step).
  int64_t connect_timeout_ms = 10'000;
  // How long Connect() keeps retrying, with exponential backoff, a daemon that answers "too many
  // connections" (it serves its limit, or is flooded with handshakes); 0: fail at once.
  int64_t busy_wait_ms = 30'000;
  // Longest wait without progress on any connection (no byte sent or received) before the store
  // fails with DeadlineExceeded: a stalled daemon or network. FLUSH and GC wait at least their
  // own, longer, limits, since the daemon is silent while it fsyncs or collects. Must be > 0.
  int64_t io_timeout_ms = kWireIoTimeoutMs;
  // Largest frame the client accepts (and so allocates for, per connection): a daemon announcing
  // more in WELCOME is refused. At least kMinMaxFrame. Unacknowledged APPEND payload is kept
  // under twice this, whatever the daemon announces.
  uint32_t max_frame = kDefaultMaxFrame;
  // When set (a client context): every connection speaks TLS 1.3, the daemon's certificate
  // checked by the context's CA or pinned fingerprint, before the key handshake.
  std::shared_ptr<TlsContext> tls;
  // Largest manifest the client takes from the daemon (OPEN_MANIFEST streams it to a scratch
  // file): a daemon streaming more is refused and the store fails, so that it cannot fill the
  // client's disk. 64 GiB holds the manifest of a volume of about 12 TiB in 4 KiB chunks.
  uint64_t max_manifest_bytes = kMaxManifestLength;
};

class RemoteStore final : public Store {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RemoteStore>> Connect(
      const RemoteOptions& options);
  // Sends BYE on every connection (best effort) and closes them. Records appended without a
  // Flush() may or may not have been kept by the daemon (never durable, never in a manifest).
  ~RemoteStore() override;

  RemoteStore(const RemoteStore&) = delete;
  RemoteStore& operator=(const RemoteStore&) = delete;

  // Store interface.
  const StoreInfo& info() const override { return info_; }
  const std::string& location() const override { return location_; }  // "host:port"
  absl::Status HaveChunks(absl::Span<const codec::ChunkId> ids, std::vector<bool>* have) override;
  // The HAVE frames go now, on connection 0 behind what it has queued; Wait() runs the I/O loop
  // until their replies are in.
  absl::StatusOr<std::unique_ptr<HaveQuery>> AskHave(absl::Span<const codec::ChunkId> ids) override;
  absl::Status ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                              const RecordSink& sink) override;
  absl::Status AppendRecords(absl::Span<const absl::Span<const uint8_t>> records, VerifyMode mode,
                             AppendStats* stats) override;
  absl::Status Flush() override;
  absl::Status PutManifest(const VolumeBackupMeta& meta, ManifestSource& entries) override;
  // Sends PUT_MANIFEST_DELTA (the entries as a delta against `base`) when the daemon announced
  // it takes them; falls back to PUT_MANIFEST when it did not, or answers NotFound (it lacks the
  // base) or FailedPrecondition.
  absl::Status PutManifestWithBase(const VolumeBackupMeta& meta, ManifestSource& entries,
                                   ManifestSource* base, const std::string& base_uuid) override;
  bool ManifestsAreLocal() const override { return false; }
  absl::StatusOr<std::unique_ptr<ManifestSource>> OpenManifest(
      const std::string& backup_uuid) override;
  absl::Status PutGroup(const GroupRecord& group) override;
  absl::StatusOr<GroupRecord> GetGroup(const std::string& group_uuid) override;
  absl::StatusOr<std::vector<std::string>> ListGroups() override;
  // LIST_BACKUPS; Unimplemented when the daemon's WELCOME does not announce it.
  absl::StatusOr<std::vector<std::string>> ListBackups() override;
  absl::StatusOr<DeleteResult> DeleteGroup(const std::string& group_uuid) override;
  absl::StatusOr<DeleteResult> DeleteBackup(const std::string& backup_uuid) override;

  // Has the daemon collect its store's garbage (GC) and waits for the totals. The daemon runs it
  // in steps between which it serves other connections.
  [[nodiscard]] absl::StatusOr<GcStats> CollectGarbage(const GcRequest& request);

  // Bytes that crossed the wire on all connections (frames, handshake included).
  uint64_t wire_bytes_sent() const;
  uint64_t wire_bytes_received() const;
  size_t connections() const { return conns_.size(); }
  // The daemon's limits from WELCOME.
  uint32_t max_frame() const { return max_frame_; }
  uint64_t max_inflight() const { return max_inflight_; }
  io::Backend backend() const { return queue_->backend(); }
  // Whether the daemon takes PUT_MANIFEST_DELTA (from WELCOME), and how many manifests went as
  // deltas or fell back to a whole manifest after a delta was refused.
  bool daemon_takes_manifest_delta() const { return manifest_delta_; }
  uint64_t manifest_deltas_sent() const { return deltas_sent_; }
  uint64_t manifest_delta_fallbacks() const { return delta_fallbacks_; }
  // Tests: pretend the daemon did (not) announce manifest_delta.
  void set_daemon_takes_manifest_delta(bool takes) { manifest_delta_ = takes; }

 private:
  using Clock = std::chrono::steady_clock;
  class PendingHave;

  // Called with each frame that answers a request (an ERROR included); returns true when the
  // reply is complete. An error return is a protocol error: the connection is given up.
  using ReplyHandler =
      std::function<absl::StatusOr<bool>(uint16_t type, absl::Span<const uint8_t> payload)>;
  struct OutFrame {
    std::vector<uint8_t> bytes;  // header and payload
    size_t sent = 0;
  };
  struct Pending {
    ReplyHandler on_frame;
    uint64_t append_payload = 0;  // APPEND payload bytes this request holds unacknowledged
  };
  struct Conn {
    std::unique_ptr<WireConn> wire;  // owns the socket
    int fd = -1;
    // TLS, when on: frames are encrypted into the channel's output ring and sent from there;
    // the socket receives into its input ring, decrypted into the header or payload being
    // received. No other copy of the ciphertext.
    std::unique_ptr<TlsChannel> tls;
    std::deque<OutFrame> out;  // front: being sent
    bool send_in_flight = false;
    size_t send_len = 0;
    std::deque<Pending> pending;  // requests sent or queued, oldest first
    bool recv_in_flight = false;
    size_t recv_len = 0;
    bool in_payload = false;  // receiving the payload of `header`
    uint8_t header_bytes[kFrameHeaderSize] = {};
    size_t got = 0;  // bytes of the header or payload received so far
    FrameHeader header;
    std::vector<uint8_t> payload;
    uint64_t unacked = 0;  // APPEND payload bytes sent or queued without their APPEND_ACK
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
  };
  // Paces transfers to a byte rate.
  class TokenBucket {
   public:
    explicit TokenBucket(uint64_t rate);
    bool limited() const { return rate_ > 0; }
    // Takes `n` tokens when they are there; else returns false and sets *wait_ms.
    bool Take(size_t n, int64_t* wait_ms);

   private:
    double rate_;
    double capacity_;
    double tokens_;
    Clock::time_point last_;
  };
  // The open APPEND frame being filled by AppendRecords.
  struct OpenAppend {
    OutFrame frame;
    bool open = false;
    VerifyMode mode = VerifyMode::kFull;
    AppendStats* stats = nullptr;
    uint32_t records = 0;
    std::vector<codec::ChunkId> ids;
  };

  RemoteStore(const RemoteOptions& options, std::string location);

  absl::Status PeerStatus(absl::StatusCode code, absl::string_view message) const;
  absl::Status PeerError(absl::Span<const uint8_t> error_payload) const;
  absl::Status Unexpected(uint16_t type, absl::string_view waiting_for) const;
  // Fails the store: every later operation returns `status`. Shuts the sockets down.
  absl::Status Break(absl::Status status);
  absl::Status CheckUsable() const;

  std::vector<uint8_t> TakeBuffer();
  void ReturnBuffer(std::vector<uint8_t> buffer);
  // Builds a whole frame in a pooled buffer.
  OutFrame MakeFrame(MsgType type, absl::Span<const uint8_t> payload);
  // Queues a frame on connection `c`; with a handler, the frame is a request whose reply it
  // receives.
  void Enqueue(size_t c, OutFrame frame, ReplyHandler on_reply, uint64_t append_payload = 0);

  // Posts the sends and receives that can go now.
  absl::Status Post(int64_t* wait_ms);
  absl::Status HandleCompletion(const io::Completion& completion);
  // `n` more bytes of the header or payload being received have landed: moves the frame on,
  // and hands it to OnFrame once whole.
  absl::Status Advance(Conn& conn, size_t n);
  // TLS: decrypts what the connection has received into the frames its requests wait for.
  absl::Status Decrypt(Conn& conn);
  // TLS: encrypts the frames to send into the channel's output ring, as far as it has room.
  absl::Status Encrypt(Conn& conn);
  absl::Status OnFrame(Conn& conn);
  // Runs the I/O loop until `done` returns true (checked between completions) or the store
  // fails. `timeout_ms` bounds the time without any progress (0: options_.io_timeout_ms).
  absl::Status RunUntil(const std::function<bool()>& done, int64_t timeout_ms = 0);
  // Posts what can go, collects the completions that are in, without waiting.
  absl::Status Poll();
  // DELETE of a group or a volume backup.
  absl::StatusOr<DeleteResult> Delete(DeleteKind kind, const std::string& uuid);
  // A request on connection 0 answered by one frame of type `reply`; returns its payload.
  absl::StatusOr<std::vector<uint8_t>> Call(MsgType type, absl::Span<const uint8_t> payload,
                                            MsgType reply, int64_t timeout_ms = 0);

  // Streams the file at `path` (`size` bytes) as MANIFEST_DATA frames after a request frame
  // (`type`, `header`), then MANIFEST_END; returns the reply (OK, or the ERROR's status).
  absl::Status SendManifestStream(MsgType type, const std::string& header, const std::string& path);

  // Sends the open APPEND frame to the least loaded connection that has room.
  absl::Status SealAppend();
  void ForgetIds(absl::Span<const codec::ChunkId> ids);

  RemoteOptions options_;
  std::string location_;
  std::string peer_;  // "store daemon host:port"
  StoreInfo info_;
  uint32_t max_frame_ = kDefaultMaxFrame;
  uint64_t max_inflight_ = kDefaultMaxInflight;
  size_t frame_target_ = 8u << 20;
  size_t piece_ = 1u << 20;  // most bytes per send or receive request
  std::unique_ptr<io::Queue> queue_;
  std::vector<Conn> conns_;
  std::vector<std::vector<uint8_t>> free_buffers_;
  OpenAppend open_;
  // Chunk ids of records appended but not acknowledged yet: HaveChunks counts them as held.
  absl::flat_hash_map<codec::ChunkId, uint32_t> unacked_ids_;
  absl::Status append_error_;  // first ERROR answering an APPEND
  absl::Status broken_;        // the connections are unusable
  TokenBucket send_bucket_;
  TokenBucket recv_bucket_;
  Clock::time_point last_progress_;
  bool in_sink_ = false;
  bool manifest_delta_ = false;
  bool takes_delete_ = false;        // WELCOME's delete=1
  bool takes_gc_ = false;            // WELCOME's gc=1
  bool takes_list_backups_ = false;  // WELCOME's list_backups=1
  bool prefix_checksum_ = false;     // every connection's WELCOME said prefix_checksum=1
  uint64_t deltas_sent_ = 0;
  uint64_t delta_fallbacks_ = 0;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_REMOTE_STORE_H_
