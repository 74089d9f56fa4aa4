// The chunkferry CLI end to end: store init, import two volumes, copy to a second store, verify
// (JSON), restore and compare, ls and inventory JSON in the sync API contract's field order.
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/format/volume_backup.h"
#include "gtest/gtest.h"
#include "tests/cli_fixture.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::TempDir;
using Json = nlohmann::ordered_json;

constexpr size_t kMiB = 1 << 20;

class CliTest : public testing::CliFixture {};

// Fields of VolumeBackupInventory in the contract's order.
const std::vector<std::string>& ContractOrder() {
  static const std::vector<std::string> order = {
      "uuid",  "volumeUuid",     "name",       "description", "type",
      "state", "status",         "size",       "metadata",    "groupUuid",
      "mode",  "vmInstanceUuid", "createDate", "lastOpDate",  "backupStorageRefs"};
  return order;
}

void ExpectContractOrder(const Json& inv) {
  ASSERT_TRUE(inv.is_object());
  std::vector<std::string> keys;
  for (auto it = inv.begin(); it != inv.end(); ++it) keys.push_back(it.key());
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys.front(), "uuid");
  EXPECT_EQ(keys.back(), "backupStorageRefs");
  // The keys are the contract's, in its order (null fields omitted).
  size_t pos = 0;
  for (const auto& k : keys) {
    const auto& order = ContractOrder();
    while (pos < order.size() && order[pos] != k) ++pos;
    ASSERT_LT(pos, order.size()) << "field '" << k << "' is unknown or out of order in "
                                 << inv.dump();
  }
  for (const auto& v : inv) EXPECT_FALSE(v.is_null()) << inv.dump();
}

