// RadosStore's catalog: manifests, groups, listings and deletes (rados_store.h). Every change of
// the catalog object is a compare-and-write on its version, so that writers on other nodes never
// publish over each other, and a check (a group's volumes exist, no group names a backup being
// deleted) holds at the moment of the change it guards.
#include <fcntl.h>

#include <chrono>
#include <deque>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/format/byte_io.h"
#include "engine/format/manifest.h"
#include "engine/format/manifest_delta.h"
#include "engine/rados/rados_aio.h"
#include "engine/rados/rados_store.h"
#include "engine/store/scratch_manifest.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine::rados {
namespace {

// Compare-and-writes that lost to another writer are retried this often before giving up.
constexpr int kCatalogAttempts = 200;
constexpr size_t kCatalogPage = 1024;
constexpr size_t kPartsInFlight = 4;
constexpr size_t kDurableCheckBatch = 1u << 16;

// A failed compare on the catalog's version: another writer changed it between read and write.
bool LostRace(int r) { return r == -ERANGE || r == -EOVERFLOW; }

}  // namespace

absl::StatusOr<RadosStore::CatalogView> RadosStore::ReadCatalogKeys(
    const std::set<std::string>& keys) {
  CatalogView view;
  std::map<std::string, librados::bufferlist> values;
  int rval = 0;
  librados::ObjectReadOperation op;
  op.omap_get_vals_by_keys(keys, &values, &rval);
  const int r = pool_->io().operate(kCatalogObject, &op, nullptr);
  if (r < 0 || rval < 0) return RadosError(r < 0 ? r : rval, "read", kCatalogObject, location());
  view.version = pool_->io().get_last_version();
  for (auto& [k, v] : values) view.values[k] = v.to_str();
  return view;
}

absl::StatusOr<RadosStore::CatalogView> RadosStore::ReadCatalogPrefix(absl::string_view prefix) {
  for (int attempt = 0; attempt < kCatalogAttempts; ++attempt) {
    CatalogView view;
    std::string after;
    bool consistent = true;
    for (bool first = true, more = true; more; first = false) {
      std::map<std::string, librados::bufferlist> values;
      int rval = 0;
      librados::ObjectReadOperation op;
      op.omap_get_vals2(after, std::string(prefix), kCatalogPage, &values, &more, &rval);
      const int r = pool_->io().operate(kCatalogObject, &op, nullptr);
      if (r < 0 || rval < 0)
        return RadosError(r < 0 ? r : rval, "read", kCatalogObject, location());
      const uint64_t version = pool_->io().get_last_version();
      if (!first && version != view.version) {
        consistent = false;  // changed between pages: read it all again
        break;
      }
      view.version = version;
      for (auto& [k, v] : values) view.values[k] = v.to_str();
      if (!values.empty()) after = values.rbegin()->first;
    }
    if (consistent) return view;
  }
  return absl::AbortedError(
      absl::StrCat("the catalog of ", location(), " kept changing while it was read"));
}

absl::Status RadosStore::ChangeCatalog(const std::function<absl::StatusOr<CatalogView>()>& read,
                                       const CatalogChange& change) {
  for (int attempt = 0; attempt < kCatalogAttempts; ++attempt) {
    absl::StatusOr<CatalogView> view = read();
    if (absl::IsAborted(view.status())) continue;
    CF_RETURN_IF_ERROR(view.status());
    librados::ObjectWriteOperation op;
    op.assert_version(view->version);
    bool write = false;
    CF_RETURN_IF_ERROR(change(*view, &op, &write));
    if (!write) return absl::OkStatus();
    CF_RETURN_IF_ERROR(CheckLockHeld());
    const int r = pool_->io().operate(kCatalogObject, &op);
    if (LostRace(r)) {
      // Another writer changed the catalog: read again after a short, random pause.
      std::this_thread::sleep_for(std::chrono::microseconds(100 + random_() % 2000));
      continue;
    }
    if (r < 0) return RadosError(r, "change", kCatalogObject, location());
    return absl::OkStatus();
  }
  return absl::AbortedError(
      absl::StrCat("the catalog of ", location(), " kept changing under this writer; try again"));
}

