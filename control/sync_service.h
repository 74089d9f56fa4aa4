// The sync API's one call, SyncVmBackupFromImageStoreBackupStorage, independent of how it
// arrives (HTTP, the C ABI): parse and validate the request, open the two backup storages of the
// registry, check the group, copy it with the engine's copier (all volumes in one pass, the group
// visible on the destination only when every volume is durable there), and build the
// inventories. Contract: shared/api/SyncVmBackupFromImageStoreBackupStorage.md.
#ifndef CHUNKFERRY_CONTROL_SYNC_SERVICE_H_
#define CHUNKFERRY_CONTROL_SYNC_SERVICE_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/api_error.h"
#include "control/registry.h"
#include "control/volume_backup_query.h"
#include "engine/pipeline/copier.h"
#include "engine/store/progress.h"
#include "io/queue.h"

namespace chunkferry::control {

// The body keys naming the two syncs: a VM backup group (SyncVmBackupFromImageStoreBackupStorage,
// PUT /v1/vm-backups/{groupUuid}/actions) and one volume backup
// (SyncBackupFromImageStoreBackupStorage, PUT /v1/volume-backups/{uuid}/actions).
inline constexpr std::string_view kSyncActionKey = "syncVmBackupFromImageStoreBackupStorage";
inline constexpr std::string_view kSyncBackupActionKey = "syncBackupFromImageStoreBackupStorage";

// What a sync copies: a whole group (the result: its inventories) or one volume backup (the
// result: its inventory).
enum class SyncScope { kGroup, kBackup };

struct SyncRequest {
  // From the path: it wins over one inside the body. The group's uuid, or the volume backup's.
  std::string group_uuid;
  std::string src_uuid;                  // srcBackupStorageUuid
  std::string dst_uuid;                  // dstBackupStorageUuid
  std::vector<std::string> system_tags;  // top level of the body or inside the action object
  std::vector<std::string> user_tags;
  SyncScope scope = SyncScope::kGroup;
  // The call's bound (X-API-Timeout, or the server's apiTimeout): past it the copy stops and the
  // call fails with SYS.1001, nothing published. The epoch: none.
  std::chrono::steady_clock::time_point deadline{};
};

// What a request (path group uuid + body) asks for. Exactly one of: `bad_request` not empty (the
// body is not a JSON object or names no known action: HTTP answers 400 with this plain text),
// `error` set (a missing or malformed field: SYS.1007), or `request` filled.
struct ParsedAction {
  std::string bad_request;
  std::optional<ApiError> error;
  SyncRequest request;
};
ParsedAction ParseSyncAction(std::string_view path_group_uuid, std::string_view body,
                             SyncScope scope = SyncScope::kGroup);

// The result of any call of the API (what a job holds): its error, or what its 200 carries.
struct SyncResult {
  // How the 200 body is shaped: {"inventories": [...]} (a group's sync), {"inventory": {...}}
  // (one volume backup's sync: inventories[0]), or {} (the deletes).
  enum class Shape { kInventories, kInventory, kNothing } shape = Shape::kInventories;
  std::optional<ApiError> error;     // set: the call failed, `inventories` is empty
  Json inventories = Json::array();  // one VolumeBackupInventory per volume, Root first
  engine::CopyStats stats;
};

// The 200 body of `result` by its shape, with the schema map when `with_schema`.
Json ResultBody(const SyncResult& result, bool with_schema);

// The 200 body: {"inventories": [...]}, plus, when `with_schema` (the request carried
// `X-JSON-Schema: true`), the "schema" map of the contract: an entry for every inventories[i]
// and every inventories[i].backupStorageRefs[j], each parent before its children.
Json SuccessBody(const Json& inventories, bool with_schema);

struct DeleteOutcome {
  std::optional<ApiError> error;  // set: nothing was deleted
  engine::DeleteResult removed;
};

struct ServiceOptions {
  io::QueueOptions queue;   // for the stores the service opens
  size_t pool_workers = 0;  // checking threads for local destinations; 0: one per core
};

// Thread-safe. Syncs that touch a common backup storage run one after the other (a local store
// admits one writer; two syncs of one group to one destination must not both send its chunks);
// syncs between disjoint storages run at once. Stores are opened for each sync and closed after
// it, so the CLI can use them between calls.
class SyncService {
 public:
  SyncService(Registry registry, ServiceOptions options);
  ~SyncService();
  SyncService(const SyncService&) = delete;
  SyncService& operator=(const SyncService&) = delete;