TEST_P(CliTest, EndToEnd) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  const std::string root = tmp_.Sub("root.img"), data = tmp_.Sub("data.img");
  testing::WriteMixedFile(root, 5 * kMiB + 123, 1);
  testing::WriteTextFile(data, 3 * kMiB, 2);
  const std::string group = engine::NewUuid(), vm = engine::NewUuid();

  auto init_a = Run({"store", "init", "--store", a, "--chunker", "cdc:2k:8k:64k", "--json"});
  const Json ja = ParseJson(init_a.out);
  EXPECT_EQ(ja.value("chunker", ""), "cdc:2048:8192:65536");
  EXPECT_TRUE(engine::IsValidUuid(ja.value("uuid", ""))) << init_a.out;
  Run({"store", "init", "--store", b, "--chunker", "cdc:2k:8k:64k"});
  // A second init of the same directory fails and leaves it alone.
  Run({"store", "init", "--store", a}, 1);

  // Import the data volume first: the Root still comes first in the group.
  const Json data_import = ParseJson(
      Run({"import", "--store", a, "--image", data, "--group", group, "--volume", engine::NewUuid(),
           "--type", "Data", "--vm", vm, "--name", "data disk", "--json", "--quiet"})
          .out);
  const Json root_import =
      ParseJson(Run({"import", "--store", a, "--image", root, "--group", group, "--volume",
                     engine::NewUuid(), "--type", "Root", "--vm", vm, "--name", "root disk",
                     "--metadata", "{\"os\":\"debian\"}", "--json", "--quiet"})
                    .out);
  const std::string data_uuid = data_import.value("uuid", "");
  const std::string root_uuid = root_import.value("uuid", "");
  ASSERT_TRUE(engine::IsValidUuid(data_uuid)) << data_import.dump();
  ASSERT_TRUE(engine::IsValidUuid(root_uuid)) << root_import.dump();
  EXPECT_EQ(root_import.value("size", uint64_t{0}), 5 * kMiB + 123);
  EXPECT_EQ(root_import.value("groupUuid", ""), group);
  EXPECT_GT(root_import.value("newChunks", uint64_t{0}), 0u);

  // Copy to B, then again (nothing to send).
  const Json copy =
      ParseJson(Run({"copy", "--from", a, "--to", b, "--group", group, "--json", "--quiet"}).out);
  EXPECT_EQ(copy.value("volumes", 0), 2);
  EXPECT_EQ(copy.value("logicalBytes", uint64_t{0}), 8 * kMiB + 123);
  EXPECT_GT(copy.value("bytesSent", uint64_t{0}), 0u);
  const Json copy2 =
      ParseJson(Run({"copy", "--from", a, "--to", b, "--group", group, "--json", "--quiet"}).out);
  EXPECT_EQ(copy2.value("bytesSent", uint64_t{1}), 0u);
  EXPECT_EQ(copy2.value("chunksMissing", uint64_t{1}), 0u);

  // Verify both stores.
  for (const auto& store : {a, b}) {
    const Json v = ParseJson(Run({"verify", "--store", store, "--json", "--quiet"}).out);
    EXPECT_EQ(v.value("ok", false), true) << v.dump();
    EXPECT_EQ(v.value("manifests", 0), 2);
    EXPECT_EQ(v.value("groups", 0), 1);
    EXPECT_EQ(v.value("badRecords", 1), 0);
  }

  // Restore from B and compare; a second restore to the same path needs --force.
  const std::string out_root = tmp_.Sub("out-root"), out_data = tmp_.Sub("out-data");
  Run({"restore", "--store", b, "--backup", root_uuid, "--output", out_root, "--quiet"});
  Run({"restore", "--store", b, "--backup", data_uuid, "--output", out_data, "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(root, out_root));
  EXPECT_TRUE(testing::FilesEqual(data, out_data));
  auto again = Run({"restore", "--store", b, "--backup", root_uuid, "--output", out_root}, 1);
  EXPECT_TRUE(absl::StrContains(again.err, "exists")) << again.err;
  Run({"restore", "--store", b, "--backup", root_uuid, "--output", out_root, "--force", "--verify",
       "checksum", "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(root, out_root));

  // ls --json names both volumes, Root first.
  const Json ls = ParseJson(Run({"ls", "--store", b, "--json"}).out);
  ASSERT_TRUE(ls.is_array()) << ls.dump();
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0].value("group", ""), group);
  ASSERT_EQ(ls[0]["volumes"].size(), 2u);
  EXPECT_EQ(ls[0]["volumes"][0].value("uuid", ""), root_uuid);
  EXPECT_EQ(ls[0]["volumes"][1].value("uuid", ""), data_uuid);

  // Inventory on both stores: contract order, same install paths, refs naming the store.
  std::vector<std::string> install_paths[2];
  for (int k = 0; k < 2; ++k) {
    const std::string store = k == 0 ? a : b;
    const std::string bs = engine::NewUuid();
    const Json inv = ParseJson(
        Run({"inventory", "--store", store, "--group", group, "--backup-storage", bs}).out);
    ASSERT_TRUE(inv.contains("inventories")) << inv.dump();
    const Json& list = inv["inventories"];
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0].value("uuid", ""), root_uuid);
    EXPECT_EQ(list[0].value("type", ""), "Root");
    EXPECT_EQ(list[0].value("name", ""), "root disk");
    EXPECT_EQ(list[0].value("metadata", ""), "{\"os\":\"debian\"}");
    EXPECT_EQ(list[0].value("vmInstanceUuid", ""), vm);
    EXPECT_TRUE(list[0]["size"].is_number_integer()) << list[0].dump();
    EXPECT_EQ(list[0]["size"].get<uint64_t>(), 5 * kMiB + 123);
    EXPECT_EQ(list[1].value("uuid", ""), data_uuid);
    EXPECT_FALSE(list[1].contains("metadata")) << "null fields are omitted";
    EXPECT_FALSE(list[1].contains("description"));
    for (const auto& item : list) {
      ExpectContractOrder(item);
      EXPECT_EQ(item.value("groupUuid", ""), group);
      EXPECT_EQ(item.value("status", ""), "Ready");
      const Json& refs = item["backupStorageRefs"];
      ASSERT_EQ(refs.size(), 1u);
      EXPECT_EQ(refs[0].value("volumeBackupUuid", ""), item.value("uuid", ""));
      EXPECT_EQ(refs[0].value("backupStorageUuid", ""), bs);
      std::vector<std::string> ref_keys;
      for (auto it = refs[0].begin(); it != refs[0].end(); ++it) ref_keys.push_back(it.key());
      EXPECT_EQ(ref_keys,
                (std::vector<std::string>{"volumeBackupUuid", "backupStorageUuid", "installPath",
                                          "status", "createDate", "lastOpDate"}));
      install_paths[k].push_back(refs[0].value("installPath", ""));
    }
  }
  EXPECT_EQ(install_paths[0], install_paths[1]) << "install paths must survive the copy";

  // Verify finds damage and says so with exit code 1.
  const std::string pack = testing::PackPath(b, 1);
  testing::FlipByte(pack, static_cast<uint64_t>(testing::FileSize(pack)) - 5, 0x01);
  const Json bad = ParseJson(Run({"verify", "--store", b, "--json", "--quiet"}, 1).out);
  EXPECT_EQ(bad.value("ok", true), false);
  EXPECT_EQ(bad.value("badRecords", 0), 1);
  ASSERT_TRUE(bad.contains("damagedBackups"));
  EXPECT_EQ(bad["damagedBackups"].size(), 1u) << bad.dump();
}

