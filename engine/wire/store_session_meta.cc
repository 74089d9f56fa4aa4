#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/format/byte_io.h"
#include "engine/format/manifest_delta.h"
#include "engine/local/garbage_collector.h"
#include "engine/wire/store_session.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine::wire_internal {

absl::Status StoreSession::ReceiveManifestBytes(MsgType request, const std::string& what,
                                                uint64_t length, const std::string& path,
                                                absl::Status* stored) {
  const bool drop = !stored->ok();
  absl::StatusOr<io::Fd> fd =
      drop ? absl::StatusOr<io::Fd>(*stored)
           : io::OpenFile(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  // A failure to store the bytes is answered once they have all arrived, so that the stream
  // stays in step with the requests.
  *stored = fd.status();
  if (!drop) {
    if (absl::Status quota = grant_.authority->CheckQuota(grant_.name, length); !quota.ok()) {
      (void)RequestError(std::string(MsgTypeName(request)), quota);
      return ProtocolError(quota);
    }
  }
  if (fd.ok()) {
    // A stream that cannot fit is refused at once rather than received to fill the disk: the
    // connection closes (the bytes announced would otherwise have to be read and dropped).
    struct statvfs fs;
    if (::fstatvfs(fd->get(), &fs) == 0) {
      const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
      if (length > free_bytes || free_bytes - length < options_.min_free_bytes) {
        const absl::Status full = absl::ResourceExhaustedError(
            absl::StrCat("the store has ", free_bytes, " bytes free; ", what, " needs ", length,
                         " and ", options_.min_free_bytes, " must stay free"));
        (void)RequestError(std::string(MsgTypeName(request)), full);
        return ProtocolError(full);
      }
    }
  }
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

absl::Status StoreSession::DropManifest(MsgType request, absl::Span<const uint8_t> payload,
                                        const absl::Status& why) {
  uint64_t length = 0;
  std::string what;
  if (request == MsgType::kPutManifest) {
    absl::StatusOr<PutManifest> put = DecodePutManifest(payload);
    if (!put.ok()) return ProtocolError(put.status());
    length = put->file_length;
    what = put->backup_uuid;
  } else {
    absl::StatusOr<PutManifestDelta> put = DecodePutManifestDelta(payload);
    if (!put.ok()) return ProtocolError(put.status());
    length = put->delta_length;
    what = put->backup_uuid;
  }
  absl::Status stored = why;
  CF_RETURN_IF_ERROR(ReceiveManifestBytes(request, what, length, "", &stored));
  return RequestError(std::string(MsgTypeName(request)), why);
}

uint64_t StoreSession::ManifestBytes(const std::string& backup_uuid) {
  std::lock_guard<std::mutex> lock(store_mu_);
  return served_.ManifestBytes(backup_uuid);
}

absl::Status StoreSession::HandlePutManifest(absl::Span<const uint8_t> payload) {
  absl::StatusOr<PutManifest> put = DecodePutManifest(payload);
  if (!put.ok()) return ProtocolError(put.status());
  std::string tmp_path;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    tmp_path = served_.NewTmpPath("received-manifest");
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
    st = BeginWriting();
    if (st.ok()) st = store_.PutManifest((*reader)->meta(), **reader);
  }
  if (!st.ok()) return RequestError("PUT_MANIFEST", st);
  Charge(ManifestBytes(put->backup_uuid), /*commit=*/true);
  if (options_.after_commit) options_.after_commit(CommitStep::kManifestPublished);
  return conn_.Send(MsgType::kOk, absl::Span<const uint8_t>());
}

absl::Status StoreSession::HandlePutManifestDelta(absl::Span<const uint8_t> payload) {
  absl::StatusOr<PutManifestDelta> put = DecodePutManifestDelta(payload);
  if (!put.ok()) return ProtocolError(put.status());
  std::string tmp_path;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    tmp_path = served_.NewTmpPath("received-manifest-delta");
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
      CF_RETURN_IF_ERROR(BeginWriting());
      absl::StatusOr<std::unique_ptr<ManifestSource>> base = served_.OpenBase(put->base_uuid);
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
      // With its base named, a store can trust the entries the base's published manifest
      // shares (a pool then looks up only the new chunks, not the whole volume's).
      return store_.PutManifestWithBase(delta->meta(), *delta, base->get(), put->base_uuid);
    }();
  }
  if (!st.ok()) return RequestError(kReq, st);
  Charge(ManifestBytes(put->backup_uuid), /*commit=*/true);
  if (options_.after_commit) options_.after_commit(CommitStep::kManifestPublished);
  return conn_.Send(MsgType::kOk, absl::Span<const uint8_t>());
}

