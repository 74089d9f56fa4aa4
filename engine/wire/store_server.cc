#include "engine/wire/store_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "engine/format/manifest_delta.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// How often the accept thread looks whether Stop() was called.
constexpr int64_t kAcceptPollMs = 100;
// How long a refused connection is given to read its ERROR before the socket is closed.
constexpr int kRefuseLingerMs = 200;

// Why a handshake failed, in the words of the log.
std::string RefusalReason(const absl::Status& status) {
  if (absl::IsUnauthenticated(status)) return "wrong key";
  if (absl::IsDeadlineExceeded(status)) return "handshake timeout";
  if (absl::StrContains(status.message(), "version mismatch")) return "protocol version mismatch";
  if (absl::IsUnavailable(status)) return "closed during the handshake";
  if (absl::IsInvalidArgument(status) || absl::IsResourceExhausted(status) ||
      absl::IsDataLoss(status)) {
    return "protocol error";
  }
  return "handshake failed";
}

// The bytes of an encoded message, as a frame payload.
absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Removes a temporary file when it goes out of scope.
class TmpFileGuard {
 public:
  explicit TmpFileGuard(std::string path) : path_(std::move(path)) {}
  ~TmpFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TmpFileGuard(const TmpFileGuard&) = delete;
  TmpFileGuard& operator=(const TmpFileGuard&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One authenticated connection's request loop. Lives on the connection's thread.
class Session {
 public:
  Session(WireConn& conn, LocalStore& store, std::mutex& store_mu, std::atomic<bool>& gc_running,
          const ServerOptions& options, std::function<void(const std::string&)> log)
      : conn_(conn),
        store_(store),
        store_mu_(store_mu),
        gc_running_(gc_running),
        options_(options),
        log_(std::move(log)) {}
  // Releases the session's hold on the records it landed (see HandleAppend).
  ~Session() {
    if (hold_ != 0) {
      std::lock_guard<std::mutex> lock(store_mu_);
      store_.ReleaseHold(hold_);
    }
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves requests until the connection ends; returns why it ended, for the log.
  std::string Run();

  uint64_t records_appended() const { return records_appended_; }

 private:
  // A request's outcome: OK to go on (the reply, or an ERROR in its place, was sent); otherwise
  // the connection ends, after one ERROR when `protocol_error_` says the peer broke the protocol.
  absl::Status Handle(const WireFrame& frame);
  absl::Status HandleHave(absl::Span<const uint8_t> payload);
  absl::Status HandleAppend(absl::Span<const uint8_t> payload);
  absl::Status HandleFlush(absl::Span<const uint8_t> payload);
  absl::Status HandleRead(absl::Span<const uint8_t> payload);
  absl::Status HandlePutManifest(absl::Span<const uint8_t> payload);
  absl::Status HandlePutManifestDelta(absl::Span<const uint8_t> payload);
  // Receives the MANIFEST_DATA frames (exactly `length` bytes) and MANIFEST_END that follow a
  // PUT_MANIFEST or PUT_MANIFEST_DELTA into a new file at `path`. A failure to store them is
  // put in *stored (answered by the caller); the return value is the connection's fate.
  absl::Status ReceiveManifestBytes(MsgType request, const std::string& what, uint64_t length,
                                    const std::string& path, absl::Status* stored);
  absl::Status HandleOpenManifest(absl::Span<const uint8_t> payload);
  absl::Status HandlePutGroup(absl::Span<const uint8_t> payload);
  absl::Status HandleGetGroup(absl::Span<const uint8_t> payload);
  absl::Status HandleListGroups(absl::Span<const uint8_t> payload);
  absl::Status HandleDelete(absl::Span<const uint8_t> payload);
  absl::Status HandleGc(absl::Span<const uint8_t> payload);

  // Marks `status` as the peer's protocol error (the loop answers it with ERROR and closes).
  absl::Status ProtocolError(absl::Status status) {
    protocol_error_ = true;
    return status;
  }
  // A receive in the middle of a request failed: a malformed frame is a protocol error (the
  // connection is already shut down, so it cannot be answered); anything else lost the peer.
  absl::Status RecvFailed(absl::Status status) {
    if (!absl::IsUnavailable(status) && !absl::IsDeadlineExceeded(status)) {
      protocol_error_ = true;
    }
    return status;
  }
  // Answers the current request with ERROR `status` (a request error: the connection goes on).
  absl::Status RequestError(absl::string_view request, const absl::Status& status) {
    log_(absl::StrCat(request, " refused: ", absl::StatusCodeToString(status.code()), ": ",
                      status.message()));
    return conn_.Send(MsgType::kError, EncodeError(status));
  }

  WireConn& conn_;
  LocalStore& store_;
  std::mutex& store_mu_;
  std::atomic<bool>& gc_running_;
  const ServerOptions& options_;
  std::function<void(const std::string&)> log_;
  bool protocol_error_ = false;
  bool bye_ = false;
  uint64_t records_appended_ = 0;
  uint64_t hold_ = 0;  // LocalStore::HoldNewRecords, from the first APPEND to the end
  codec::Decompressor decompressor_;
  std::vector<uint8_t> scratch_;
  std::vector<codec::RecordView> views_;
  FrameBuffer frame_;
};

std::string Session::Run() {
  for (;;) {
    absl::StatusOr<WireFrame> frame = conn_.Recv(options_.idle_timeout_ms);
    if (!frame.ok()) {
      const absl::Status& st = frame.status();
      if (absl::IsUnavailable(st)) return std::string(st.message());
      if (absl::IsDeadlineExceeded(st)) {
        return absl::StrCat("idle for ", options_.idle_timeout_ms / 1000.0, " s");
      }
      // A malformed frame: WireConn has shut the connection down already.
      log_(absl::StrCat("protocol error: ", st.message()));
      return "protocol error";
    }
    protocol_error_ = false;
    const absl::Status st = Handle(*frame);
    if (bye_) return "client said BYE";
    if (st.ok()) continue;
    if (protocol_error_) {
      log_(absl::StrCat("protocol error: ", st.message()));
      conn_.SendError(st);
      conn_.Shutdown();
      return "protocol error";
    }
    return absl::StrCat("connection lost: ", st.message());
  }
}

absl::Status Session::Handle(const WireFrame& frame) {
  switch (static_cast<MsgType>(frame.type)) {
    case MsgType::kHave:
      return HandleHave(frame.payload);
    case MsgType::kAppend:
      return HandleAppend(frame.payload);
    case MsgType::kFlush:
      return HandleFlush(frame.payload);
    case MsgType::kRead:
      return HandleRead(frame.payload);
    case MsgType::kPutManifest:
      return HandlePutManifest(frame.payload);
    case MsgType::kPutManifestDelta:
      return HandlePutManifestDelta(frame.payload);
    case MsgType::kOpenManifest:
      return HandleOpenManifest(frame.payload);
    case MsgType::kPutGroup:
      return HandlePutGroup(frame.payload);
    case MsgType::kGetGroup:
      return HandleGetGroup(frame.payload);
    case MsgType::kListGroups:
      return HandleListGroups(frame.payload);
    case MsgType::kDelete:
      return HandleDelete(frame.payload);
    case MsgType::kGc:
      return HandleGc(frame.payload);
    case MsgType::kBye:
      if (absl::Status st = CheckEmptyPayload(MsgType::kBye, frame.payload); !st.ok()) {
        return ProtocolError(st);
      }
      bye_ = true;
      return absl::OkStatus();
    case MsgType::kError: {
      // The peer gives up on the connection (it closes after an ERROR).
      const absl::Status carried = conn_.PeerError(frame.payload);
      return absl::Status(carried.code(), absl::StrCat("it sent ERROR: ", carried.message()));
    }
    default:
      break;
  }
  if (!IsKnownMsgType(frame.type)) {
    return ProtocolError(
        absl::InvalidArgumentError(absl::StrCat("unknown frame type ", frame.type)));
  }
  return ProtocolError(absl::InvalidArgumentError(absl::StrCat(
      "unexpected frame ", std::string(MsgTypeName(frame.type)), " while waiting for a request")));
}

absl::Status Session::HandleHave(absl::Span<const uint8_t> payload) {
  absl::StatusOr<std::vector<codec::ChunkId>> ids = DecodeHave(payload);
  if (!ids.ok()) return ProtocolError(ids.status());
  std::vector<bool> have;
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    st = store_.HaveChunks(*ids, &have);
  }
  if (!st.ok()) return RequestError("HAVE", st);
  return conn_.Send(MsgType::kHaveReply, EncodeHaveReply(have));
}

absl::Status Session::HandleAppend(absl::Span<const uint8_t> payload) {
  absl::StatusOr<AppendView> append = DecodeAppend(payload);
  if (!append.ok()) return ProtocolError(append.status());
  const size_t n = append->records.size();
  const bool full = append->mode == VerifyMode::kFull;
  // Every record is checked here, on this connection's thread and without the store lock, so
  // that connections verify in parallel; nothing of the frame is appended unless all pass.
  views_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<codec::RecordView> view = codec::CheckReceivedRecord(
        append->records[i], full, decompressor_, &store_.hasher(), &scratch_);
    if (!view.ok()) {
      std::string chunk;
      if (auto parsed = codec::ParseRecord(append->records[i]); parsed.ok()) {
        chunk = absl::StrCat(" (first chunk ", parsed->chunk(0).id.ToHex(), ")");
      }
      return RequestError(
          "APPEND", absl::Status(view.status().code(),
                                 absl::StrCat("APPEND record ", i + 1, " of ", n, chunk, " failed ",
                                              full ? "full" : "checksum",
                                              " verification: ", view.status().message())));
    }
    views_[i] = *view;
  }
  AppendStats stats;
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    // What this session lands stays out of a collection's reach until the session ends: its
    // manifests, which name it, come later.
    if (hold_ == 0) hold_ = store_.HoldNewRecords();
    st = store_.AppendCheckedRecords(append->records, views_, &stats);
  }
  records_appended_ += stats.records_appended;
  if (!st.ok()) return RequestError("APPEND", st);
  return conn_.Send(MsgType::kAppendAck, EncodeAppendAck(stats));
}