// delete: refusals are exit 1 (unknown, grouped) or 2 (flags) and change nothing; a group goes
// with its volume backups, and restore then fails.
// What chunkferry writes is private to its user, whatever the umask lets through: files 0600,
// directories 0700 (a store holds every VM's disks; its keys are secrets); a key file others may
// read is refused; temporary files a crash left beside atomic replacements go at the next
// writable open, and a read-only open leaves them alone.
TEST_P(CliTest, StoreFilesArePrivateAndCrashLeftoversAreRemoved) {
  const mode_t old_umask = ::umask(022);
  const std::string a = tmp_.Sub("a"), idkey = tmp_.Sub("id.key");
  const std::string hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  testing::WriteFile(idkey, {reinterpret_cast<const uint8_t*>(hex.data()), hex.size()});
  ASSERT_EQ(::chmod(idkey.c_str(), 0644), 0);
  auto r = Run({"store", "init", "--store", a, "--id-key-file", idkey, "--quiet"}, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "chmod 600")) << r.err;
  EXPECT_FALSE(testing::FileExists(a + "/STORE")) << "a refused init made a store";
  ASSERT_EQ(::chmod(idkey.c_str(), 0600), 0);
  Run({"store", "init", "--store", a, "--id-key-file", idkey, "--quiet"});
  const std::string img = tmp_.Sub("img");
  testing::WriteMixedFile(img, 3 * kMiB, 41);
  const std::string group = engine::NewUuid();
  const std::string backup = ParseJson(Run({"import", "--store", a, "--image", img, "--group",
                                            group, "--volume", engine::NewUuid(), "--type", "Root",
                                            "--vm", engine::NewUuid(), "--json", "--quiet"})
                                           .out)
                                 .value("uuid", "");
  const std::string out = tmp_.Sub("restored");
  Run({"restore", "--store", a, "--backup", backup, "--output", out, "--quiet"});
  ::umask(old_umask);

  std::vector<std::string> loose;
  size_t files = 0;
  testing::ForEachPath(a, [&](const std::string& path, const struct stat& st) {
    if (S_ISREG(st.st_mode)) ++files;
    if ((st.st_mode & 077) != 0) {
      loose.push_back(absl::StrFormat("%s %04o", path, st.st_mode & 07777));
    }
  });
  struct stat st;
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  if ((st.st_mode & 077) != 0) loose.push_back(out);
  EXPECT_GE(files, 6u) << "the walk saw too little of the store";
  EXPECT_TRUE(loose.empty()) << absl::StrJoin(loose, "\n");

  // A loose chunk id key is refused, not used.
  ASSERT_EQ(::chmod((a + "/ID_KEY").c_str(), 0644), 0);
  r = Run({"ls", "--store", a}, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "ID_KEY")) << r.err;
  ASSERT_EQ(::chmod((a + "/ID_KEY").c_str(), 0600), 0);

  const std::vector<std::string> leftovers = {a + "/STORE.tmp.4242", a + "/index/STATE.tmp.77",
                                              a + "/groups/" + group + ".tmp.9"};
  for (const auto& path : leftovers) testing::WriteFile(path, {});
  const std::string keep = a + "/groups/notes.tmp.txt";  // not a temporary name: stays
  testing::WriteFile(keep, {});
  Run({"ls", "--store", a, "--quiet"});
  for (const auto& path : leftovers) EXPECT_TRUE(testing::FileExists(path)) << path;
  Run({"verify", "--store", a, "--quiet"});
  Run({"import", "--store", a, "--image", img, "--group", engine::NewUuid(), "--volume",
       engine::NewUuid(), "--type", "Root", "--vm", engine::NewUuid(), "--quiet"});
  for (const auto& path : leftovers) EXPECT_FALSE(testing::FileExists(path)) << path;
  EXPECT_TRUE(testing::FileExists(keep));
}

