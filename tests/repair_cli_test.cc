// `chunkferry verify --repair` and `chunkferry repair` as an operator runs them: a damaged record
// is quarantined, the backups it broke are listed, and a repair from a daemon that holds the group
// brings good copies; the backups restore byte for byte after, and a second repair has nothing
// to do.
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/cli_fixture.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using Json = nlohmann::ordered_json;
constexpr size_t kMiB = 1 << 20;

class RepairCliTest : public testing::CliFixture {};

TEST_P(RepairCliTest, QuarantineThenRepairFromADaemon) {
  engine::WorkerPool pool(1);
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  const std::string group = engine::NewUuid();
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  std::vector<testing::ImportedVolume> vols;
  {
    auto s = testing::OpenStore(a, GetParam(), true, &pool);
    ASSERT_TRUE(s.ok()) << s.status();
    vols = testing::ImportSampleGroup(**s, pool, tmp_, group, 5, {2 * kMiB, kMiB, kMiB + 7});
    ASSERT_TRUE((*s)->Close().ok());
  }
  Run({"sync", "--from", a, "--to", b, "--group", group, "--quiet"});
  // Damage a record of the second volume (random bytes: its records are its own).
  engine::RecordLocation victim;
  {
    auto s = testing::OpenStore(a, GetParam(), false, &pool);
    ASSERT_TRUE(s.ok()) << s.status();
    const auto entries = testing::ManifestEntries(**s, vols[1].meta.uuid);
    ASSERT_FALSE(entries.empty());
    auto loc = (*s)->index().Find(entries[entries.size() / 2].id);
    ASSERT_TRUE(loc.has_value());
    victim = loc->record;
  }
  testing::FlipByte(testing::PackPath(a, victim.pack), testing::PayloadOffset(a, victim) + 3);

  Json before = ParseJson(Run({"verify", "--store", a, "--json"}, 1).out);
  ASSERT_EQ(before["damagedBackups"].size(), 1u) << before.dump();
  EXPECT_EQ(before["damagedBackups"][0]["uuid"], vols[1].meta.uuid);
  Json quarantine = ParseJson(Run({"verify", "--store", a, "--repair", "--json"}, 1).out);
  EXPECT_EQ(quarantine["quarantinedRecords"], 1) << quarantine.dump();
  Json after = ParseJson(Run({"verify", "--store", a, "--json"}, 1).out);
  EXPECT_TRUE(after["problems"].empty()) << after.dump();
  ASSERT_EQ(after["damagedBackups"].size(), 1u) << after.dump();
  EXPECT_GT(after["damagedBackups"][0]["missingChunks"], 0) << after.dump();

  testing::DaemonProcess daemon(
      {CHUNKFERRY_CLI, "serve", "--store", b, "--listen", "127.0.0.1:0", IoFlag()},
      tmp_.Sub("ready"));
  ASSERT_FALSE(daemon.address().empty());
  const std::string key = b + "/auth.key";
  Json repair = ParseJson(Run({"repair", "--store", a, "--from", "tcp://" + daemon.address(),
                               "--key-file", key, "--json"})
                              .out);
  EXPECT_EQ(repair["brokenBefore"], Json::array({vols[1].meta.uuid})) << repair.dump();
  EXPECT_TRUE(repair["stillBroken"].empty()) << repair.dump();
  EXPECT_EQ(repair["chunksUnavailable"], 0);
  Run({"verify", "--store", a, "--quiet"});
  for (size_t i = 0; i < vols.size(); ++i) {
    const std::string out = tmp_.Sub(absl::StrCat("out", i));
    Run({"restore", "--store", a, "--backup", vols[i].meta.uuid, "--output", out, "--quiet"});
    EXPECT_TRUE(testing::FilesEqual(vols[i].image, out)) << i;
  }
  // Nothing left to do; a store is not repaired from itself.
  Json again = ParseJson(Run({"repair", "--store", a, "--from", "tcp://" + daemon.address(),
                              "--key-file", key, "--json"})
                             .out);
  EXPECT_EQ(again["chunksLacking"], 0);
  const auto self = Run({"repair", "--store", a, "--from", a}, 1);
  EXPECT_TRUE(absl::StrContains(self.err, "from itself")) << self.err;
  Run({"repair", "--store", a}, 2);
}

// A quarantine on a daemon's store breaks the rule that a manifest there names only chunks it
// holds, which an incremental push relies on (a base's chunks are not asked about): the push of a
// later backup must still land, sending the chunks the quarantine dropped, and it repairs the
// earlier backup as it goes.
TEST_P(RepairCliTest, AnIncrementalPushAfterAQuarantineOnTheDaemonStillLands) {
  engine::WorkerPool pool(1);
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  // Two backups of one VM's root volume: the second rewrites a few blocks of the first.
  const std::string vm = engine::NewUuid(), volume = engine::NewUuid();
  const std::string g1 = engine::NewUuid(), g2 = engine::NewUuid();
  const std::string img1 = tmp_.Sub("root1.img"), img2 = tmp_.Sub("root2.img");
  std::vector<uint8_t> bytes = testing::RandomBytes(3 * kMiB, 17);
  testing::WriteFile(img1, bytes);
  for (size_t block = 100; block < bytes.size() / 4096; block += 200) bytes[block * 4096] ^= 0xff;
  testing::WriteFile(img2, bytes);
  std::string backup1, backup2;
  for (auto [img, group, backup] :
       {std::tuple(img1, g1, &backup1), std::tuple(img2, g2, &backup2)}) {
    *backup = ParseJson(Run({"import", "--store", a, "--image", img, "--group", group, "--volume",
                             volume, "--type", "Root", "--vm", vm, "--json", "--quiet"})
                            .out)
                  .value("uuid", "");
  }
  const std::string key = b + "/auth.key";
  auto push = [&](const std::string& group) {
    testing::DaemonProcess daemon(
        {CHUNKFERRY_CLI, "serve", "--store", b, "--listen", "127.0.0.1:0", IoFlag()},
        tmp_.Sub("ready"));
    EXPECT_FALSE(daemon.address().empty());
    return ParseJson(Run({"sync", "--from", a, "--to", "tcp://" + daemon.address(), "--group",
                          group, "--key-file", key, "--json"})
                         .out);
  };
  push(g1);
  // Damage, on the daemon's store, a record of the first backup that the second one shares.
  {
    auto s = testing::OpenStore(b, GetParam(), false, &pool);
    ASSERT_TRUE(s.ok()) << s.status();
    const auto entries = testing::ManifestEntries(**s, backup1);
    auto loc = (*s)->index().Find(entries[5].id);
    ASSERT_TRUE(loc.has_value());
    testing::FlipByte(testing::PackPath(b, loc->record.pack),
                      testing::PayloadOffset(b, loc->record) + 1);
  }
  Json q = ParseJson(Run({"verify", "--store", b, "--repair", "--json"}, 1).out);
  ASSERT_EQ(q["quarantinedRecords"], 1) << q.dump();

  const Json second = push(g2);
  EXPECT_EQ(second["retriedWithoutBase"], true) << second.dump();
  EXPECT_GE(second["chunksMissing"], 16) << second.dump();
  Run({"verify", "--store", b, "--quiet"});
  auto s = testing::OpenStore(b, GetParam(), false, &pool);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(testing::RestoresIdentical(**s, pool, backup1, img1, tmp_.Sub("out")));
  EXPECT_TRUE(testing::RestoresIdentical(**s, pool, backup2, img2, tmp_.Sub("out")));
}

INSTANTIATE_TEST_SUITE_P(Backends, RepairCliTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
