#include "control/inventory.h"

#include <ctime>

namespace chunkferry::control {

std::string FormatDate(int64_t seconds) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const time_t t = static_cast<time_t>(seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  const int hour12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s %d, %d %d:%02d:%02d %s", kMonths[tm.tm_mon], tm.tm_mday,
                tm.tm_year + 1900, hour12, tm.tm_min, tm.tm_sec, tm.tm_hour < 12 ? "AM" : "PM");
  return buf;
}

Json VolumeBackupInventory(const engine::VolumeBackupMeta& m, const std::vector<StorageRef>& refs) {
  Json j;
  auto put_opt = [&j](const char* key, const std::optional<std::string>& v) {
    if (v) j[key] = *v;
  };
  j["uuid"] = m.uuid;
  j["volumeUuid"] = m.volume_uuid;
  put_opt("name", m.name);
  put_opt("description", m.description);
  j["type"] = m.type;
  j["state"] = m.state;
  j["status"] = m.status;
  j["size"] = m.size;
  put_opt("metadata", m.metadata);
  j["groupUuid"] = m.group_uuid;
  j["mode"] = m.mode;
  put_opt("vmInstanceUuid", m.vm_instance_uuid);
  j["createDate"] = FormatDate(m.create_date);
  j["lastOpDate"] = FormatDate(m.last_op_date);
  Json list = Json::array();
  for (const auto& r : refs) {
    Json ref;
    ref["volumeBackupUuid"] = m.uuid;
    ref["backupStorageUuid"] = r.backup_storage_uuid;
    ref["installPath"] = r.install_path;
    ref["status"] = r.status;
    ref["createDate"] = FormatDate(r.create_date);
    ref["lastOpDate"] = FormatDate(r.last_op_date);
    list.push_back(std::move(ref));
  }
  j["backupStorageRefs"] = std::move(list);
  return j;
}

}  // namespace chunkferry::control
