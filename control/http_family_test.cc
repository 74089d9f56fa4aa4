// The rest of the backup family over HTTP, as the platform's SDK calls it: the single-volume sync
// (SyncBackupFromImageStoreBackupStorage, {"inventory": ...}), DeleteVmBackup and
// DeleteVolumeBackup (DELETE with backupStorageUuids and deleteMode in the query string, {}),
// each synchronous and as a job, with their error rows, checked against the stores themselves;
// and QueryVolumeBackup over what the stores hold.
#include <httplib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/http_api_test_fixture.h"
#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

class HttpFamilyTest : public HttpApiTest {
 protected:
  std::string BackupBody(const std::string& src, const std::string& dst) const {
    return Json{{std::string(kSyncBackupActionKey),
                 {{"srcBackupStorageUuid", src}, {"dstBackupStorageUuid", dst}}}}
        .dump();
  }
  std::string BackupPath(const std::string& uuid) const {
    return absl::StrCat("/zstack/v1/volume-backups/", uuid, "/actions");
  }
  httplib::Headers Auth(httplib::Headers extra = {}) const {
    extra.emplace("Authorization", "OAuth " + session_);
    return extra;
  }
  httplib::Result Delete(const std::string& path, const httplib::Headers& headers) {
    auto r = client_->Delete(path.c_str(), headers);
    EXPECT_TRUE(r) << "no response: " << httplib::to_string(r.error());
    return r;
  }
  // Whether the store at `dir` holds group `group` / volume backup `backup`.
  bool HoldsGroup(const std::string& dir, const std::string& group) {
    auto store = testing::OpenStore(dir, io::Backend::kThreads, false, &pool_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() && (*store)->GetGroup(group).ok();
  }
  bool HoldsBackup(const std::string& dir, const std::string& backup) {
    auto store = testing::OpenStore(dir, io::Backend::kThreads, false, &pool_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() && (*store)->OpenManifest(backup).ok();
  }
  std::string ErrorCode(const httplib::Result& r) {
    return ParseJson(r->body)["error"].value("code", "");
  }
};

TEST_F(HttpFamilyTest, OneVolumeBackupSyncsAloneAndAnswersItsInventory) {
  StartServer();
  const std::string data = volumes_[1].backup_uuid;
  auto r =
      Put(BackupPath(data), BackupBody(src_uuid_, dst_uuid_), Auth({{"X-JSON-Schema", "true"}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json body = ParseJson(r->body);
  ASSERT_TRUE(body.contains("inventory")) << r->body;
  EXPECT_FALSE(body.contains("inventories"));
  EXPECT_EQ(body["inventory"].value("uuid", ""), data);
  EXPECT_EQ(body["inventory"].value("groupUuid", ""), group_);
  ASSERT_EQ(body["inventory"]["backupStorageRefs"].size(), 2u);
  EXPECT_EQ(body["schema"].value("inventory", ""),
            "org.zstack.header.storage.backup.VolumeBackupInventory");
  EXPECT_EQ(body["schema"].value("inventory.backupStorageRefs[1]", ""),
            "org.zstack.header.storage.backup.VolumeBackupStorageRefInventory");
  // The destination holds that volume backup and no group yet; its group's sync then publishes
  // the group over the same manifest.
  EXPECT_TRUE(HoldsBackup(dst_, data));
  EXPECT_FALSE(HoldsBackup(dst_, volumes_[0].backup_uuid));
  EXPECT_FALSE(HoldsGroup(dst_, group_));
  auto again = Put(BackupPath(data), BackupBody(src_uuid_, dst_uuid_), Auth());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
  auto group = PutSync(group_, dst_uuid_);
  ASSERT_TRUE(group);
  ASSERT_EQ(group->status, 200) << group->body;
  EXPECT_TRUE(HoldsGroup(dst_, group_));

  // As a job: 202, then the poll answers {"inventory"}.
  const std::string job = engine::NewUuid();
  auto put = Put(BackupPath(volumes_[2].backup_uuid), BackupBody(src_uuid_, dst2_uuid_),
                 Auth({{"X-Job-UUID", job}}));
  ASSERT_TRUE(put);
  auto done = Poll(JobPathOf(put, job));
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  EXPECT_EQ(ParseJson(done->body)["inventory"].value("uuid", ""), volumes_[2].backup_uuid);
  EXPECT_TRUE(HoldsBackup(dst2_, volumes_[2].backup_uuid));
}

TEST_F(HttpFamilyTest, OneVolumeBackupSyncErrorRows) {
  StartServer();
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  const std::string data = volumes_[1].backup_uuid;
  // The group's action key on the volume backup's path names no action of that path.
  auto wrong_key = Put(BackupPath(data), Body(src_uuid_, dst_uuid_), Auth());
  ASSERT_TRUE(wrong_key);
  EXPECT_EQ(wrong_key->status, 400);
  EXPECT_TRUE(absl::StrContains(wrong_key->body, std::string(kSyncBackupActionKey)))
      << wrong_key->body;
  struct Row {
    std::string uuid, src, dst, code, details;
  };
  const std::string unknown = engine::NewUuid();
  for (const Row& row : {
           Row{unknown, src_uuid_, dst_uuid_, "SYS.1003", "volume backup " + unknown},
           Row{data, engine::NewUuid(), dst_uuid_, "SYS.1003", "srcBackupStorageUuid"},
           Row{data, src_uuid_, engine::NewUuid(), "SYS.1003", "dstBackupStorageUuid"},
           Row{"not-a-uuid", src_uuid_, dst_uuid_, "SYS.1007", "the path's uuid"},
           Row{data, src_uuid_, src_uuid_, "SYS.1007", ""},
       }) {
    auto r = Put(BackupPath(row.uuid), BackupBody(row.src, row.dst), Auth());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(ErrorCode(r), row.code) << r->body;
    EXPECT_TRUE(absl::StrContains(r->body, row.details)) << r->body;
  }
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
}

TEST_F(HttpFamilyTest, DeleteVmBackupRemovesTheGroupFromTheNamedStorages) {
  StartServer();
  for (const auto& dst : {dst_uuid_, dst2_uuid_}) {
    auto r = PutSync(group_, dst);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  // As the SDK sends it: the list repeated, deleteMode and handleDependency once.
  const std::string path = absl::StrCat("/zstack/v1/vm-backups/", group_,
                                        "?deleteMode=Permissive&handleDependency=false",
                                        "&backupStorageUuids=", dst_uuid_);
  auto r = Delete(path, Auth({{"X-JSON-Schema", "true"}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, R"({"schema":{}})");
  EXPECT_FALSE(HoldsGroup(dst_, group_));
  EXPECT_FALSE(HoldsBackup(dst_, volumes_[0].backup_uuid));
  EXPECT_TRUE(HoldsGroup(dst2_, group_));
  EXPECT_TRUE(HoldsGroup(src_, group_));
  // A group no storage holds any more is deleted already (the platform answers success too).
  auto again = Delete(path, Auth());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
  EXPECT_EQ(again->body, "{}");

  // As a job, from both other storages named in the indexed form.
  const std::string job = engine::NewUuid();
  auto put =
      Delete(absl::StrCat("/zstack/v1/vm-backups/", group_, "?backupStorageUuids.0=", dst2_uuid_,
                          "&backupStorageUuids.1=", src_uuid_),
             Auth({{"X-Job-UUID", job}}));
  ASSERT_TRUE(put);
  auto done = Poll(JobPathOf(put, job));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200) << done->body;
  EXPECT_EQ(done->body, R"({"schema":{}})");  // Poll sends X-JSON-Schema
  EXPECT_FALSE(HoldsGroup(dst2_, group_));
  EXPECT_FALSE(HoldsGroup(src_, group_));
}

TEST_F(HttpFamilyTest, DeleteErrorRowsChangeNothing) {
  StartServer();
  auto synced = PutSync(group_, dst_uuid_);
  ASSERT_TRUE(synced);
  ASSERT_EQ(synced->status, 200) << synced->body;
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  const std::string stranger = engine::NewUuid();
  // A storage the registry lacks: nothing is deleted anywhere, in the platform's words.
  auto unknown_storage =
      Delete(absl::StrCat("/zstack/v1/vm-backups/", group_, "?backupStorageUuids=", dst_uuid_,
                          "&backupStorageUuids=", stranger),
             Auth());
  ASSERT_TRUE(unknown_storage);
  EXPECT_EQ(unknown_storage->status, 503);
  EXPECT_EQ(ErrorCode(unknown_storage), "SYS.1003");
  EXPECT_TRUE(absl::StrContains(unknown_storage->body, absl::StrCat("resource[uuids:[", stranger,
                                                                    "], type:BackupStorageVO]")))
      << unknown_storage->body;
  // A volume backup no storage holds.
  auto unknown_backup = Delete(absl::StrCat("/zstack/v1/volume-backups/", stranger), Auth());
  ASSERT_TRUE(unknown_backup);
  EXPECT_EQ(unknown_backup->status, 503);
  EXPECT_TRUE(absl::StrContains(unknown_backup->body,
                                absl::StrCat("resource[uuid:", stranger, ", type:VolumeBackupVO]")))
      << unknown_backup->body;
  // A volume backup its group names stays with the group.
  auto in_group = Delete(absl::StrCat("/zstack/v1/volume-backups/", volumes_[1].backup_uuid,
                                      "?backupStorageUuids=", dst_uuid_),
                         Auth());
  ASSERT_TRUE(in_group);
  EXPECT_EQ(in_group->status, 503);
  EXPECT_EQ(ErrorCode(in_group), "SYS.1006") << in_group->body;
  // A malformed uuid; a parameter sent twice; methods of the other routes.
  auto malformed = Delete("/zstack/v1/vm-backups/xyz", Auth());
  ASSERT_TRUE(malformed);
  EXPECT_EQ(ErrorCode(malformed), "SYS.1007") << malformed->body;
  auto twice = Delete(
      absl::StrCat("/zstack/v1/vm-backups/", group_, "?deleteMode=Permissive&deleteMode=Enforcing"),
      Auth());
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->status, 400);
  EXPECT_TRUE(absl::StrContains(twice->body, "deleteMode")) << twice->body;
  auto put_group = Put(absl::StrCat("/zstack/v1/vm-backups/", group_), "{}", Auth());
  ASSERT_TRUE(put_group);
  EXPECT_EQ(put_group->status, 405);
  EXPECT_EQ(put_group->get_header_value("Allow"), "DELETE");
  auto delete_action = Delete(SyncPath(group_), Auth());
  ASSERT_TRUE(delete_action);
  EXPECT_EQ(delete_action->status, 405);
  // Without a session the call fails as the sync does.
  auto no_session = Delete(absl::StrCat("/zstack/v1/vm-backups/", group_),
                           {{"Authorization", "OAuth " + stranger}});
  ASSERT_TRUE(no_session);
  EXPECT_EQ(ErrorCode(no_session), kIdInvalidSession);
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
  EXPECT_TRUE(HoldsGroup(dst_, group_));
}

// A volume backup synced alone (no group names it on the destination) is what
// DeleteVolumeBackup removes.
TEST_F(HttpFamilyTest, DeleteVolumeBackupRemovesABackupSyncedAlone) {
  StartServer();
  const std::string data = volumes_[2].backup_uuid;
  auto synced = Put(BackupPath(data), BackupBody(src_uuid_, dst2_uuid_), Auth());
  ASSERT_TRUE(synced);
  ASSERT_EQ(synced->status, 200) << synced->body;
  ASSERT_TRUE(HoldsBackup(dst2_, data));
  auto r =
      Delete(absl::StrCat("/zstack/v1/volume-backups/", data, "?backupStorageUuids=", dst2_uuid_,
                          "&deleteMode=Permissive&handleDependency=false"),
             Auth());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "{}");
  EXPECT_FALSE(HoldsBackup(dst2_, data));
  EXPECT_TRUE(HoldsBackup(src_, data));
}

// QueryVolumeBackup over the stores themselves: every volume backup once, with a ref for each
// storage holding it (a backup synced alone included), filtered, paged and counted.
TEST_F(HttpFamilyTest, QueryVolumeBackupSearchesEveryStorage) {
  StartServer();
  auto synced = PutSync(group_, dst_uuid_);
  ASSERT_TRUE(synced);
  ASSERT_EQ(synced->status, 200) << synced->body;
  const std::string alone = volumes_[2].backup_uuid;
  auto one = Put(BackupPath(alone), BackupBody(src_uuid_, dst2_uuid_), Auth());
  ASSERT_TRUE(one);
  ASSERT_EQ(one->status, 200) << one->body;

  // Everything: three volume backups, Root's on src and dst, the third on all three.
  auto all = Get("/zstack/v1/volume-backups", Auth());
  ASSERT_TRUE(all);
  ASSERT_EQ(all->status, 200) << all->body;
  const Json body = ParseJson(all->body);
  ASSERT_EQ(body["inventories"].size(), 3u) << all->body;
  EXPECT_TRUE(body.contains("schema")) << "queries always carry their schema";
  for (const Json& inv : body["inventories"]) {
    const size_t refs = inv["backupStorageRefs"].size();
    EXPECT_EQ(refs, inv["uuid"] == alone ? 3u : 2u) << inv.dump();
  }
  // Filtered as the SDK writes conditions: one q each, URL-encoded.
  const auto uuids = [&](const std::string& query) {
    auto r = Get("/zstack/v1/volume-backups?" + query, Auth());
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    std::vector<std::string> out;
    if (!r || r->status != 200) return out;
    const Json answer = ParseJson(r->body);
    for (const Json& inv : answer["inventories"]) out.push_back(inv.value("uuid", ""));
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(uuids("q=backupStorageRef.backupStorageUuid%3D" + dst2_uuid_),
            std::vector<std::string>{alone});
  EXPECT_EQ(uuids("q=type%3DRoot").size(), 1u);
  // As curl users write them (the platform's servlet splits at the first '='), and '+' a space.
  EXPECT_EQ(uuids("q=type=Root"), uuids("q=type%3DRoot"));
  EXPECT_EQ(uuids("q=groupUuid=" + group_ + "&q=type!=Root").size(), 2u);
  EXPECT_EQ(uuids("q=type!%3DRoot&q=groupUuid%3D" + group_).size(), 2u);
  std::vector<std::string> two = {volumes_[0].backup_uuid, alone};
  std::sort(two.begin(), two.end());
  EXPECT_EQ(uuids(absl::StrCat("q=uuid%3F%3D", volumes_[0].backup_uuid, ",", alone)), two);
  EXPECT_EQ(uuids("q=backupStorage.uuid%3D" + engine::NewUuid()).size(), 0u);
  EXPECT_EQ(uuids("limit=1&start=2").size(), 1u);
  auto count = Get("/zstack/v1/volume-backups?count=true&q=type%3DData", Auth());
  ASSERT_TRUE(count);
  EXPECT_EQ(count->body, R"({"total":2,"schema":{}})");
  // One uuid in the path; an unknown one is an empty answer.
  auto by_path = Get("/zstack/v1/volume-backups/" + alone, Auth());
  ASSERT_TRUE(by_path);
  ASSERT_EQ(by_path->status, 200);
  EXPECT_EQ(ParseJson(by_path->body)["inventories"][0].value("uuid", ""), alone);
  auto nothing = Get("/zstack/v1/volume-backups/" + engine::NewUuid(), Auth());
  ASSERT_TRUE(nothing);
  EXPECT_EQ(nothing->body, R"({"inventories":[],"schema":{}})");

  // Error rows: no operator (400, plain text), a field the inventory lacks (503 SYS.1000), a
  // session the registry does not accept (503 ID.1001, at once even with X-Job-UUID).
  auto no_op = Get("/zstack/v1/volume-backups?q=uuid", Auth());
  ASSERT_TRUE(no_op);
  EXPECT_EQ(no_op->status, 400);
  EXPECT_TRUE(absl::StrContains(no_op->body, "doesn't contain any query operator")) << no_op->body;
  auto no_field = Get("/zstack/v1/volume-backups?q=colour%3Dred", Auth());
  ASSERT_TRUE(no_field);
  EXPECT_EQ(no_field->status, 503);
  EXPECT_EQ(ErrorCode(no_field), "SYS.1000");
  EXPECT_TRUE(absl::StrContains(no_field->body, "not having field[colour]")) << no_field->body;
  auto stranger = Get("/zstack/v1/volume-backups", {{"Authorization", "OAuth " + engine::NewUuid()},
                                                    {"X-Job-UUID", engine::NewUuid()}});
  ASSERT_TRUE(stranger);
  EXPECT_EQ(stranger->status, 503);
  EXPECT_EQ(ErrorCode(stranger), kIdInvalidSession);
  auto put = Put("/zstack/v1/volume-backups", "{}", Auth());
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);
  auto post_one =
      client_->Post(("/zstack/v1/volume-backups/" + alone).c_str(), Auth(), "{}", kJsonType);
  ASSERT_TRUE(post_one);
  EXPECT_EQ(post_one->status, 405);
  EXPECT_EQ(post_one->get_header_value("Allow"), "DELETE, GET, HEAD");
}

}  // namespace
}  // namespace chunkferry::control