TEST_P(CliTest, DeleteGroupsAndBackups) {
  const std::string s = tmp_.Sub("s"), image = tmp_.Sub("root.img");
  testing::WriteMixedFile(image, 2 * kMiB, 3);
  const std::string group = engine::NewUuid();
  Run({"store", "init", "--store", s});
  const std::string backup =
      ParseJson(Run({"import", "--store", s, "--image", image, "--group", group, "--volume",
                     engine::NewUuid(), "--type", "Root", "--json", "--quiet"})
                    .out)
          .value("uuid", "");
  ASSERT_TRUE(engine::IsValidUuid(backup));
  const auto files = testing::ListFiles(s, {"LOCK", "index/"});

  auto grouped = Run({"delete", "--store", s, "--backup", backup}, 1);
  EXPECT_TRUE(absl::StrContains(grouped.err, group)) << grouped.err;
  auto unknown = Run({"delete", "--store", s, "--group", engine::NewUuid()}, 1);
  EXPECT_TRUE(absl::StrContains(unknown.err, "has no group")) << unknown.err;
  Run({"delete", "--store", s}, 2);
  Run({"delete", "--store", s, "--group", group, "--backup", backup}, 2);
  Run({"delete", "--store", s, "--group", "not-a-uuid"}, 2);
  Run({"delete", "--store", s, "--group", group, "--key-file", tmp_.Sub("k")}, 2);
  EXPECT_EQ(testing::ListFiles(s, {"LOCK", "index/"}), files);

  const Json deleted = ParseJson(Run({"delete", "--store", s, "--group", group, "--json"}).out);
  EXPECT_EQ(deleted["groups_removed"], Json::array({group}));
  EXPECT_EQ(deleted["backups_removed"], Json::array({backup}));
  EXPECT_EQ(deleted["backups_kept"], Json::array());
  Run({"restore", "--store", s, "--backup", backup, "--output", tmp_.Sub("out")}, 1);
  EXPECT_EQ(ParseJson(Run({"ls", "--store", s, "--json"}).out), Json::array());
}

TEST(CliHelpTest, HelpIsExitCodeZeroOnStdout) {
  for (const char* cmd : {"import", "restore", "copy", "verify", "ls", "inventory"}) {
    const auto r = testing::RunProcess({CHUNKFERRY_CLI, cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "usage: chunkferry")) << cmd << ": " << r.out;
  }
  const auto top = testing::RunProcess({CHUNKFERRY_CLI, "--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(top.out, "commands:")) << top.out;
}

INSTANTIATE_TEST_SUITE_P(Backends, CliTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