  // The registry in force (a snapshot: a sync keeps the one it started with).
  std::shared_ptr<const Registry> registry() const;
  // Puts `registry` in force for the calls that start from now on (SIGHUP of `chunkferry api`):
  // sessions removed from it are refused at once; syncs already running finish as they began.
  void ReplaceRegistry(Registry registry);

  // Runs one sync (of a group, or of one volume backup: request.scope). Errors: unknown group,
  // volume backup or storage → SYS.1003; a group without exactly one Root
  // volume backup → SYS.1006; invalid fields → SYS.1007; a failure while copying → the code of
  // ErrorFromStatus, with the destination holding no part of the group it did not hold before.
  // A group the destination already holds succeeds with nothing copied. `progress` (may be null)
  // is called from this thread.
  SyncResult Sync(const SyncRequest& request, const engine::ProgressFn* progress);

  // Deletes group `uuid` with its volume backups (those no other group names), or volume backup
  // `uuid` that no group names, from backup storage `storage_uuid`. Errors: unknown storage,
  // group or backup → SYS.1003; a malformed uuid → SYS.1007; a volume backup a group names →
  // SYS.1006 naming the group; others → the code of ErrorFromStatus. Waits for syncs touching
  // the storage, as they wait for each other.
  DeleteOutcome Delete(const std::string& storage_uuid, engine::DeleteKind kind,
                       const std::string& uuid);
  // The platform's DeleteVmBackup (kGroup) and DeleteVolumeBackup (kBackup): deletes `uuid` from
  // each of `storage_uuids` (none: every storage of the registry) that holds it. A result of
  // shape kNothing. Errors: a storage the registry lacks → SYS.1003 before anything is deleted;
  // a volume backup no storage holds → SYS.1003 (a group no storage holds is deleted already,
  // as on the platform); a volume backup a group names → SYS.1006; storages that fail → the
  // first failure, after trying every storage.
  SyncResult DeleteEverywhere(engine::DeleteKind kind, const std::string& uuid,
                              const std::vector<std::string>& storage_uuids);

  // Every volume backup the registry's storages hold (only those of `storage_uuids` when not
  // empty; uuids the registry lacks are skipped), one inventory each whose refs name every
  // storage holding it: what QueryVolumeBackup searches (a daemon too old for LIST_BACKUPS tells
  // only the volume backups its groups name).
  // Errors: a storage that cannot be opened or read, with the code of ErrorFromStatus.
  std::optional<ApiError> ListInventories(const std::vector<std::string>& storage_uuids,
                                          std::vector<Json>* out);

  // QueryVolumeBackup: `query` over the inventories of the storages it may concern.
  QueryAnswer Query(const VolumeBackupQuery& query);

  // Parses the body and runs the sync: what the C ABI and HTTP call. When the body is a bad
  // request, `bad_request` gets its text and the result is empty.
  SyncResult Call(std::string_view path_group_uuid, std::string_view body,
                  const engine::ProgressFn* progress, std::string* bad_request,
                  SyncScope scope = SyncScope::kGroup);

 private:
  // The locks of `a` and `b`, taken in uuid order.
  std::vector<std::unique_lock<std::mutex>> LockStorages(const std::string& a,
                                                         const std::string& b);

  mutable std::mutex registry_mu_;
  std::shared_ptr<const Registry> registry_;  // guarded by registry_mu_
  ServiceOptions options_;
  std::mutex locks_mu_;
  std::map<std::string, std::unique_ptr<std::mutex>> storage_locks_;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_SYNC_SERVICE_H_
