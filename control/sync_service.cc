#include "control/sync_service.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control/inventory.h"
#include "engine/format/volume_backup.h"
#include "engine/local/local_store.h"
#if CHUNKFERRY_HAS_RADOS
#include "engine/rados/rados_store.h"
#endif
#include "engine/store/store.h"
#include "engine/store/worker_pool.h"
#include "engine/wire/remote_store.h"
#include "io/net.h"
#include "io/status_macros.h"

namespace chunkferry::control {
namespace {

constexpr char kVolumeBackupClass[] = "org.zstack.header.storage.backup.VolumeBackupInventory";
constexpr char kStorageRefClass[] =
    "org.zstack.header.storage.backup.VolumeBackupStorageRefInventory";

ApiError InvalidArgument(std::string details) {
  return MakeError(kSysInvalidArgument, std::move(details));
}

// ErrorFromStatus with `context` before the status message, so the caller learns which step
// and which storage failed.
ApiError StatusError(const std::string& context, const absl::Status& status) {
  ApiError e = ErrorFromStatus(status);
  e.details = absl::StrCat(context, ": ", e.details);
  return e;
}

// The JSON type name, for messages ("number", "object", ...).
std::string TypeName(const Json& j) { return j.type_name(); }

std::optional<ApiError> CheckUuid(const std::string& field, const std::string& value) {
  if (engine::IsValidUuid(value)) return std::nullopt;
  return InvalidArgument(
      absl::StrCat(field, " '", value, "' is not a uuid (32 lowercase hex characters, no dashes)"));
}

// The uuid checks shared by the parser and Sync(), which the C ABI may call with a request it
// built itself: the group uuid, both storage uuids, and src != dst.
std::optional<ApiError> CheckRequestUuids(const SyncRequest& r) {
  if (auto e = CheckUuid("groupUuid", r.group_uuid)) return e;
  if (auto e = CheckUuid("srcBackupStorageUuid", r.src_uuid)) return e;
  if (auto e = CheckUuid("dstBackupStorageUuid", r.dst_uuid)) return e;
  if (r.src_uuid == r.dst_uuid) {
    return InvalidArgument(
        absl::StrCat("srcBackupStorageUuid and dstBackupStorageUuid are the "
                     "same backup storage ",
                     r.src_uuid, ": a group cannot be synced onto itself"));
  }
  return std::nullopt;
}

// Reads a mandatory string field of the action object.
std::optional<ApiError> GetStringField(const Json& action, const char* field, std::string* out) {
  const auto it = action.find(field);
  if (it == action.end() || it->is_null()) {
    return InvalidArgument(absl::StrCat(field, " is missing: it is required"));
  }
  if (!it->is_string()) {
    return InvalidArgument(absl::StrCat(field, " must be a string, not ", TypeName(*it)));
  }
  *out = it->get<std::string>();
  return std::nullopt;
}

// Appends the tags under `field` of `object` (where `where` says which object) to `out`. An
// absent or null field is no tags.
std::optional<ApiError> AppendTags(const Json& object, const char* field, const char* where,
                                   std::vector<std::string>* out) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_array()) {
    return InvalidArgument(
        absl::StrCat(field, " ", where, " must be a list of strings, not ", TypeName(*it)));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& tag = (*it)[i];
    if (!tag.is_string()) {
      return InvalidArgument(
          absl::StrCat(field, "[", i, "] ", where, " must be a string, not ", TypeName(tag)));
    }
    out->push_back(tag.get<std::string>());
  }
  return std::nullopt;
}

// One side of a sync, opened: the store, and the local store when it is one (rolled back after
// a failed sync).
struct OpenedStore {
  std::unique_ptr<engine::Store> opened;
  engine::LocalStore* local = nullptr;
  engine::Store& store() { return *opened; }
};

// Where a storage is, for messages.
std::string Place(const BackupStorage& s) {
  if (s.remote) return absl::StrCat("tcp://", io::FormatEndpoint(s.endpoint));
  return s.rados ? s.rados_url.ToString() : s.path;
}

