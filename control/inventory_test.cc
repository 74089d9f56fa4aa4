#include "control/inventory.h"

#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

TEST(InventoryTest, FormatsDatesLikeThePlatform) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  EXPECT_EQ(FormatDate(1510698057, utc), "Nov 14, 2017 10:20:57 PM");
  EXPECT_EQ(FormatDate(0, utc), "Jan 1, 1970 12:00:00 AM");
  EXPECT_EQ(FormatDate(43200, utc), "Jan 1, 1970 12:00:00 PM");
  // The platform's reference page renders the instant 1510669257 (14:20:57 UTC) in its
  // management node's zone, UTC+8: the same text, 8 hours apart.
  absl::TimeZone shanghai;
  ASSERT_TRUE(absl::LoadTimeZone("Asia/Shanghai", &shanghai));
  EXPECT_EQ(FormatDate(1510669257, shanghai), "Nov 14, 2017 10:20:57 PM");
  EXPECT_EQ(FormatDate(1510669257, utc), "Nov 14, 2017 2:20:57 PM");
}

TEST(InventoryTest, KeepsContractOrderAndOmitsNulls) {
  engine::VolumeBackupMeta m;
  m.uuid = "0123456789abcdef0123456789abcdef";
  m.volume_uuid = "11111111111111111111111111111111";
  m.name = "root";
  m.type = "Root";
  m.size = 1073741824;
  m.group_uuid = "22222222222222222222222222222222";
  m.create_date = 1510698057;
  m.last_op_date = 1510698057;
  StorageRef ref{"33333333333333333333333333333333", "chunkferry://x", "Ready", 1510698057,
                 1510698057};
  const std::string json = VolumeBackupInventory(m, {ref}, absl::UTCTimeZone()).dump();
  EXPECT_EQ(
      json,
      "{\"uuid\":\"0123456789abcdef0123456789abcdef\","
      "\"volumeUuid\":\"11111111111111111111111111111111\",\"name\":\"root\","
      "\"type\":\"Root\",\"state\":\"Enabled\",\"status\":\"Ready\",\"size\":1073741824,"
      "\"groupUuid\":\"22222222222222222222222222222222\",\"mode\":\"full\","
      "\"createDate\":\"Nov 14, 2017 10:20:57 PM\",\"lastOpDate\":\"Nov 14, 2017 10:20:57 PM\","
      "\"backupStorageRefs\":[{\"volumeBackupUuid\":\"0123456789abcdef0123456789abcdef\","
      "\"backupStorageUuid\":\"33333333333333333333333333333333\","
      "\"installPath\":\"chunkferry://x\",\"status\":\"Ready\","
      "\"createDate\":\"Nov 14, 2017 10:20:57 PM\","
      "\"lastOpDate\":\"Nov 14, 2017 10:20:57 PM\"}]}");
}

}  // namespace
}  // namespace chunkferry::control