absl::Status StoreSession::HandleOpenManifest(absl::Span<const uint8_t> payload) {
  absl::StatusOr<std::string> uuid = DecodeOpenManifest(payload);
  if (!uuid.ok()) return ProtocolError(uuid.status());
  // The file is streamed without the store lock (ServedStore::OpenManifestFile).
  absl::StatusOr<ServedStore::ManifestFile> file = served_.OpenManifestFile(*uuid, store_mu_);
  if (!file.ok()) return RequestError("OPEN_MANIFEST", file.status());
  absl::StatusOr<io::Fd> fd = io::OpenFile(file->path, O_RDONLY | O_CLOEXEC);
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

absl::Status StoreSession::HandlePutGroup(absl::Span<const uint8_t> payload) {
  absl::StatusOr<GroupRecord> group = DecodePutGroup(payload);
  if (!group.ok()) return ProtocolError(group.status());
  absl::Status st;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    st = BeginWriting();
    if (st.ok()) st = store_.PutGroup(*group);
  }
  if (!st.ok()) return RequestError("PUT_GROUP", st);
  if (options_.after_commit) options_.after_commit(CommitStep::kGroupPublished);
  return conn_.Send(MsgType::kOk, absl::Span<const uint8_t>());
}

absl::Status StoreSession::HandleGetGroup(absl::Span<const uint8_t> payload) {
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

absl::Status StoreSession::HandleListGroups(absl::Span<const uint8_t> payload) {
  return HandleList(MsgType::kListGroups, payload);
}

absl::Status StoreSession::HandleListBackups(absl::Span<const uint8_t> payload) {
  return HandleList(MsgType::kListBackups, payload);
}

absl::Status StoreSession::HandleList(MsgType request, absl::Span<const uint8_t> payload) {
  if (absl::Status st = CheckEmptyPayload(request, payload); !st.ok()) return ProtocolError(st);
  const bool groups = request == MsgType::kListGroups;
  absl::StatusOr<std::vector<std::string>> uuids;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    uuids = groups ? store_.ListGroups() : store_.ListBackups();
  }
  const std::string name(MsgTypeName(request));
  if (!uuids.ok()) return RequestError(name, uuids.status());
  // GROUP_LIST and BACKUP_LIST lay out their uuids alike.
  const std::string reply = groups ? EncodeGroupList(*uuids) : EncodeBackupList(*uuids);
  if (absl::Status st = CheckFrameSize(reply.size(), conn_.max_send_frame()); !st.ok()) {
    return RequestError(name, st);
  }
  return conn_.Send(groups ? MsgType::kGroupList : MsgType::kBackupList, Bytes(reply));
}

absl::Status StoreSession::HandleDelete(absl::Span<const uint8_t> payload) {
  absl::StatusOr<DeleteRequest> request = DecodeDelete(payload);
  if (!request.ok()) return ProtocolError(request.status());
  absl::StatusOr<DeleteResult> result;
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    if (absl::Status st = BeginWriting(); !st.ok()) {
      result = st;
    } else {
      result = request->kind == DeleteKind::kGroup ? store_.DeleteGroup(request->uuid)
                                                   : store_.DeleteBackup(request->uuid);
    }
  }
  if (!result.ok()) return RequestError("DELETE", result.status());
  return conn_.Send(MsgType::kDeleted, Bytes(EncodeDeleted(*result)));
}

absl::Status StoreSession::HandleGc(absl::Span<const uint8_t> payload) {
  absl::StatusOr<GcRequest> request = DecodeGc(payload);
  if (!request.ok()) return ProtocolError(request.status());
  LocalStore* local = served_.collectable();
  if (local == nullptr) {
    return RequestError("GC", absl::FailedPreconditionError(absl::StrCat(
                                  "this daemon serves ", store_.location(),
                                  ", which it does not collect: run `chunkferry gc --store ",
                                  store_.location(), "` on any node (it takes the store alone)")));
  }
  if (gc_running_.exchange(true)) {
    return RequestError("GC", absl::FailedPreconditionError(
                                  "a garbage collection of this store is already running"));
  }
  GcOptions o;
  o.dry_run = request->dry_run;
  o.repack_below = request->repack_below_ppm / 1e6;
  absl::Status st;
  GcStats stats;
  auto gc = std::make_unique<GarbageCollector>(*local, o);
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
  return conn_.Send(MsgType::kGcDone, Bytes(EncodeGcDone(stats)));
}

}  // namespace chunkferry::engine::wire_internal