// Opens `storage`: a local store read-only (`writable` false: a source) or writable (a
// destination, checking received records on `pool`), or a connection to its daemon.
// `direct_reads`: a local source read past the page cache (LocalStoreOptions::direct_reads),
// for a sync whose other side is a daemon or a pool.
absl::StatusOr<OpenedStore> OpenStorage(const BackupStorage& storage, bool writable,
                                        const io::QueueOptions& queue, engine::WorkerPool* pool,
                                        bool direct_reads = false) {
  OpenedStore opened;
  if (storage.remote) {
    engine::RemoteOptions o;
    o.endpoint = storage.endpoint;
    o.key = storage.key;
    o.connections = storage.connections;
    o.backend = queue.backend;
    o.rate_limit_bytes_per_s = storage.rate_limit_bytes_per_s;
    o.connect_timeout_ms = storage.connect_timeout_ms;
    o.tls = storage.tls;
    auto r = engine::RemoteStore::Connect(o);
    if (!r.ok()) return r.status();
    opened.opened = *std::move(r);
    return opened;
  }
  if (storage.rados) {
#if !CHUNKFERRY_HAS_RADOS
    return absl::UnimplementedError("this build has no RADOS store (built without librados)");
#else
    engine::rados::RadosStoreOptions o;
    o.client = storage.ceph;
    o.writable = writable;
    o.pool = writable ? pool : nullptr;
    auto r = engine::rados::RadosStore::Open(storage.rados_url, o);
    if (!r.ok()) return r.status();
    opened.opened = *std::move(r);
    return opened;
#endif
  }
  engine::LocalStoreOptions o;
  o.writable = writable;
  o.direct_reads = direct_reads;
  o.queue = queue;
  o.pool = writable ? pool : nullptr;
  auto l = engine::LocalStore::Open(storage.path, o);
  if (!l.ok()) return l.status();
  opened.local = l->get();
  opened.opened = *std::move(l);
  return opened;
}

// Reads group `group` of the source store `from` (backup storage `storage`) and the metadata of
// its volumes into `metas`, the Root volume first. The group must hold exactly one Root volume.
std::optional<ApiError> ReadGroupMetas(engine::Store& from, const std::string& group,
                                       const std::string& storage,
                                       std::vector<engine::VolumeBackupMeta>* metas) {
  auto record = from.GetGroup(group);
  if (!record.ok()) {
    if (absl::IsNotFound(record.status())) {
      return MakeError(kSysNotFound,
                       absl::StrCat("group ", group, " not found in backup storage ", storage));
    }
    return StatusError(absl::StrCat("cannot read group ", group, " in backup storage ", storage),
                       record.status());
  }
  for (const std::string& backup : record->volume_uuids) {
    auto manifest = from.OpenManifest(backup);
    if (!manifest.ok()) {
      return StatusError(absl::StrCat("cannot read volume backup ", backup, " of group ", group,
                                      " in backup storage ", storage),
                         manifest.status());
    }
    metas->push_back((*manifest)->meta());
  }
  auto is_root = [](const engine::VolumeBackupMeta& m) { return m.type == "Root"; };
  const auto roots = std::count_if(metas->begin(), metas->end(), is_root);
  if (roots != 1) {
    return MakeError(
        kSysOperationFailed,
        absl::StrCat("group ", group, " in backup storage ", storage, " holds ", roots,
                     " Root volume backups (of ", metas->size(), "); exactly one is required"));
  }
  // Root first, the others in the group's order (the importer already keeps Root first).
  std::stable_partition(metas->begin(), metas->end(), is_root);
  return std::nullopt;
}

