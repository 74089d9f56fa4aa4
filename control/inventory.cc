#include "control/inventory.h"

#include <cstdio>

#include "absl/time/civil_time.h"

namespace chunkferry::control {

std::string FormatDate(int64_t seconds, const absl::TimeZone& zone) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const absl::CivilSecond t = absl::ToCivilSecond(absl::FromUnixSeconds(seconds), zone);
  const int hour12 = t.hour() % 12 == 0 ? 12 : t.hour() % 12;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s %d, %lld %d:%02d:%02d %s", kMonths[t.month() - 1], t.day(),
                static_cast<long long>(t.year()), hour12, t.minute(), t.second(),
                t.hour() < 12 ? "AM" : "PM");
  return buf;
}

Json VolumeBackupInventory(const engine::VolumeBackupMeta& m, const std::vector<StorageRef>& refs,
                           const absl::TimeZone& zone) {
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
  j["createDate"] = FormatDate(m.create_date, zone);
  j["lastOpDate"] = FormatDate(m.last_op_date, zone);
  Json list = Json::array();
  for (const auto& r : refs) {
    Json ref;
    ref["volumeBackupUuid"] = m.uuid;
    ref["backupStorageUuid"] = r.backup_storage_uuid;
    ref["installPath"] = r.install_path;
    ref["status"] = r.status;
    ref["createDate"] = FormatDate(r.create_date, zone);
    ref["lastOpDate"] = FormatDate(r.last_op_date, zone);
    list.push_back(std::move(ref));
  }
  j["backupStorageRefs"] = std::move(list);
  return j;
}

}  // namespace chunkferry::control