absl::StatusOr<ManifestRef> RadosStore::GetManifestRef(const std::string& backup_uuid) {
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogKeys({BackupKey(backup_uuid)}));
  auto it = view.values.find(BackupKey(backup_uuid));
  if (it == view.values.end()) {
    return absl::NotFoundError(
        absl::StrCat("store ", location(), " has no volume backup ", backup_uuid));
  }
  return DecodeManifestRef(it->second, absl::StrCat(location(), " catalog ", it->first));
}

// ---- Manifests. ----

absl::Status RadosStore::CheckChunksDurable(const VolumeBackupMeta& meta, ManifestSource& entries,
                                            ManifestSource* base) {
  entries.Rewind();
  // An entry equal to the base's at the same offset names a chunk the base's published manifest
  // names: durable here, and kept by the write lock until this manifest is published too.
  std::optional<BaseCursor> cursor;
  if (base != nullptr) cursor.emplace(base);
  uint64_t offset = 0;
  std::vector<ManifestEntry> batch;
  std::vector<codec::ChunkId> ids;
  std::vector<std::optional<RecordLocation>> found;
  for (bool end = false; !end;) {
    ids.clear();
    while (ids.size() < kDurableCheckBatch) {
      CF_ASSIGN_OR_RETURN(size_t n, entries.Next(&batch, 4096));
      if (n == 0) {
        end = true;
        break;
      }
      for (const auto& e : batch) {
        const uint64_t at = offset;
        offset += e.length;
        if (e.zero) continue;
        if (cursor) {
          CF_ASSIGN_OR_RETURN(const ManifestEntry* b, cursor->At(at));
          if (b != nullptr && SameEntry(*b, e)) continue;
        }
        if (unflushed_.contains(e.id)) {
          return absl::FailedPreconditionError(
              absl::StrCat("manifest of ", meta.uuid, " names chunk ", e.id.ToHex(),
                           " that is not durable yet in ", location(), " (flush first)"));
        }
        if (!vouched_.contains(e.id)) ids.push_back(e.id);
      }
    }
    manifest_lookups_ += ids.size();
    CF_RETURN_IF_ERROR(Lookup(ids, &found));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!found[i]) {
        return absl::FailedPreconditionError(
            absl::StrCat("manifest of ", meta.uuid, " names chunk ", ids[i].ToHex(), " that store ",
                         location(), " does not hold"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RadosStore::UploadManifest(const std::string& path, const std::string& backup_uuid,
                                        ManifestRef* ref) {
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(ref->length, io::FileSize(fd.get(), path));
  if (ref->length < 8 || ref->length > kMaxManifestBytes) {
    return absl::InvalidArgumentError(absl::StrCat("manifest of ", backup_uuid, " has ",
                                                   ref->length, " bytes, more than a store takes"));
  }
  uint8_t trailer_sum[8];
  CF_RETURN_IF_ERROR(io::PreadFull(fd.get(), absl::MakeSpan(trailer_sum), ref->length - 8));
  ref->checksum = LoadU64(trailer_sum);  // the manifest's own XXH3 of all before it
  ref->tag = random_();
  struct Part {
    std::string name;
    std::string bytes;
    Aio aio;
  };
  std::deque<Part> parts;
  absl::Status status;
  auto finish = [&] {
    const int r = parts.front().aio.Wait();
    if (r < 0 && status.ok()) status = RadosError(r, "write", parts.front().name, location());
    parts.pop_front();
  };
  const uint32_t count = ref->parts();
  for (uint32_t i = 0; i < count && status.ok(); ++i) {
    if (parts.size() >= kPartsInFlight) finish();
    Part& p = parts.emplace_back();
    p.name = ManifestPartObject(backup_uuid, ref->tag, i);
    const uint64_t offset = uint64_t{i} * kManifestPartBytes;
    p.bytes.resize(std::min(kManifestPartBytes, ref->length - offset));
    status = io::PreadFull(
        fd.get(), absl::MakeSpan(reinterpret_cast<uint8_t*>(p.bytes.data()), p.bytes.size()),
        offset);
    if (!status.ok()) break;
    librados::ObjectWriteOperation op;
    op.create(true);
    librados::bufferlist bl = librados::bufferlist::static_from_mem(p.bytes.data(), p.bytes.size());
    op.write_full(bl);
    const int r = p.aio.Submit(
        [&](librados::AioCompletion* c) { return pool_->io().aio_operate(p.name, c, &op); });
    if (r < 0) status = RadosError(r, "write", p.name, location());
  }
  while (!parts.empty()) finish();
  if (!status.ok()) (void)RemoveManifestParts(backup_uuid, *ref);
  return status;
}

absl::Status RadosStore::RemoveManifestParts(const std::string& backup_uuid,
                                             const ManifestRef& ref) {
  std::deque<std::pair<std::string, Aio>> removes;
  for (uint32_t i = 0; i < ref.parts(); ++i) {
    auto& [name, aio] = removes.emplace_back(ManifestPartObject(backup_uuid, ref.tag, i), Aio());
    // A part not removed is left for a collection.
    (void)aio.Submit([&](librados::AioCompletion* c) { return pool_->io().aio_remove(name, c); });
  }
  absl::Status status;
  for (auto& [name, aio] : removes) {
    const int r = aio.Wait();
    if (r < 0 && r != -ENOENT && status.ok()) status = RadosError(r, "remove", name, location());
  }
  return status;
}

absl::Status RadosStore::PutManifest(const VolumeBackupMeta& meta, ManifestSource& entries) {
  return PublishManifest(meta, entries, nullptr);
}

absl::Status RadosStore::PutManifestWithBase(const VolumeBackupMeta& meta, ManifestSource& entries,
                                             ManifestSource* base, const std::string& base_uuid) {
  if (base == nullptr) return PutManifest(meta, entries);
  // The base as this store published it, not the caller's copy: its chunks are durable here
  // because it was checked when it was published (and the write lock keeps them). Reading it is
  // a few objects; looking up every chunk it covers was most of an incremental sync's time.
  absl::StatusOr<std::unique_ptr<ManifestSource>> own = OpenManifest(base_uuid);
  if (absl::IsNotFound(own.status())) return PutManifest(meta, entries);
  if (!own.ok()) return own.status();
  return PublishManifest(meta, entries, own->get());
}

absl::Status RadosStore::PublishManifest(const VolumeBackupMeta& meta, ManifestSource& entries,
                                         ManifestSource* base) {
  CF_RETURN_IF_ERROR(CheckWriting());
  CF_RETURN_IF_ERROR(ValidateMeta(meta));
  CF_RETURN_IF_ERROR(CheckChunksDurable(meta, entries, base));
  CF_ASSIGN_OR_RETURN(ScratchDir dir, ScratchDir::Make());
  CF_ASSIGN_OR_RETURN(const std::string path, WriteScratchManifest(dir, meta, entries));
  ManifestRef ref;
  ref.meta = meta;
  CF_RETURN_IF_ERROR(UploadManifest(path, meta.uuid, &ref));
  const std::string key = BackupKey(meta.uuid);
  bool ours_published = false;
  absl::Status st = ChangeCatalog(
      [&] { return ReadCatalogKeys({key}); },
      [&](const CatalogView& view, librados::ObjectWriteOperation* op, bool* write) {
        auto it = view.values.find(key);
        if (it != view.values.end()) {
          CF_ASSIGN_OR_RETURN(ManifestRef old, DecodeManifestRef(it->second, key));
          if (old.length == ref.length && old.checksum == ref.checksum) return absl::OkStatus();
          return absl::AlreadyExistsError(absl::StrCat(
              "volume backup ", meta.uuid, " is already published in store ", location(),
              " with other contents: a published manifest is never replaced; delete it first"));
        }
        librados::bufferlist bl;
        bl.append(EncodeManifestRef(ref));
        op->omap_set({{key, bl}});
        *write = true;
        ours_published = true;
        return absl::OkStatus();
      });
  if (!st.ok()) ours_published = false;
  // The same bytes published before (or an error): our parts are not named by the catalog.
  if (!ours_published) (void)RemoveManifestParts(meta.uuid, ref);
  return st;
}

absl::StatusOr<std::unique_ptr<ManifestSource>> RadosStore::OpenManifest(
    const std::string& backup_uuid) {
  if (closed_) return CheckWritable();
  if (!IsValidUuid(backup_uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume backup uuid '", backup_uuid, "' is malformed"));
  }
  CF_ASSIGN_OR_RETURN(ManifestRef ref, GetManifestRef(backup_uuid));
  CF_ASSIGN_OR_RETURN(ScratchDir dir, ScratchDir::Make());
  const std::string path = dir.File("manifest");
  {
    CF_ASSIGN_OR_RETURN(io::Fd fd,
                        io::OpenFile(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    struct Part {
      std::string name;
      uint64_t offset = 0;
      librados::bufferlist bl;
      Aio aio;
    };
    std::deque<Part> parts;
    absl::Status status;
    auto finish = [&] {
      Part& p = parts.front();
      const int r = p.aio.Wait();
      const uint64_t want = std::min(kManifestPartBytes, ref.length - p.offset);
      if (!status.ok()) {
        // The first error stands.
      } else if (r < 0) {
        status = r == -ENOENT
                     ? absl::DataLossError(absl::StrCat("store ", location(), ": ", p.name,
                                                        " of a published manifest is missing"))
                     : RadosError(r, "read", p.name, location());
      } else if (p.bl.length() != want) {
        status = absl::DataLossError(absl::StrCat("store ", location(), ": ", p.name, " holds ",
                                                  p.bl.length(), " bytes, not ", want));
      } else {
        status = io::PwriteFull(
            fd.get(),
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(p.bl.c_str()), p.bl.length()),
            p.offset);
      }
      parts.pop_front();
    };
    for (uint32_t i = 0; i < ref.parts() && status.ok(); ++i) {
      if (parts.size() >= kPartsInFlight) finish();
      Part& p = parts.emplace_back();
      p.name = ManifestPartObject(backup_uuid, ref.tag, i);
      p.offset = uint64_t{i} * kManifestPartBytes;
      const int r = p.aio.Submit([&](librados::AioCompletion* c) {
        return pool_->io().aio_read(p.name, c, &p.bl, kManifestPartBytes, 0);
      });
      if (r < 0) status = RadosError(r, "read", p.name, location());
    }
    while (!parts.empty()) finish();
    CF_RETURN_IF_ERROR(status);
  }
  // Checked whole before any entry is used; the reader keeps its descriptor, so the file can go.
  CF_ASSIGN_OR_RETURN(std::unique_ptr<ManifestReader> reader, ManifestReader::Open(path));
  if (reader->meta().uuid != backup_uuid) {
    return absl::DataLossError(absl::StrCat("store ", location(), ": the manifest of ", backup_uuid,
                                            " is that of ", reader->meta().uuid));
  }
  return std::unique_ptr<ManifestSource>(std::move(reader));
}

// ---- Groups and listings. ----

absl::Status RadosStore::PutGroup(const GroupRecord& group) { return PublishGroup(group, false); }

absl::Status RadosStore::GrowGroup(const GroupRecord& group) { return PublishGroup(group, true); }

absl::Status RadosStore::PublishGroup(const GroupRecord& group, bool grow) {
  CF_RETURN_IF_ERROR(CheckWriting());
  if (!IsValidUuid(group.group_uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("group uuid '", group.group_uuid, "' is malformed"));
  }
  const std::string key = GroupKey(group.group_uuid);
  const std::string bytes = EncodeGroup(group);
  std::set<std::string> keys = {key};
  for (const auto& v : group.volume_uuids) keys.insert(BackupKey(v));
  return ChangeCatalog(
      [&] { return ReadCatalogKeys(keys); },
      [&](const CatalogView& view, librados::ObjectWriteOperation* op, bool* write) {
        for (const auto& v : group.volume_uuids) {
          if (!view.values.contains(BackupKey(v))) {
            return absl::FailedPreconditionError(
                absl::StrCat("group ", group.group_uuid, " names volume backup ", v, " that store ",
                             location(), " does not hold"));
          }
        }
        auto it = view.values.find(key);
        if (it != view.values.end()) {
          if (it->second == bytes) return absl::OkStatus();
          bool grows = false;
          if (grow) {
            CF_ASSIGN_OR_RETURN(GroupRecord old, DecodeGroup(it->second, key));
            grows = GroupOnlyGrows(old, group);
          }
          if (!grows) {
            return absl::AlreadyExistsError(absl::StrCat(
                "group ", group.group_uuid, " is already published in store ", location(),
                " with other contents: a published group is never replaced; delete it first"));
          }
        }
        librados::bufferlist bl;
        bl.append(bytes);
        op->omap_set({{key, bl}});
        *write = true;
        return absl::OkStatus();
      });
}

absl::StatusOr<GroupRecord> RadosStore::GetGroup(const std::string& group_uuid) {
  if (closed_) return CheckWritable();
  if (!IsValidUuid(group_uuid)) {
    return absl::InvalidArgumentError(absl::StrCat("group uuid '", group_uuid, "' is malformed"));
  }
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogKeys({GroupKey(group_uuid)}));
  auto it = view.values.find(GroupKey(group_uuid));
  if (it == view.values.end()) {
    return absl::NotFoundError(absl::StrCat("store ", location(), " has no group ", group_uuid));
  }
  return DecodeGroup(it->second, absl::StrCat(location(), " catalog ", it->first));
}

namespace {

std::vector<std::string> UuidsOf(const std::map<std::string, std::string>& values,
                                 absl::string_view prefix) {
  std::vector<std::string> out;
  for (const auto& [k, v] : values) {
    if (absl::StartsWith(k, prefix)) out.push_back(k.substr(prefix.size()));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> RadosStore::ListGroups() {
  if (closed_) return CheckWritable();
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogPrefix(kGroupPrefix));
  return UuidsOf(view.values, kGroupPrefix);
}

absl::StatusOr<std::vector<std::string>> RadosStore::ListBackups() {
  if (closed_) return CheckWritable();
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogPrefix(kBackupPrefix));
  return UuidsOf(view.values, kBackupPrefix);
}

absl::StatusOr<std::vector<VolumeBackupMeta>> RadosStore::ListBackupMetas(
    const std::function<bool(const std::string& uuid)>& wanted) {
  if (closed_) return CheckWritable();
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogPrefix(kBackupPrefix));
  std::vector<VolumeBackupMeta> out;
  for (const auto& [k, v] : view.values) {
    if (!absl::StartsWith(k, kBackupPrefix) || !wanted(k.substr(sizeof(kBackupPrefix) - 1))) {
      continue;
    }
    CF_ASSIGN_OR_RETURN(ManifestRef ref, DecodeManifestRef(v, k));
    out.push_back(std::move(ref.meta));
  }
  return out;
}

// ---- Deletes. ----

absl::StatusOr<DeleteResult> RadosStore::DeleteGroup(const std::string& group_uuid) {
  return Delete(DeleteKind::kGroup, group_uuid);
}

absl::StatusOr<DeleteResult> RadosStore::DeleteBackup(const std::string& backup_uuid) {
  return Delete(DeleteKind::kBackup, backup_uuid);
}

absl::StatusOr<DeleteResult> RadosStore::Delete(DeleteKind kind, const std::string& uuid) {
  CF_RETURN_IF_ERROR(CheckWriting());
  const bool group = kind == DeleteKind::kGroup;
  if (!IsValidUuid(uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat(group ? "group uuid '" : "volume backup uuid '", uuid, "' is malformed"));
  }
  const std::string deleting = DeletingKey(absl::StrFormat("%s.%016x", uuid, random_()));
  DeleteResult result;
  // The groups, and the volume backups the change may remove, at one version of the catalog.
  auto read = [&]() -> absl::StatusOr<CatalogView> {
    CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogPrefix(kGroupPrefix));
    std::set<std::string> keys;
    if (group) {
      auto it = view.values.find(GroupKey(uuid));
      if (it != view.values.end()) {
        CF_ASSIGN_OR_RETURN(GroupRecord g, DecodeGroup(it->second, it->first));
        for (const auto& v : g.volume_uuids) keys.insert(BackupKey(v));
      }
    } else {
      keys.insert(BackupKey(uuid));
    }
    CF_ASSIGN_OR_RETURN(CatalogView more, ReadCatalogKeys(keys));
    if (more.version != view.version) return absl::AbortedError("the catalog changed");
    view.values.merge(more.values);
    return view;
  };
  auto change = [&](const CatalogView& view, librados::ObjectWriteOperation* op,
                    bool* write) -> absl::Status {
    result = DeleteResult();
    PendingDelete pending;
    std::set<std::string> remove;
    std::vector<std::string> candidates;
    if (group) {
      auto it = view.values.find(GroupKey(uuid));
      if (it == view.values.end()) {
        return absl::NotFoundError(absl::StrCat("store ", location(), " has no group ", uuid));
      }
      CF_ASSIGN_OR_RETURN(GroupRecord g, DecodeGroup(it->second, it->first));
      candidates = g.volume_uuids;
      remove.insert(it->first);
      result.groups_removed.push_back(uuid);
    } else {
      if (!view.values.contains(BackupKey(uuid))) {
        return absl::NotFoundError(
            absl::StrCat("store ", location(), " has no volume backup ", uuid));
      }
      candidates = {uuid};
    }
    // Volume backups that another published group names stay.
    absl::flat_hash_set<std::string> named;
    for (const auto& [k, v] : view.values) {
      if (!absl::StartsWith(k, kGroupPrefix) || k == GroupKey(uuid)) continue;
      CF_ASSIGN_OR_RETURN(GroupRecord other, DecodeGroup(v, k));
      for (const auto& b : other.volume_uuids) {
        if (!group && b == uuid) {
          return absl::FailedPreconditionError(
              absl::StrCat("volume backup ", uuid, " belongs to group ", other.group_uuid,
                           " in store ", location(), ": delete the group (--group ",
                           other.group_uuid, ") to delete its volume backups"));
        }
        named.insert(b);
      }
    }
    for (const auto& b : candidates) {
      if (named.contains(b)) {
        result.backups_kept.push_back(b);
        continue;
      }
      auto it = view.values.find(BackupKey(b));
      if (it != view.values.end()) {
        CF_ASSIGN_OR_RETURN(ManifestRef ref, DecodeManifestRef(it->second, it->first));
        pending.manifests.emplace_back(b, std::move(ref));
        remove.insert(it->first);
      }
      result.backups_removed.push_back(b);
    }
    op->omap_rm_keys(remove);
    librados::bufferlist bl;
    bl.append(EncodePendingDelete(pending));
    op->omap_set({{deleting, bl}});
    *write = true;
    return absl::OkStatus();
  };
  CF_RETURN_IF_ERROR(ChangeCatalog(read, change));
  // Unreachable now; what remains is removing the manifests' parts, which a writable open
  // finishes when this process does not.
  CF_RETURN_IF_ERROR(FinishDelete(deleting));
  return result;
}

absl::Status RadosStore::FinishDelete(const std::string& deleting_key) {
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogKeys({deleting_key}));
  auto it = view.values.find(deleting_key);
  if (it == view.values.end()) return absl::OkStatus();  // finished by another writer
  CF_ASSIGN_OR_RETURN(PendingDelete pending, DecodePendingDelete(it->second, deleting_key));
  for (const auto& [uuid, ref] : pending.manifests) {
    CF_RETURN_IF_ERROR(RemoveManifestParts(uuid, ref));
  }
  librados::ObjectWriteOperation op;
  op.omap_rm_keys({deleting_key});
  const int r = pool_->io().operate(kCatalogObject, &op);
  return r < 0 ? RadosError(r, "change", kCatalogObject, location()) : absl::OkStatus();
}

absl::Status RadosStore::FinishInterruptedDeletes() {
  CF_ASSIGN_OR_RETURN(CatalogView view, ReadCatalogPrefix(kDeletingPrefix));
  for (const auto& [key, value] : view.values) CF_RETURN_IF_ERROR(FinishDelete(key));
  return absl::OkStatus();
}

}  // namespace chunkferry::engine::rados
