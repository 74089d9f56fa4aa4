// One authenticated connection of the store daemon: reads requests, serves them from the served
// store (served_store.h: a local store or a pool) under the server's store mutex, answers. Internal
// to engine/wire (StoreServer makes one per connection, on the connection's thread). Its request
// handlers live in two files: store_session.cc (the loop; HAVE, APPEND, FLUSH, READ) and
// store_session_meta.cc (manifests, groups, DELETE, GC).
#ifndef CHUNKFERRY_ENGINE_WIRE_STORE_SESSION_H_
#define CHUNKFERRY_ENGINE_WIRE_STORE_SESSION_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/wire/key_authority.h"
#include "engine/wire/served_store.h"
#include "engine/wire/store_server.h"
#include "engine/wire/wire_conn.h"
#include "engine/wire/wire_frame.h"
#include "engine/wire/wire_messages.h"
#include "io/buffer.h"
#include "io/queue.h"

namespace chunkferry::engine::wire_internal {

// The bytes of an encoded message, as a frame payload.
inline absl::Span<const uint8_t> Bytes(const std::string& s) {
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

// The key a connection authenticated with, and who decides what it may do now.
struct KeyGrant {
  KeyAuthority* authority = nullptr;
  std::string name;
  AuthKey key;  // the secret it proved it holds: a reloaded ring with another one revokes it
};

// One authenticated connection's request loop. Lives on the connection's thread.
class StoreSession {
 public:
  StoreSession(WireConn& conn, ServedStore& served, std::mutex& store_mu,
               std::atomic<bool>& gc_running, const ServerOptions& options, KeyGrant grant,
               std::function<void(const std::string&)> log)
      : conn_(conn),
        served_(served),
        store_(served.store()),
        store_mu_(store_mu),
        gc_running_(gc_running),
        options_(options),
        grant_(std::move(grant)),
        log_(std::move(log)) {}
  // Ends the session's writing span (see BeginWriting).
  ~StoreSession() {
    if (writing_) {
      std::lock_guard<std::mutex> lock(store_mu_);
      served_.EndWrites(span_);
    }
  }
  StoreSession(const StoreSession&) = delete;
  StoreSession& operator=(const StoreSession&) = delete;

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
  // put in *stored (answered by the caller); the return value is the connection's fate. When
  // *stored is an error on entry, the bytes are read and dropped.
  absl::Status ReceiveManifestBytes(MsgType request, const std::string& what, uint64_t length,
                                    const std::string& path, absl::Status* stored);
  // Reads the manifest bytes of a refused PUT_MANIFEST(_DELTA) without storing them, then
  // answers ERROR `why`.
  absl::Status DropManifest(MsgType request, absl::Span<const uint8_t> payload,
                            const absl::Status& why);
  absl::Status HandleOpenManifest(absl::Span<const uint8_t> payload);
  absl::Status HandlePutGroup(absl::Span<const uint8_t> payload);
  absl::Status HandleGetGroup(absl::Span<const uint8_t> payload);
  absl::Status HandleListGroups(absl::Span<const uint8_t> payload);
  absl::Status HandleListBackups(absl::Span<const uint8_t> payload);
  // LIST_GROUPS or LIST_BACKUPS (`request`): the store's uuids of that kind in one reply.
  absl::Status HandleList(MsgType request, absl::Span<const uint8_t> payload);
  absl::Status HandleDelete(absl::Span<const uint8_t> payload);
  absl::Status HandleGc(absl::Span<const uint8_t> payload);

  // Counts bytes this session's key added (its quota), and writes the usage down when `commit`
  // (a commit step made them durable).
  void Charge(uint64_t bytes, bool commit);
  // Size of the published manifest of `backup_uuid` (what a PUT_MANIFEST(_DELTA) added); 0 when
  // it cannot be found.
  uint64_t ManifestBytes(const std::string& backup_uuid);

  // Starts the session's writing span if it has not started yet. Under the store mutex.
  absl::Status BeginWriting() {
    if (writing_) return absl::OkStatus();
    absl::StatusOr<uint64_t> span = served_.BeginWrites();
    if (!span.ok()) return span.status();
    span_ = *span;
    writing_ = true;
    return absl::OkStatus();
  }

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
  ServedStore& served_;
  Store& store_;  // served_.store()
  std::mutex& store_mu_;
  std::atomic<bool>& gc_running_;
  const ServerOptions& options_;
  const KeyGrant grant_;
  std::function<void(const std::string&)> log_;
  bool protocol_error_ = false;
  bool revoked_ = false;  // the connection's key is no longer in force: answered and closed
  bool bye_ = false;
  uint64_t records_appended_ = 0;
  // ServedStore::BeginWrites, from the first request that may change the store to the end.
  bool writing_ = false;
  uint64_t span_ = 0;
  std::unique_ptr<ServedReader> reader_;  // made at the first READ
  codec::Decompressor decompressor_;
  std::vector<uint8_t> scratch_;
  std::vector<codec::RecordView> views_;
  FrameBuffer frame_;
};

}  // namespace chunkferry::engine::wire_internal

#endif  // CHUNKFERRY_ENGINE_WIRE_STORE_SESSION_H_