// The inventory of a volume backup that `storages` hold. The store records no dates per
// storage, so each ref carries the volume backup's own dates.
Json Inventory(const engine::VolumeBackupMeta& meta, const std::vector<std::string>& storages,
               const absl::TimeZone& zone) {
  std::vector<StorageRef> refs;
  for (const std::string& uuid : storages) {
    StorageRef ref;
    ref.backup_storage_uuid = uuid;
    ref.install_path = meta.install_path;  // the same on every storage
    ref.status = "Ready";
    ref.create_date = meta.create_date;
    ref.last_op_date = meta.last_op_date;
    refs.push_back(std::move(ref));
  }
  return VolumeBackupInventory(meta, refs, zone);
}

}  // namespace

ParsedAction ParseSyncAction(std::string_view path_group_uuid, std::string_view body,
                             SyncScope scope) {
  ParsedAction parsed;
  const std::string action_key(scope == SyncScope::kGroup ? kSyncActionKey : kSyncBackupActionKey);
  const Json root = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    parsed.bad_request = "the request body must be a JSON object";
    return parsed;
  }
  const auto action = root.find(action_key);
  if (action == root.end()) {
    parsed.bad_request = absl::StrCat("the request body names no known action (expected the key \"",
                                      action_key, "\")");
    return parsed;
  }
  if (!action->is_object()) {
    parsed.bad_request =
        absl::StrCat("\"", action_key, "\" must be a JSON object, not ", TypeName(*action));
    return parsed;
  }

  // The path's group uuid wins: a "groupUuid" inside the body (one SDK sends it) is ignored, as
  // are other keys the SDKs add. Missing fields are reported before malformed ones.
  SyncRequest& r = parsed.request;
  r.scope = scope;
  r.group_uuid = std::string(path_group_uuid);
  if (auto e = CheckUuid(scope == SyncScope::kGroup ? "the path's groupUuid" : "the path's uuid",
                         r.group_uuid)) {
    parsed.error = std::move(e);
    return parsed;
  }
  std::optional<ApiError> e = GetStringField(*action, "srcBackupStorageUuid", &r.src_uuid);
  if (!e) e = GetStringField(*action, "dstBackupStorageUuid", &r.dst_uuid);
  if (!e) e = CheckRequestUuids(r);
  // The reference page puts the tags at the top level, the Java SDK inside the action object.
  if (!e) e = AppendTags(root, "systemTags", "(top level)", &r.system_tags);
  if (!e) e = AppendTags(*action, "systemTags", "(in the action)", &r.system_tags);
  if (!e) e = AppendTags(root, "userTags", "(top level)", &r.user_tags);
  if (!e) e = AppendTags(*action, "userTags", "(in the action)", &r.user_tags);
  if (e) {
    parsed.error = std::move(e);
    parsed.request = SyncRequest{};
  }
  return parsed;
}

Json ResultBody(const SyncResult& result, bool with_schema) {
  switch (result.shape) {
    case SyncResult::Shape::kInventories:
      return SuccessBody(result.inventories, with_schema);
    case SyncResult::Shape::kInventory: {
      Json body;
      body["inventory"] = result.inventories.empty() ? Json::object() : result.inventories[0];
      if (!with_schema) return body;
      Json schema = Json::object();
      schema["inventory"] = kVolumeBackupClass;
      const auto refs = body["inventory"].find("backupStorageRefs");
      if (refs != body["inventory"].end() && refs->is_array()) {
        for (size_t j = 0; j < refs->size(); ++j) {
          schema[absl::StrCat("inventory.backupStorageRefs[", j, "]")] = kStorageRefClass;
        }
      }
      body["schema"] = std::move(schema);
      return body;
    }
    case SyncResult::Shape::kNothing:
      break;
  }
  // The platform's delete events carry no fields: {} (and an empty schema when asked).
  Json body = Json::object();
  if (with_schema) body["schema"] = Json::object();
  return body;
}

