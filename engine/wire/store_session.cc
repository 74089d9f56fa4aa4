#include "engine/wire/store_session.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/format/byte_io.h"
#include "io/status_macros.h"

namespace chunkferry::engine::wire_internal {

std::string StoreSession::Run() {
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
    if (revoked_) {
      log_(absl::StrCat("refused: ", st.message()));
      conn_.SendError(st);
      conn_.Shutdown();
      return "its key was revoked";
    }
    if (protocol_error_) {
      log_(absl::StrCat("protocol error: ", st.message()));
      conn_.SendError(st);
      conn_.Shutdown();
      return "protocol error";
    }
    return absl::StrCat("connection lost: ", st.message());
  }
}

void StoreSession::Charge(uint64_t bytes, bool commit) {
  grant_.authority->Charge(grant_.name, bytes);
  if (!commit) return;
  // The bytes are in the store whether or not their count could be written down: log, go on.
  if (absl::Status st = grant_.authority->SaveUsage(); !st.ok()) {
    log_(absl::StrCat("cannot write the key usage file: ", st.message()));
  }
}

absl::Status StoreSession::Handle(const WireFrame& frame) {
  // Every request is checked against the keys in force now, not those of the handshake, so that
  // a reload takes rights away from open connections too.
  if (IsKnownMsgType(frame.type)) {
    const auto type = static_cast<MsgType>(frame.type);
    absl::Status allowed = grant_.authority->Check(grant_.name, grant_.key, type);
    if (absl::IsUnauthenticated(allowed)) {
      revoked_ = true;
      return allowed;
    }
    // A request the key may not make is answered ERROR like any refused request, and the
    // connection goes on (the client may have more requests in flight behind it). The manifest
    // bytes that follow a PUT_MANIFEST(_DELTA) are read and dropped, to stay in step.
    if (!allowed.ok()) {
      if (type == MsgType::kPutManifest || type == MsgType::kPutManifestDelta) {
        return DropManifest(type, frame.payload, allowed);
      }
      return RequestError(std::string(MsgTypeName(type)), allowed);
    }
  }
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
    case MsgType::kListBackups:
      return HandleListBackups(frame.payload);
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

absl::Status StoreSession::HandleHave(absl::Span<const uint8_t> payload) {
  absl::StatusOr<std::vector<codec::ChunkId>> ids = DecodeHave(payload);
  if (!ids.ok()) return ProtocolError(ids.status());
  std::vector<bool> have;
  absl::Status st;
  {
    // A chunk answered "have" stays until the session ends: its writing span starts here.
    std::lock_guard<std::mutex> lock(store_mu_);
    st = BeginWriting();
    if (st.ok()) st = store_.HaveChunks(*ids, &have);
  }
  if (!st.ok()) return RequestError("HAVE", st);
  return conn_.Send(MsgType::kHaveReply, EncodeHaveReply(have));
}

absl::Status StoreSession::HandleAppend(absl::Span<const uint8_t> payload) {
  absl::StatusOr<AppendView> append = DecodeAppend(payload);
  if (!append.ok()) return ProtocolError(append.status());
  const size_t n = append->records.size();
  if (absl::Status st = grant_.authority->CheckQuota(grant_.name, payload.size()); !st.ok()) {
    return RequestError("APPEND", st);
  }
  // The daemon decides: a client asking for checksum-only gets full checks unless the operator
  // chose to trust the senders (ServerOptions::verify).
  const bool full = options_.verify == VerifyMode::kFull || append->mode == VerifyMode::kFull;
  // Every record is checked here, on this connection's thread and without the store lock, so
  // that connections verify in parallel; nothing of the frame is appended unless all pass.
  views_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<codec::RecordView> view = codec::CheckReceivedRecord(
        append->records[i], full, decompressor_, &served_.hasher(), &scratch_);
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
    st = BeginWriting();
    if (st.ok()) st = served_.AppendChecked(append->records, views_, &stats);
  }
  records_appended_ += stats.records_appended;
  Charge(stats.bytes_appended, /*commit=*/false);
  if (!st.ok()) return RequestError("APPEND", st);
  return conn_.Send(MsgType::kAppendAck, EncodeAppendAck(stats));
}

absl::Status StoreSession::HandleFlush(absl::Span<const uint8_t> payload) {
  if (absl::Status st = CheckEmptyPayload(MsgType::kFlush, payload); !st.ok()) {
    return ProtocolError(st);
  }
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    st = BeginWriting();
    if (st.ok()) st = store_.Flush();
  }
  if (!st.ok()) return RequestError("FLUSH", st);
  Charge(0, /*commit=*/true);
  if (options_.after_commit) options_.after_commit(CommitStep::kFlushed);
  return conn_.Send(MsgType::kFlushAck, absl::Span<const uint8_t>());
}

absl::Status StoreSession::HandleRead(absl::Span<const uint8_t> payload) {
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
  // The served store takes the lock only while it uses the store: a slow reader holds up
  // nobody else.
  if (reader_ == nullptr) reader_ = served_.NewReader(options_.backend);
  const absl::Status st = reader_->Read(*ids, store_mu_, sink);
  if (!send_failed.ok()) return send_failed;
  if (!st.ok()) return RequestError("READ", st);
  return conn_.Send(MsgType::kReadEnd, absl::Span<const uint8_t>());
}

}  // namespace chunkferry::engine::wire_internal
