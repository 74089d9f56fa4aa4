// Builds the VolumeBackupInventory JSON of the sync API contract
// (shared/api/SyncVmBackupFromImageStoreBackupStorage.md): fields in the contract's order, null
// fields omitted, sizes as integers, dates as "Nov 14, 2017 10:20:57 PM" in the server's own
// time zone (as the platform's management node writes them: local time, no zone in the text).
#ifndef CHUNKFERRY_CONTROL_INVENTORY_H_
#define CHUNKFERRY_CONTROL_INVENTORY_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/format/volume_backup.h"

namespace chunkferry::control {

using Json = nlohmann::ordered_json;

// One backup storage that holds a volume backup (VolumeBackupStorageRefInventory).
struct StorageRef {
  std::string backup_storage_uuid;
  std::string install_path;
  std::string status = "Ready";
  int64_t create_date = 0;
  int64_t last_op_date = 0;
};

// Formats seconds since the epoch as wall-clock time in `zone`, the way the platform's clients
// parse dates (Gson's default US format).
std::string FormatDate(int64_t seconds, const absl::TimeZone& zone);

// The inventory of one volume backup with its storage refs, dates in `zone`.
Json VolumeBackupInventory(const engine::VolumeBackupMeta& meta,
                           const std::vector<StorageRef>& refs, const absl::TimeZone& zone);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_INVENTORY_H_
