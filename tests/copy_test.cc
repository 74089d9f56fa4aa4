// The copier between two local stores: a group arrives whole and restorable, a second copy moves
// nothing, a related group moves only its new chunks, damage at the source is refused and leaves
// the destination without the group.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/store_restorer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

using Volume = testing::ImportedVolume;

class CopyTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    a_dir_ = tmp_.Sub("a");
    b_dir_ = tmp_.Sub("b");
    testing::InitStore(a_dir_);
    testing::InitStore(b_dir_);
    a_ = OpenOk(a_dir_, true);
    b_ = OpenOk(b_dir_, true);
  }

  std::unique_ptr<engine::LocalStore> OpenOk(const std::string& dir, bool writable) {
    auto s = testing::OpenStore(dir, GetParam(), writable, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // Root + two Data volumes in store A, group `group`; data1 imported first, so that the group
  // still lists the Root volume first.
  std::vector<Volume> BuildGroup(const std::string& group, uint64_t seed) {
    return testing::ImportSampleGroup(*a_, pool_, tmp_, group, seed,
                                      {4 * kMiB + 512, 2 * kMiB, 3 * kMiB - 7},
                                      /*data_first=*/true);
  }

  absl::Status Copy(engine::CopyStats* stats, engine::VerifyMode mode = engine::VerifyMode::kFull) {
    engine::CopyOptions o;
    o.verify = mode;
    return engine::CopyGroup(*a_, *b_, group_, o, stats);
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string a_dir_, b_dir_;
  std::unique_ptr<engine::LocalStore> a_, b_;
  std::string group_ = engine::NewUuid();
};

TEST_P(CopyTest, CopiesAGroupThatRestoresIdentically) {
  const auto vols = BuildGroup(group_, 1);
  engine::CopyStats stats;
  absl::Status st = Copy(&stats);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(stats.volumes, 3u);
  uint64_t logical = 0, new_chunks = 0, data_entries = 0;
  for (const auto& v : vols) {
    logical += v.meta.size;
    new_chunks += v.stats.new_chunks;
    data_entries += v.stats.chunks - v.stats.zero_chunks;
  }
  EXPECT_EQ(stats.logical_bytes, logical);
  EXPECT_EQ(stats.chunks_referenced, data_entries);
  EXPECT_EQ(stats.chunks_missing, new_chunks);  // B was empty
  EXPECT_EQ(stats.chunks_queried, new_chunks);
  EXPECT_EQ(stats.appended.chunks_added, new_chunks);
  EXPECT_EQ(stats.bytes_sent, testing::TotalPackBytes(a_dir_) - engine::kPackHeaderSize);
  EXPECT_EQ(stats.appended.bytes_appended, stats.bytes_sent);
  // The split of the time: records moved, so some of it went on the transfer; the parts add up.
  EXPECT_GT(stats.transfer_seconds, 0);
  EXPECT_GE(stats.commit_seconds, 0);
  EXPECT_GE(stats.query_seconds, 0);
  EXPECT_LE(stats.query_seconds, stats.plan_seconds() + 1e-9);
  EXPECT_LE(stats.transfer_seconds + stats.commit_seconds, stats.seconds + 1e-9);

  // The group and every manifest are on B, in the same order, with the same install paths.
  auto g = b_->GetGroup(group_);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->volume_uuids.size(), 3u);
  EXPECT_EQ(g->volume_uuids[0], vols[1].meta.uuid);  // Root first
  auto ga = a_->GetGroup(group_);
  ASSERT_TRUE(ga.ok());
  EXPECT_EQ(g->volume_uuids, ga->volume_uuids);
  for (const auto& v : vols) {
    auto m = b_->OpenManifest(v.meta.uuid);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ((*m)->meta().install_path, v.meta.install_path);
    EXPECT_EQ((*m)->meta().size, v.meta.size);
    EXPECT_EQ((*m)->meta().type, v.meta.type);
    EXPECT_EQ((*m)->meta().status, "Ready");
  }
  // Restores from B after B is closed and reopened read-only.
  ASSERT_TRUE(b_->Close().ok());
  b_ = OpenOk(b_dir_, false);
  ASSERT_NE(b_, nullptr);
  for (size_t i = 0; i < vols.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*b_, pool_, vols[i].meta.uuid, vols[i].image,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
  auto report = engine::VerifyStore(*b_, pool_, engine::VerifyMode::kFull);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << (report->problems.empty() ? "" : report->problems[0]);
  EXPECT_EQ(report->manifests, 3u);
  EXPECT_EQ(report->groups, 1u);
  EXPECT_EQ(report->chunks, new_chunks);
}

TEST_P(CopyTest, CopyingAgainMovesNothing) {
  BuildGroup(group_, 2);
  engine::CopyStats first;
  ASSERT_TRUE(Copy(&first).ok());
  const auto packs = testing::PackSizes(b_dir_);
  engine::CopyStats again;
  absl::Status st = Copy(&again);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(again.chunks_missing, 0u);
  EXPECT_EQ(again.bytes_sent, 0u);
  EXPECT_EQ(again.records_sent, 0u);
  EXPECT_EQ(again.transfer_seconds, 0);  // nothing missing: nothing read for the destination
  EXPECT_EQ(again.chunks_queried, first.chunks_queried);
  EXPECT_EQ(testing::PackSizes(b_dir_), packs);
  // Also after B is reopened (the index comes from its snapshot).
  ASSERT_TRUE(b_->Close().ok());
  b_ = OpenOk(b_dir_, true);
  ASSERT_NE(b_, nullptr);
  engine::CopyStats third;
  ASSERT_TRUE(Copy(&third).ok());
  EXPECT_EQ(third.bytes_sent, 0u);
  EXPECT_EQ(testing::PackSizes(b_dir_), packs);
}

TEST_P(CopyTest, RelatedGroupSendsOnlyItsNewChunks) {
  const auto v1 = BuildGroup(group_, 3);
  engine::CopyStats first;
  ASSERT_TRUE(Copy(&first).ok());
  // A second backup of the same VM: the root changed in a few places, one data volume is the
  // same, the other is new.
  const std::string group2 = engine::NewUuid();
  const std::vector<Volume> v2 =
      testing::ImportRelatedGroup(*a_, pool_, tmp_, group2, v1[1].image, v1[0].image);
  uint64_t new_chunks = 0;
  for (const auto& v : v2) new_chunks += v.stats.new_chunks;
  ASSERT_GT(new_chunks, 0u);
  EXPECT_EQ(v2[1].stats.new_chunks, 0u);

  const uint64_t b_before = testing::TotalPackBytes(b_dir_);
  engine::CopyStats stats;
  engine::CopyOptions o;
  absl::Status st = engine::CopyGroup(*a_, *b_, group2, o, &stats);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(stats.chunks_missing, new_chunks);
  EXPECT_EQ(stats.appended.chunks_added, new_chunks);
  // Only records holding new chunks were sent: about the bytes A stored for group 2.
  uint64_t stored2 = 0;
  for (const auto& v : v2) stored2 += v.stats.stored_bytes;
  EXPECT_EQ(stats.bytes_sent, stored2);
  EXPECT_EQ(testing::TotalPackBytes(b_dir_) - b_before, stored2);
  for (size_t i = 0; i < v2.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*b_, pool_, v2[i].meta.uuid, v2[i].image,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
  // Both groups are there.
  auto groups = b_->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(groups->size(), 2u);
}

TEST_P(CopyTest, SmallQueriesGiveTheSameResult) {
  const auto vols = BuildGroup(group_, 4);
  engine::CopyOptions o;
  o.ids_per_query = 7;
  engine::CopyStats stats;
  absl::Status st = engine::CopyGroup(*a_, *b_, group_, o, &stats);
  ASSERT_TRUE(st.ok()) << st;
  uint64_t new_chunks = 0;
  for (const auto& v : vols) new_chunks += v.stats.new_chunks;
  EXPECT_EQ(stats.appended.chunks_added, new_chunks);
  EXPECT_EQ(stats.bytes_sent, stats.appended.bytes_appended);
  for (size_t i = 0; i < vols.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*b_, pool_, vols[i].meta.uuid, vols[i].image,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
}

TEST_P(CopyTest, DamagedSourceRecordIsRefusedAndTheGroupIsNotPublished) {
  const auto vols = BuildGroup(group_, 5);
  ASSERT_TRUE(a_->Close().ok());
  // Flip one payload byte of a record of the second data volume (random, stored raw).
  a_ = OpenOk(a_dir_, false);
  ASSERT_NE(a_, nullptr);
  const auto entries = testing::ManifestEntries(*a_, vols[2].meta.uuid);
  ASSERT_FALSE(entries.empty());
  const std::optional<engine::ChunkLocation> loc = a_->index().Find(entries[entries.size() / 2].id);
  ASSERT_TRUE(loc.has_value());
  testing::FlipByte(testing::PackPath(a_dir_, loc->record.pack),
                    testing::PayloadOffset(a_dir_, loc->record) + 10, 0x20);
  for (engine::VerifyMode mode : {engine::VerifyMode::kFull, engine::VerifyMode::kChecksum}) {
    engine::CopyStats stats;
    absl::Status st = Copy(&stats, mode);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), b_dir_)) << "which store refused? " << st;
    EXPECT_EQ(b_->GetGroup(group_).status().code(), absl::StatusCode::kNotFound);
    for (const auto& v : vols) {
      EXPECT_EQ(b_->OpenManifest(v.meta.uuid).status().code(), absl::StatusCode::kNotFound)
          << v.meta.type;
    }
  }
  // Whatever B kept is intact and B names no backup.
  ASSERT_TRUE(b_->Close().ok());
  b_ = OpenOk(b_dir_, false);
  ASSERT_NE(b_, nullptr);
  auto report = engine::VerifyStore(*b_, pool_, engine::VerifyMode::kFull);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->manifests, 0u);
  EXPECT_EQ(report->groups, 0u);
  EXPECT_TRUE(testing::ListFiles(b_dir_ + "/volumes").empty());
  EXPECT_TRUE(testing::ListFiles(b_dir_ + "/groups").empty());
}