absl::Status Session::HandleFlush(absl::Span<const uint8_t> payload) {
  if (absl::Status st = CheckEmptyPayload(MsgType::kFlush, payload); !st.ok()) {
    return ProtocolError(st);
  }
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    st = store_.Flush();
  }
  if (!st.ok()) return RequestError("FLUSH", st);
  return conn_.Send(MsgType::kFlushAck, absl::Span<const uint8_t>());
}

absl::Status Session::HandleRead(absl::Span<const uint8_t> payload) {
  absl::StatusOr<std::vector<codec::ChunkId>> ids = DecodeRead(payload);
  if (!ids.ok()) return ProtocolError(ids.status());
  const size_t max = conn_.max_send_frame();
  absl::Status send_failed;
  // Packs each batch the store hands out into as few RECORDS frames as fit the frame limit.
  auto sink = [&](absl::Span<const absl::Span<const uint8_t>> records) -> absl::Status {
    for (size_t i = 0; i < records.size();) {
      size_t bytes = kRecordsPrefixSize, j = i;
      while (j < records.size() && bytes + records[j].size() <= max) bytes += records[j++].size();
      if (j == i) {
        return absl::InternalError(absl::StrCat("a record of ", records[i].size(),
                                                " bytes does not fit a frame of ", max, " bytes"));
      }
      frame_.Clear();
      StoreU32(frame_.Extend(kRecordsPrefixSize), static_cast<uint32_t>(j - i));
      for (size_t k = i; k < j; ++k) frame_.Append(records[k]);
      send_failed = conn_.Send(MsgType::kRecords, frame_);
      if (!send_failed.ok()) return send_failed;
      i = j;
    }
    return absl::OkStatus();
  };
  absl::Status st;
  {
    // v1: the frames go out with the store lock held (see store_server.h).
    std::lock_guard<std::mutex> lock(store_mu_);
    st = store_.ReadRecordsFor(*ids, sink);
  }
  if (!send_failed.ok()) return send_failed;
  if (!st.ok()) return RequestError("READ", st);
  return conn_.Send(MsgType::kReadEnd, absl::Span<const uint8_t>());
}