Json SuccessBody(const Json& inventories, bool with_schema) {
  Json body;
  body["inventories"] = inventories;
  if (!with_schema) return body;
  // One entry per element, each parent before its children: the Java SDK types what the map
  // names and throws on a path that does not exist.
  Json schema = Json::object();
  for (size_t i = 0; i < inventories.size(); ++i) {
    const std::string inv = absl::StrCat("inventories[", i, "]");
    schema[inv] = kVolumeBackupClass;
    const auto refs = inventories[i].find("backupStorageRefs");
    if (refs == inventories[i].end() || !refs->is_array()) continue;
    for (size_t j = 0; j < refs->size(); ++j) {
      schema[absl::StrCat(inv, ".backupStorageRefs[", j, "]")] = kStorageRefClass;
    }
  }
  body["schema"] = std::move(schema);
  return body;
}

SyncService::SyncService(Registry registry, ServiceOptions options)
    : registry_(std::make_shared<const Registry>(std::move(registry))),
      options_(std::move(options)) {}

std::shared_ptr<const Registry> SyncService::registry() const {
  std::lock_guard<std::mutex> lock(registry_mu_);
  return registry_;
}

void SyncService::ReplaceRegistry(Registry registry) {
  auto next = std::make_shared<const Registry>(std::move(registry));
  std::lock_guard<std::mutex> lock(registry_mu_);
  registry_ = std::move(next);
}

SyncService::~SyncService() = default;

std::vector<std::unique_lock<std::mutex>> SyncService::LockStorages(const std::string& a,
                                                                    const std::string& b) {
  // A std::set orders the uuids (one global order: no two syncs can each hold one lock the
  // other waits for) and folds a == b into one lock.
  const std::set<std::string> uuids = {a, b};
  std::vector<std::mutex*> mutexes;
  {
    std::lock_guard<std::mutex> guard(locks_mu_);
    for (const std::string& uuid : uuids) {
      auto& m = storage_locks_[uuid];
      if (m == nullptr) m = std::make_unique<std::mutex>();
      mutexes.push_back(m.get());  // never freed before the service: the pointer stays valid
    }
  }
  std::vector<std::unique_lock<std::mutex>> locks;
  for (std::mutex* m : mutexes) locks.emplace_back(*m);
  return locks;
}

DeleteOutcome SyncService::Delete(const std::string& storage_uuid, engine::DeleteKind kind,
                                  const std::string& uuid) {
  DeleteOutcome out;
  const bool group = kind == engine::DeleteKind::kGroup;
  if (auto e = CheckUuid("backupStorageUuid", storage_uuid)) {
    out.error = *std::move(e);
    return out;
  }
  if (auto e = CheckUuid(group ? "groupUuid" : "uuid", uuid)) {
    out.error = *std::move(e);
    return out;
  }
  const std::shared_ptr<const Registry> registry = this->registry();
  const BackupStorage* storage = registry->Find(storage_uuid);
  if (storage == nullptr) {
    out.error =
        MakeError(kSysNotFound, absl::StrCat("backup storage ", storage_uuid, " is not known"));
    return out;
  }
  const auto locks = LockStorages(storage->uuid, storage->uuid);
  auto opened = OpenStorage(*storage, /*writable=*/true, options_.queue, nullptr);
  if (!opened.ok()) {
    out.error = StatusError(
        absl::StrCat("cannot open backup storage ", storage->uuid, " (", Place(*storage), ")"),
        opened.status());
    return out;
  }
  engine::Store& store = opened->store();
  absl::StatusOr<engine::DeleteResult> removed =
      group ? store.DeleteGroup(uuid) : store.DeleteBackup(uuid);
  const absl::Status closed = opened->store().Close();
  const std::string what =
      absl::StrCat(group ? "group " : "volume backup ", uuid, " in backup storage ", storage->uuid);
  if (!removed.ok()) {
    out.error = absl::IsFailedPrecondition(removed.status())
                    ? MakeError(kSysOperationFailed, std::string(removed.status().message()))
                    : StatusError(absl::StrCat("cannot delete ", what), removed.status());
    return out;
  }
  if (!closed.ok()) {
    out.error = StatusError(absl::StrCat("deleted ", what, " but closing failed"), closed);
    return out;
  }
  out.removed = *std::move(removed);
  return out;
}