TEST_P(CopyTest, CopyingAStoreToItselfIsRefused) {
  BuildGroup(group_, 6);
  ASSERT_TRUE(a_->Close().ok());
  a_ = OpenOk(a_dir_, true);
  ASSERT_NE(a_, nullptr);
  auto src = OpenOk(a_dir_, false);
  ASSERT_NE(src, nullptr);
  const auto files = testing::ListFiles(a_dir_, {"LOCK"});
  engine::CopyStats stats;
  absl::Status st = engine::CopyGroup(*src, *a_, group_, engine::CopyOptions{}, &stats);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "same store")) << st;
  EXPECT_EQ(stats.bytes_sent, 0u);
  EXPECT_EQ(testing::ListFiles(a_dir_, {"LOCK"}), files);
}

TEST_P(CopyTest, UnknownGroupIsNotFound) {
  engine::CopyStats stats;
  EXPECT_EQ(Copy(&stats).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine::CopyGroup(*a_, *b_, "bad", engine::CopyOptions{}, &stats).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(CopyTest, StoresKeyedDifferentlyAreRefused) {
  const std::string k_dir = tmp_.Sub("keyed");
  testing::InitStore(k_dir, "fixed:4k", "", "00112233445566778899aabbccddeeff");
  auto k = OpenOk(k_dir, true);
  ASSERT_NE(k, nullptr);
  EXPECT_NE(k->info().key_fingerprint, 0u);
  BuildGroup(group_, 7);
  engine::CopyStats stats;
  absl::Status st = engine::CopyGroup(*a_, *k, group_, engine::CopyOptions{}, &stats);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(k->GetGroup(group_).status().code(), absl::StatusCode::kNotFound);
}

// The restore through the Store interface (what a pool or a daemon gets), from a local store on
// two worker slots: byte for byte in both verify modes; a damaged record fails it and leaves no
// image behind.
TEST_P(CopyTest, RestoreThroughTheStoreInterfaceIsIdenticalAndRefusesDamage) {
  const auto vols = BuildGroup(group_, 4);
  for (bool verify_ids : {true, false}) {
    for (const auto& v : vols) {
      engine::StoreRestoreOptions o;
      o.restore.output = tmp_.Sub("out");
      o.restore.overwrite = true;
      o.restore.verify_ids = verify_ids;
      o.window = 512 << 10;
      o.backend = GetParam();
      engine::RestoreStats stats;
      absl::Status st = engine::RestoreFromStore(*a_, a_->hasher(), pool_, v.meta.uuid, o, &stats);
      ASSERT_TRUE(st.ok()) << st;
      EXPECT_EQ(stats.bytes, v.meta.size);
      EXPECT_TRUE(testing::FilesEqual(v.image, o.restore.output)) << v.meta.uuid;
    }
  }
  const auto entries = testing::ManifestEntries(*a_, vols[0].meta.uuid);
  ASSERT_FALSE(entries.empty());
  auto loc = a_->index().Find(entries[entries.size() / 2].id);
  ASSERT_TRUE(loc.has_value());
  ASSERT_TRUE(a_->Close().ok());
  testing::FlipByte(testing::PackPath(a_dir_, loc->record.pack),
                    testing::PayloadOffset(a_dir_, loc->record) + 5);
  a_ = OpenOk(a_dir_, false);
  ASSERT_NE(a_, nullptr);
  for (bool verify_ids : {true, false}) {
    engine::StoreRestoreOptions o;
    o.restore.output = tmp_.Sub("damaged");
    o.restore.verify_ids = verify_ids;
    o.backend = GetParam();
    absl::Status st =
        engine::RestoreFromStore(*a_, a_->hasher(), pool_, vols[0].meta.uuid, o, nullptr);
    EXPECT_TRUE(absl::IsDataLoss(st)) << st;
    EXPECT_FALSE(testing::FileExists(o.restore.output));
    EXPECT_FALSE(testing::FileExists(o.restore.output + ".partial"));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CopyTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