absl::Status Session::ReceiveManifestBytes(MsgType request, const std::string& what,
                                           uint64_t length, const std::string& path,
                                           absl::Status* stored) {
  absl::StatusOr<io::Fd> fd = io::OpenFile(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  // A failure to store the bytes is answered once they have all arrived, so that the stream
  // stays in step with the requests.
  *stored = fd.status();
  uint64_t received = 0;
  for (;;) {
    absl::StatusOr<WireFrame> frame = conn_.Recv();
    if (!frame.ok()) return RecvFailed(frame.status());
    if (frame->type == static_cast<uint16_t>(MsgType::kManifestData)) {
      absl::StatusOr<absl::Span<const uint8_t>> data = DecodeManifestData(frame->payload);
      if (!data.ok()) return ProtocolError(data.status());
      if (data->size() > length - received) {
        return ProtocolError(absl::InvalidArgumentError(
            absl::StrCat("MANIFEST_DATA carries more than the ", length, " bytes ",
                         std::string(MsgTypeName(request)), " announced for ", what)));
      }
      if (stored->ok()) *stored = io::PwriteFull(fd->get(), *data, received);
      received += data->size();
    } else if (frame->type == static_cast<uint16_t>(MsgType::kManifestEnd)) {
      if (absl::Status st = CheckEmptyPayload(MsgType::kManifestEnd, frame->payload); !st.ok()) {
        return ProtocolError(st);
      }
      if (received != length) {
        return ProtocolError(absl::InvalidArgumentError(
            absl::StrCat("MANIFEST_END after ", received, " of the ", length, " bytes ",
                         std::string(MsgTypeName(request)), " announced for ", what)));
      }
      return absl::OkStatus();
    } else if (frame->type == static_cast<uint16_t>(MsgType::kError)) {
      const absl::Status carried = conn_.PeerError(frame->payload);
      return absl::Status(carried.code(), absl::StrCat("it sent ERROR: ", carried.message()));
    } else {
      return ProtocolError(UnexpectedFrameError(frame->type, MsgType::kManifestData));
    }
  }
}

absl::Status Session::HandlePutManifest(absl::Span<const uint8_t> payload) {
  absl::StatusOr<PutManifest> put = DecodePutManifest(payload);
  if (!put.ok()) return ProtocolError(put.status());
  std::string tmp_path;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    tmp_path = store_.NewTmpPath("received-manifest");
  }
  TmpFileGuard tmp(tmp_path);
  absl::Status stored;
  CF_RETURN_IF_ERROR(ReceiveManifestBytes(MsgType::kPutManifest, put->backup_uuid, put->file_length,
                                          tmp.path(), &stored));
  if (!stored.ok()) return RequestError("PUT_MANIFEST", stored);
  absl::StatusOr<std::unique_ptr<ManifestReader>> reader = ManifestReader::Open(tmp.path());
  if (!reader.ok()) {
    return RequestError("PUT_MANIFEST",
                        absl::Status(reader.status().code(),
                                     absl::StrCat("manifest ", put->backup_uuid,
                                                  " as received: ", reader.status().message())));
  }
  if ((*reader)->meta().uuid != put->backup_uuid) {
    return RequestError("PUT_MANIFEST", absl::InvalidArgumentError(absl::StrCat(
                                            "the manifest sent as ", put->backup_uuid,
                                            " is the manifest of ", (*reader)->meta().uuid)));
  }
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    st = store_.PutManifest((*reader)->meta(), **reader);
  }
  if (!st.ok()) return RequestError("PUT_MANIFEST", st);
  return conn_.Send(MsgType::kOk, absl::Span<const uint8_t>());
}