SyncResult SyncService::Sync(const SyncRequest& request, const engine::ProgressFn* progress) {
  SyncResult result;
  auto fail = [&result](ApiError error) {
    result.error = std::move(error);
    result.inventories = Json::array();
    return std::move(result);
  };
  if (auto e = CheckRequestUuids(request)) return fail(*std::move(e));
  const bool one_backup = request.scope == SyncScope::kBackup;
  if (one_backup) result.shape = SyncResult::Shape::kInventory;
  const std::string& group = request.group_uuid;  // or the volume backup
  const std::shared_ptr<const Registry> registry = this->registry();
  const BackupStorage* src = registry->Find(request.src_uuid);
  if (src == nullptr) {
    return fail(MakeError(kSysNotFound, absl::StrCat("source backup storage ", request.src_uuid,
                                                     " (srcBackupStorageUuid) is not known")));
  }
  const BackupStorage* dst = registry->Find(request.dst_uuid);
  if (dst == nullptr) {
    return fail(
        MakeError(kSysNotFound, absl::StrCat("destination backup storage ", request.dst_uuid,
                                             " (dstBackupStorageUuid) is not known")));
  }

  // Held until the stores are closed, so the next sync on either storage finds them free (a
  // local store admits one writer) and sees everything this one wrote.
  const auto locks = LockStorages(src->uuid, dst->uuid);

  // The source first, and all its checks: a request that fails them does not touch the
  // destination (opening a local store writable and closing it rewrites its index snapshot).
  auto src_store = OpenStorage(*src, /*writable=*/false, options_.queue, nullptr,
                               /*direct_reads=*/dst->remote || dst->rados);
  if (!src_store.ok()) {
    return fail(StatusError(
        absl::StrCat("cannot open source backup storage ", src->uuid, " (", Place(*src), ")"),
        src_store.status()));
  }
  engine::Store& from = src_store->store();
  std::vector<engine::VolumeBackupMeta> metas;
  if (one_backup) {
    auto manifest = from.OpenManifest(group);
    if (absl::IsNotFound(manifest.status())) {
      return fail(MakeError(
          kSysNotFound,
          absl::StrCat("volume backup ", group, " not found in backup storage ", src->uuid)));
    }
    if (!manifest.ok()) {
      return fail(StatusError(
          absl::StrCat("cannot read volume backup ", group, " in backup storage ", src->uuid),
          manifest.status()));
    }
    metas.push_back((*manifest)->meta());
  } else if (auto e = ReadGroupMetas(from, group, src->uuid, &metas)) {
    return fail(*std::move(e));
  }

  // One pool per sync: WorkerPool's Run/Start/Wait must come from one thread at a time, and
  // syncs between disjoint storages run at once on different threads, so a shared pool would
  // need a lock of its own that serializes exactly those syncs. A pool's threads cost little
  // next to a sync. Only a local destination uses it (it checks received records there).
  std::unique_ptr<engine::WorkerPool> pool;
  if (!dst->remote) {
    pool = std::make_unique<engine::WorkerPool>(
        options_.pool_workers > 0 ? options_.pool_workers : engine::WorkerPool::DefaultWorkers());
  }
  auto dst_store = OpenStorage(*dst, /*writable=*/true, options_.queue, pool.get());
  if (!dst_store.ok()) {
    return fail(StatusError(
        absl::StrCat("cannot open destination backup storage ", dst->uuid, " (", Place(*dst), ")"),
        dst_store.status()));
  }

  // The copy. A local-to-local copy is not paced: the registry's rate limit is for daemon links,
  // where the RemoteStore paces its own wire bytes.
  engine::CopyOptions copy;
  copy.verify = registry->verify;
  copy.deadline = request.deadline;
  absl::Status st =
      one_backup
          ? engine::CopyBackup(from, dst_store->store(), group, copy, &result.stats, progress)
          : engine::CopyGroup(from, dst_store->store(), group, copy, &result.stats, progress);
  // After a failure a local destination is cut back to what it held before (the copier makes
  // records durable only at its end): a failed call leaves it unchanged, and a disk that filled
  // up gets its space back. (A daemon keeps what it received, for the next run to reuse.)
  if (!st.ok() && dst_store->local) st.Update(dst_store->local->Rollback());
  absl::Status closed = dst_store->store().Close();
  const std::string what = absl::StrCat(one_backup ? "volume backup " : "group ", group);
  const std::string context =
      absl::StrCat("sync of ", what, " to backup storage ", dst->uuid, " failed");
  if (absl::IsResourceExhausted(st)) {
    // Out of space on the destination: the platform's own words and code for a backup storage
    // short of capacity (SYS.1006; BackupStorageBase, BackupStorageCapacityUpdater), with the
    // cause after them (its "No space left on device" elaboration matches that text).
    return fail(MakeError(kSysOperationFailed,
                          absl::StrCat("the backup storage[uuid:", dst->uuid, ", name:", dst->name,
                                       "] has not enough capacity to sync the ",
                                       one_backup ? "volume backup" : "group", "[uuid:", group,
                                       "]: ", st.message())));
  }
  if (absl::IsDeadlineExceeded(st)) {
    return fail(MakeError(
        kSysTimeout,
        absl::StrCat(context, ": the call's timeout (X-API-Timeout) ", "passed: ", st.message())));
  }
  if (!st.ok()) return fail(StatusError(context, st));
  if (!closed.ok()) return fail(StatusError(context, closed));

  for (const engine::VolumeBackupMeta& meta : metas) {
    result.inventories.push_back(Inventory(meta, {src->uuid, dst->uuid}, registry->time_zone));
  }
  return result;
}

