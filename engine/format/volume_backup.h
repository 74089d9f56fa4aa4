// What the store knows about one volume backup: the VolumeBackupInventory fields of the sync API
// contract (shared/api), its install path and how its volume was cut. Stored in the volume's
// manifest; the control module turns it into inventory JSON.
#ifndef CHUNKFERRY_ENGINE_FORMAT_VOLUME_BACKUP_H_
#define CHUNKFERRY_ENGINE_FORMAT_VOLUME_BACKUP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/format/kv_block.h"

namespace chunkferry::engine {

struct VolumeBackupMeta {
  std::string uuid;         // the volume backup
  std::string volume_uuid;  // the backed-up volume
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::string type = "Root";  // Root, Data, Memory, Cache
  std::string state = "Enabled";
  std::string status = "Ready";
  uint64_t size = 0;  // bytes of the volume image
  std::optional<std::string> metadata;
  std::string group_uuid;
  std::string mode = "full";
  std::optional<std::string> vm_instance_uuid;
  int64_t create_date = 0;   // seconds since the epoch
  int64_t last_op_date = 0;  // seconds since the epoch
  std::string install_path;  // kept identical on every store that holds the backup
  std::string chunker;       // ChunkerSpec text the volume was cut with
  KvPairs extra;             // keys this build does not know, kept as they were
};

// True for 32 lowercase hex characters: the platform's uuid form.
bool IsValidUuid(absl::string_view s);
// Makes a random uuid in that form: 128 bits from the kernel's CSPRNG (getrandom).
std::string NewUuid();

// Checks uuids, type and mode; InvalidArgument naming the field.
[[nodiscard]] absl::Status ValidateMeta(const VolumeBackupMeta& meta);

KvPairs MetaToKv(const VolumeBackupMeta& meta);
// DataLoss when a required key is missing or a number does not parse.
[[nodiscard]] absl::StatusOr<VolumeBackupMeta> MetaFromKv(const KvPairs& kv,
                                                          absl::string_view what);

// The install path a new backup gets; the same on every store that holds it.
std::string DefaultInstallPath(absl::string_view group_uuid, absl::string_view backup_uuid);

// The group: which volume backups make up one VM backup. Written last, so a group is visible
// only when every volume it names is durable.
struct GroupRecord {
  std::string group_uuid;
  std::optional<std::string> vm_instance_uuid;
  std::vector<std::string> volume_uuids;  // in order: the Root volume first
  int64_t create_date = 0;
};

// Whether `grown` only adds volumes to `old`: the same group, VM and date, every old volume still
// named and in its old order. The one way a published group record may change.
bool GroupOnlyGrows(const GroupRecord& old, const GroupRecord& grown);

// Group file: magic "CFGR", u16 version, u16 reserved, KV block, u64 XXH3-64 of all before it.
std::string EncodeGroup(const GroupRecord& group);
[[nodiscard]] absl::StatusOr<GroupRecord> DecodeGroup(absl::string_view bytes,
                                                      absl::string_view what);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_FORMAT_VOLUME_BACKUP_H_