absl::Status Session::HandlePutManifestDelta(absl::Span<const uint8_t> payload) {
  absl::StatusOr<PutManifestDelta> put = DecodePutManifestDelta(payload);
  if (!put.ok()) return ProtocolError(put.status());
  std::string tmp_path;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    tmp_path = store_.NewTmpPath("received-manifest-delta");
  }
  constexpr absl::string_view kReq = "PUT_MANIFEST_DELTA";
  absl::Status st;
  {
    // The received delta is removed before the reply goes out.
    TmpFileGuard tmp(tmp_path);
    absl::Status stored;
    CF_RETURN_IF_ERROR(ReceiveManifestBytes(MsgType::kPutManifestDelta, put->backup_uuid,
                                            put->delta_length, tmp.path(), &stored));
    // The base is read and the manifest rebuilt and published under the store lock, so that the
    // base cannot change meanwhile.
    std::lock_guard<std::mutex> lock(store_mu_);
    st = [&]() -> absl::Status {
      if (!stored.ok()) return stored;
      absl::StatusOr<std::unique_ptr<ManifestReader>> base =
          store_.OpenManifestReader(put->base_uuid);
      if (absl::IsNotFound(base.status())) {
        return absl::NotFoundError(
            absl::StrCat("the store has no volume backup ", put->base_uuid, " (the delta's base)"));
      }
      if (!base.ok()) return base.status();
      CF_ASSIGN_OR_RETURN(auto delta,
                          ManifestDeltaSource::Open(tmp.path(), base->get(),
                                                    absl::StrCat("for ", put->backup_uuid)));
      if (delta->meta().uuid != put->backup_uuid) {
        return absl::InvalidArgumentError(absl::StrCat("the manifest delta sent as ",
                                                       put->backup_uuid, " is the delta of ",
                                                       delta->meta().uuid));
      }
      return store_.PutManifest(delta->meta(), *delta);
    }();
  }
  if (!st.ok()) return RequestError(kReq, st);
  return conn_.Send(MsgType::kOk, absl::Span<const uint8_t>());
}