SyncResult SyncService::DeleteEverywhere(engine::DeleteKind kind, const std::string& uuid,
                                         const std::vector<std::string>& storage_uuids) {
  SyncResult result;
  result.shape = SyncResult::Shape::kNothing;
  const bool group = kind == engine::DeleteKind::kGroup;
  if (auto e = CheckUuid(group ? "groupUuid" : "uuid", uuid)) {
    result.error = *std::move(e);
    return result;
  }
  const std::shared_ptr<const Registry> registry = this->registry();
  std::vector<std::string> targets = storage_uuids;
  if (targets.empty()) {
    for (const BackupStorage& s : registry->storages) targets.push_back(s.uuid);
  }
  // Every named storage known before anything is deleted, in the platform's words.
  std::vector<std::string> unknown;
  for (const std::string& t : targets) {
    if (registry->Find(t) == nullptr) unknown.push_back(t);
  }
  if (!unknown.empty()) {
    result.error =
        MakeError(kSysNotFound,
                  absl::StrCat("invalid field[backupStorageUuids], resource[uuids:[",
                               absl::StrJoin(unknown, ","), "], type:BackupStorageVO] not found"));
    return result;
  }
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  size_t deleted = 0;
  std::optional<ApiError> first_failure;
  for (const std::string& t : targets) {
    DeleteOutcome one = Delete(t, kind, uuid);
    if (!one.error.has_value()) {
      ++deleted;
    } else if (one.error->code != kSysNotFound && !first_failure.has_value()) {
      first_failure = std::move(one.error);
    }
  }
  if (first_failure.has_value()) {
    result.error = std::move(first_failure);
  } else if (deleted == 0 && !group) {
    result.error = MakeError(kSysNotFound, absl::StrCat("invalid field[uuid], resource[uuid:", uuid,
                                                        ", type:VolumeBackupVO] not found"));
  }
  return result;
}

namespace {

// The metas of the volume backups the groups of `store` name that `wanted` accepts (each once; one
// deleted meanwhile is left out): what a daemon too old for LIST_BACKUPS can tell.
absl::StatusOr<std::vector<engine::VolumeBackupMeta>> GroupedBackupMetas(
    engine::Store& store, const std::function<bool(const std::string& uuid)>& wanted) {
  CF_ASSIGN_OR_RETURN(std::vector<std::string> groups, store.ListGroups());
  std::vector<engine::VolumeBackupMeta> metas;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& g : groups) {
    auto record = store.GetGroup(g);
    if (absl::IsNotFound(record.status())) continue;  // deleted meanwhile
    if (!record.ok()) return record.status();
    for (const std::string& b : record->volume_uuids) {
      if (!seen.insert(b).second || !wanted(b)) continue;
      auto manifest = store.OpenManifest(b);
      if (absl::IsNotFound(manifest.status())) continue;
      if (!manifest.ok()) return manifest.status();
      metas.push_back((*manifest)->meta());
    }
  }
  return metas;
}

}  // namespace

std::optional<ApiError> SyncService::ListInventories(const std::vector<std::string>& storage_uuids,
                                                     std::vector<Json>* out) {
  const std::shared_ptr<const Registry> registry = this->registry();
  struct Found {
    engine::VolumeBackupMeta meta;
    std::vector<std::string> storages;
  };
  std::map<std::string, Found> found;  // by volume backup uuid
  for (const BackupStorage& storage : registry->storages) {
    if (!storage_uuids.empty() && std::find(storage_uuids.begin(), storage_uuids.end(),
                                            storage.uuid) == storage_uuids.end()) {
      continue;
    }
    const auto locks = LockStorages(storage.uuid, storage.uuid);
    auto opened = OpenStorage(storage, /*writable=*/false, options_.queue, nullptr);
    const auto failed = [&](const absl::Status& st) {
      return StatusError(
          absl::StrCat("cannot list backup storage ", storage.uuid, " (", Place(storage), ")"), st);
    };
    if (!opened.ok()) return failed(opened.status());
    engine::Store& store = opened->store();
    // Every volume backup's meta, grouped or not (a pool reads them all from its catalog); a
    // daemon too old for LIST_BACKUPS tells only those its groups name.
    // A backup found on an earlier storage needs only this one added: its meta is not read again.
    const auto wanted = [&](const std::string& uuid) {
      auto it = found.find(uuid);
      if (it == found.end()) return true;
      auto& storages = it->second.storages;
      if (std::find(storages.begin(), storages.end(), storage.uuid) == storages.end()) {
        storages.push_back(storage.uuid);
      }
      return false;
    };
    absl::StatusOr<std::vector<engine::VolumeBackupMeta>> metas = store.ListBackupMetas(wanted);
    if (absl::IsUnimplemented(metas.status())) metas = GroupedBackupMetas(store, wanted);
    if (!metas.ok()) return failed(metas.status());
    for (engine::VolumeBackupMeta& meta : *metas) {
      const std::string uuid = meta.uuid;
      found.emplace(uuid, Found{std::move(meta), {storage.uuid}});
    }
    if (absl::Status closed = opened->store().Close(); !closed.ok()) return failed(closed);
  }
  for (const auto& [uuid, f] : found) {
    out->push_back(Inventory(f.meta, f.storages, registry->time_zone));
  }
  return std::nullopt;
}

QueryAnswer SyncService::Query(const VolumeBackupQuery& query) {
  std::vector<Json> inventories;
  if (auto e = ListInventories(QueriedStorages(query), &inventories)) {
    QueryAnswer failed;
    failed.error = *std::move(e);
    return failed;
  }
  return RunVolumeBackupQuery(query, std::move(inventories));
}

SyncResult SyncService::Call(std::string_view path_group_uuid, std::string_view body,
                             const engine::ProgressFn* progress, std::string* bad_request,
                             SyncScope scope) {
  ParsedAction parsed = ParseSyncAction(path_group_uuid, body, scope);
  if (!parsed.bad_request.empty()) {
    if (bad_request != nullptr) *bad_request = std::move(parsed.bad_request);
    return SyncResult{};
  }
  if (parsed.error) {
    SyncResult result;
    result.error = std::move(parsed.error);
    return result;
  }
  return Sync(parsed.request, progress);
}

}  // namespace chunkferry::control