absl::Status Session::HandleOpenManifest(absl::Span<const uint8_t> payload) {
  absl::StatusOr<std::string> uuid = DecodeOpenManifest(payload);
  if (!uuid.ok()) return ProtocolError(uuid.status());
  // Published manifests are replaced only by rename, so the file opened here stays whole while
  // it is streamed, without the store lock.
  std::string path;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    path = store_.ManifestPath(*uuid);
  }
  absl::StatusOr<io::Fd> fd = io::OpenFile(path, O_RDONLY | O_CLOEXEC);
  if (absl::IsNotFound(fd.status())) {
    return RequestError("OPEN_MANIFEST", absl::NotFoundError(absl::StrCat(
                                             "the store has no volume backup ", *uuid)));
  }
  if (!fd.ok()) return RequestError("OPEN_MANIFEST", fd.status());
  frame_.Clear();
  uint8_t* buf = frame_.Extend(kMaxManifestData);
  for (;;) {
    const ssize_t n = ::read(fd->get(), buf, kMaxManifestData);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return RequestError("OPEN_MANIFEST",
                          io::ErrnoStatus(errno, "read", absl::StrCat("manifest of ", *uuid)));
    }
    if (n == 0) break;
    CF_RETURN_IF_ERROR(
        conn_.Send(MsgType::kManifestData, absl::MakeConstSpan(buf, static_cast<size_t>(n))));
  }
  return conn_.Send(MsgType::kManifestEnd, absl::Span<const uint8_t>());
}

absl::Status Session::HandlePutGroup(absl::Span<const uint8_t> payload) {
  absl::StatusOr<GroupRecord> group = DecodePutGroup(payload);
  if (!group.ok()) return ProtocolError(group.status());
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    st = store_.PutGroup(*group);
  }
  if (!st.ok()) return RequestError("PUT_GROUP", st);
  return conn_.Send(MsgType::kOk, absl::Span<const uint8_t>());
}

absl::Status Session::HandleGetGroup(absl::Span<const uint8_t> payload) {
  absl::StatusOr<std::string> uuid = DecodeGetGroup(payload);
  if (!uuid.ok()) return ProtocolError(uuid.status());
  absl::StatusOr<GroupRecord> group;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    group = store_.GetGroup(*uuid);
  }
  if (!group.ok()) return RequestError("GET_GROUP", group.status());
  return conn_.Send(MsgType::kGroup, EncodeGroupReply(*group));
}

absl::Status Session::HandleListGroups(absl::Span<const uint8_t> payload) {
  if (absl::Status st = CheckEmptyPayload(MsgType::kListGroups, payload); !st.ok()) {
    return ProtocolError(st);
  }
  absl::StatusOr<std::vector<std::string>> groups;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    groups = store_.ListGroups();
  }
  if (!groups.ok()) return RequestError("LIST_GROUPS", groups.status());
  const std::string reply = EncodeGroupList(*groups);
  if (absl::Status st = CheckFrameSize(reply.size(), conn_.max_send_frame()); !st.ok()) {
    return RequestError("LIST_GROUPS", st);
  }
  return conn_.Send(MsgType::kGroupList, Bytes(reply));
}

absl::Status Session::HandleDelete(absl::Span<const uint8_t> payload) {
  absl::StatusOr<DeleteRequest> request = DecodeDelete(payload);
  if (!request.ok()) return ProtocolError(request.status());
  absl::StatusOr<DeleteResult> result;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    result = request->kind == DeleteKind::kGroup ? store_.DeleteGroup(request->uuid)
                                                 : store_.DeleteBackup(request->uuid);
  }
  if (!result.ok()) return RequestError("DELETE", result.status());
  return conn_.Send(MsgType::kDeleted, Bytes(EncodeDeleted(*result)));
}

absl::Status Session::HandleGc(absl::Span<const uint8_t> payload) {
  absl::StatusOr<GcRequest> request = DecodeGc(payload);
  if (!request.ok()) return ProtocolError(request.status());
  if (gc_running_.exchange(true)) {
    return RequestError("GC", absl::FailedPreconditionError(
                                  "a garbage collection of this store is already running"));
  }
  GcOptions o;
  o.dry_run = request->dry_run;
  o.repack_below = request->repack_below_ppm / 1e6;
  absl::Status st;
  GcStats stats;
  auto gc = std::make_unique<GarbageCollector>(store_, o);
  // One step at a time under the store mutex: the other connections go on in between.
  for (;;) {
    if (options_.gc_between_steps) options_.gc_between_steps(gc->phase());
    std::lock_guard<std::mutex> lock(store_mu_);
    absl::StatusOr<bool> more = gc->Step();
    if (!more.ok()) st = more.status();
    if (!more.ok() || !*more) {
      stats = gc->stats();
      // The collector's destructor stops the pinning inside the store: under the mutex too.
      gc.reset();
      break;
    }
  }
  gc_running_ = false;
  if (!st.ok()) return RequestError("GC", st);
  log_(absl::StrCat("gc: ", stats.bytes_reclaimed, " bytes reclaimed, ", stats.packs_removed,
                    " packs removed, ", stats.packs_rewritten, " rewritten"));
  GcTotals t;
  t.manifests = stats.manifests;
  t.chunks_referenced = stats.chunks_referenced;
  t.records = stats.records_total;
  t.records_live = stats.records_live;
  t.packs_before = stats.packs_before;
  t.bytes_before = stats.bytes_before;
  t.packs_removed = stats.packs_removed;
  t.packs_rewritten = stats.packs_rewritten;
  t.packs_kept_in_use = stats.packs_kept_late_pin;
  t.records_copied = stats.records_copied;
  t.bytes_copied = stats.bytes_copied;
  t.bytes_reclaimed = stats.bytes_reclaimed;
  t.milliseconds = static_cast<uint64_t>(stats.seconds * 1000);
  return conn_.Send(MsgType::kGcDone, Bytes(EncodeGcDone(t)));
}

}  // namespace

StoreServer::StoreServer(LocalStore* store, ServerOptions options)
    : store_(store), options_(std::move(options)) {
  if (store_ != nullptr) welcome_.info = store_->info();
  welcome_.manifest_delta = true;
  welcome_.takes_delete = true;
  welcome_.takes_gc = true;
  welcome_.max_frame = options_.max_frame;
  welcome_.max_inflight = options_.max_inflight;
}

StoreServer::~StoreServer() { Stop(); }

absl::Status StoreServer::Start() {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (started_) return absl::FailedPreconditionError("the store server was started already");
  if (store_ == nullptr) return absl::InvalidArgumentError("the store server has no store");
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
  std::lock_guard<std::mutex> lock(store_mu_);
  return fn(*store_);
}

size_t StoreServer::active_connections() {
  std::lock_guard<std::mutex> lock(conns_mu_);
  size_t n = 0;
  for (const Conn& c : conns_) n += c.done ? 0 : 1;
  return n;
}

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
    size_t active = 0;
    for (const Conn& c : conns_) active += c.done ? 0 : 1;
    if (active >= options_.max_connections) {
      lock.unlock();
      Log(absl::StrCat("#", id, " ", peer, ": refused: too many connections (", active,
                       " open, at most ", options_.max_connections, ")"));
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

void StoreServer::Refuse(io::Fd socket) {
  std::string frame;
  AppendFrame(static_cast<uint16_t>(MsgType::kError),
              Bytes(EncodeError(absl::ResourceExhaustedError(
                  absl::StrCat("too many connections: the daemon serves at most ",
                               options_.max_connections, " at once; try again later")))),
              &frame);
  // A fresh socket's buffer takes a small frame at once; never block the accept thread on it.
  (void)::send(socket.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(socket.get(), SHUT_WR);
  // Reads what the peer sent (its HELLO) until it closes or a short time is up: closing with
  // unread bytes would reset the connection, and the peer could lose the ERROR.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRefuseLingerMs);
  uint8_t sink[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    pollfd p{socket.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    const ssize_t n = ::recv(socket.get(), sink, sizeof(sink), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
  }
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
    absl::Status hs = ServerHandshake(*wc, options_.key, welcome_);
    if (!hs.ok()) {
      log(absl::StrCat("refused: ", RefusalReason(hs), " (", hs.message(), ")"));
    } else {
      log("authenticated");
      Session session(*wc, *store_, store_mu_, gc_running_, options_, log);
      const std::string why = session.Run();
      log(absl::StrCat("closed (", why, "): ", wc->bytes_received(), " bytes in, ",
                       wc->bytes_sent(), " bytes out, ", session.records_appended(),
                       " records appended"));
    }
  }
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    conn->fd = -1;
  }
  wc.reset();  // closes the socket
  std::lock_guard<std::mutex> lock(conns_mu_);
  conn->done = true;
}

}  // namespace chunkferry::engine
