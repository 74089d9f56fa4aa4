// The life of backups in a local store after they are published: a published manifest or group is
// never replaced by other bytes (publishing the same bytes again is a no-op), a group only grows
// through import, and delete removes groups and volume backups, crash-safely, refusing what a
// group still needs.
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/format/manifest.h"
#include "engine/format/volume_backup.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::ListFiles;
using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

class LifecycleTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_);
    Reopen();
    vols_ = testing::ImportSampleGroup(*store_, pool_, tmp_, group_, 7,
                                       {2 * kMiB + 512, 1 * kMiB, 1 * kMiB - 7});
    ASSERT_EQ(vols_.size(), 3u);
    ASSERT_TRUE(store_->Flush().ok());
  }

  void TearDown() override {
    if (store_ != nullptr) {
      EXPECT_TRUE(store_->Close().ok());
    }
  }

  void Reopen() {
    if (store_ != nullptr) {
      ASSERT_TRUE(store_->Close().ok());
    }
    store_.reset();
    auto s = testing::OpenStore(dir_, GetParam(), true, &pool_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  // The store's files but the index snapshot and the lock, which opening rewrites.
  std::map<std::string, uint64_t> Files() const { return ListFiles(dir_, {"LOCK", "index/"}); }

  void ExpectAllRestore() {
    for (size_t i = 0; i < vols_.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, vols_[i].meta.uuid, vols_[i].image,
                                             tmp_.Sub(absl::StrCat("out", i))));
    }
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
  std::string group_ = engine::NewUuid();
  std::unique_ptr<engine::LocalStore> store_;
  std::vector<testing::ImportedVolume> vols_;
};

TEST_P(LifecycleTest, PublishingTheSameManifestAgainIsANoOp) {
  const engine::VolumeBackupMeta& meta = vols_[0].meta;
  const std::vector<uint8_t> before = testing::ReadFile(store_->ManifestPath(meta.uuid));
  testing::VectorManifestSource same(meta, testing::ManifestEntries(*store_, meta.uuid));
  absl::Status st = store_->PutManifest(meta, same);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(testing::ReadFile(store_->ManifestPath(meta.uuid)), before);
  ExpectAllRestore();
}

TEST_P(LifecycleTest, AManifestOfHolesCannotReplaceAPublishedBackup) {
  const engine::VolumeBackupMeta& meta = vols_[0].meta;
  const auto files = Files();
  const std::vector<uint8_t> before = testing::ReadFile(store_->ManifestPath(meta.uuid));
  std::vector<engine::ManifestEntry> holes(1);
  holes[0].zero = true;
  holes[0].length = meta.size;
  testing::VectorManifestSource zeros(meta, holes);
  absl::Status st = store_->PutManifest(meta, zeros);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), meta.uuid)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "never replaced")) << st;
  EXPECT_EQ(testing::ReadFile(store_->ManifestPath(meta.uuid)), before);
  EXPECT_EQ(Files(), files);
  ExpectAllRestore();

  // Other metadata over the same entries is other bytes too.
  engine::VolumeBackupMeta renamed = meta;
  renamed.name = "renamed";
  testing::VectorManifestSource same_entries(renamed, testing::ManifestEntries(*store_, meta.uuid));
  EXPECT_EQ(store_->PutManifest(renamed, same_entries).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Files(), files);
}

TEST_P(LifecycleTest, ReimportUnderAPublishedUuidIsRefusedAndRollsBack) {
  const std::string other = tmp_.Sub("other.img");
  testing::WriteRandomFile(other, 1 * kMiB, 99);
  const auto files = Files();
  engine::ImportOptions o;
  o.source = other;
  o.meta = vols_[1].meta;
  engine::ImportStats stats;
  auto imported = engine::ImportVolume(*store_, pool_, o, &stats);
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kAlreadyExists) << imported.status();
  // The chunks it appended were rolled back with it.
  EXPECT_EQ(Files(), files);
  ExpectAllRestore();
}

TEST_P(LifecycleTest, GroupsAreNeverReplacedAndOnlyGrowByImport) {
  auto group = store_->GetGroup(group_);
  ASSERT_TRUE(group.ok()) << group.status();
  const std::vector<uint8_t> before = testing::ReadFile(store_->GroupPath(group_));
  ASSERT_TRUE(store_->PutGroup(*group).ok());  // the same record again
  EXPECT_EQ(testing::ReadFile(store_->GroupPath(group_)), before);

  engine::GroupRecord fewer = *group;
  fewer.volume_uuids.pop_back();
  engine::GroupRecord reordered = *group;
  std::swap(reordered.volume_uuids[1], reordered.volume_uuids[2]);
  engine::GroupRecord redated = *group;
  redated.create_date += 1;
  for (const auto* g : {&fewer, &reordered, &redated}) {
    EXPECT_EQ(store_->PutGroup(*g).code(), absl::StatusCode::kAlreadyExists);
    absl::Status grown = store_->GrowGroup(*g);
    EXPECT_EQ(grown.code(), absl::StatusCode::kAlreadyExists) << grown;
    EXPECT_EQ(testing::ReadFile(store_->GroupPath(group_)), before);
  }

  // An import into the group adds its volume, and only that.
  const std::string extra = tmp_.Sub("extra.img");
  testing::WriteTextFile(extra, 1 * kMiB, 5);
  testing::ImportedVolume added = testing::ImportOk(*store_, pool_, extra, group_, "Data");
  auto grown = store_->GetGroup(group_);
  ASSERT_TRUE(grown.ok()) << grown.status();
  std::vector<std::string> want = group->volume_uuids;
  want.push_back(added.meta.uuid);
  EXPECT_EQ(grown->volume_uuids, want);
}

// ---- Delete. ----

TEST_P(LifecycleTest, DeleteGroupRemovesItAndItsBackupsAndLeavesOtherGroups) {
  const std::string other = engine::NewUuid();
  std::vector<testing::ImportedVolume> kept =
      testing::ImportRelatedGroup(*store_, pool_, tmp_, other, vols_[0].image, vols_[1].image);
  ASSERT_TRUE(store_->Flush().ok());

  absl::StatusOr<engine::DeleteResult> r = store_->DeleteGroup(group_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->groups_removed, std::vector<std::string>{group_});
  std::vector<std::string> want;
  for (const auto& v : vols_) want.push_back(v.meta.uuid);
  std::vector<std::string> got = r->backups_removed;
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  EXPECT_TRUE(r->backups_kept.empty());

  EXPECT_EQ(store_->GetGroup(group_).status().code(), absl::StatusCode::kNotFound);
  for (const auto& v : vols_) {
    EXPECT_FALSE(store_->HasManifest(v.meta.uuid)) << v.meta.uuid;
    EXPECT_EQ(store_->OpenManifest(v.meta.uuid).status().code(), absl::StatusCode::kNotFound);
  }
  auto groups = store_->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(*groups, std::vector<std::string>{other});
  // The other group shares chunks with the deleted one: it still restores, now and after reopen.
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < kept.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, kept[i].meta.uuid, kept[i].image,
                                             tmp_.Sub(absl::StrCat("kept", i))));
    }
    Reopen();
  }
  EXPECT_EQ(store_->DeleteGroup(group_).status().code(), absl::StatusCode::kNotFound);
  // The name is free again.
  std::vector<testing::ImportedVolume> again =
      testing::ImportSampleGroup(*store_, pool_, tmp_, group_, 8, {1 * kMiB, 1 * kMiB, 1 * kMiB});
  EXPECT_EQ(again.size(), 3u);
}

TEST_P(LifecycleTest, ABackupTwoGroupsNameIsKeptUntilTheLastGoes) {
  auto group = store_->GetGroup(group_);
  ASSERT_TRUE(group.ok());
  engine::GroupRecord twin = *group;
  twin.group_uuid = engine::NewUuid();
  twin.volume_uuids.resize(1);  // shares the Root backup
  ASSERT_TRUE(store_->PutGroup(twin).ok());

  absl::StatusOr<engine::DeleteResult> r = store_->DeleteGroup(group_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->backups_kept, std::vector<std::string>{twin.volume_uuids[0]});
  EXPECT_EQ(r->backups_removed.size(), 2u);
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, vols_[0].meta.uuid, vols_[0].image,
                                         tmp_.Sub("root.out")));
  r = store_->DeleteGroup(twin.group_uuid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->backups_removed, std::vector<std::string>{twin.volume_uuids[0]});
  EXPECT_FALSE(store_->HasManifest(vols_[0].meta.uuid));
}

TEST_P(LifecycleTest, DeleteBackupRefusesOneAGroupNamesAndTakesOneNoGroupNames) {
  const auto files = Files();
  absl::StatusOr<engine::DeleteResult> r = store_->DeleteBackup(vols_[1].meta.uuid);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), group_)) << r.status();
  EXPECT_EQ(Files(), files);

  engine::ImportOptions o;
  o.source = vols_[2].image;
  o.meta = testing::NewMeta(engine::NewUuid(), "Data");
  o.add_to_group = false;
  engine::ImportStats stats;
  auto loose = engine::ImportVolume(*store_, pool_, o, &stats);
  ASSERT_TRUE(loose.ok()) << loose.status();
  r = store_->DeleteBackup(loose->uuid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->backups_removed, std::vector<std::string>{loose->uuid});
  EXPECT_TRUE(r->groups_removed.empty());
  EXPECT_FALSE(store_->HasManifest(loose->uuid));
  ExpectAllRestore();
}

TEST_P(LifecycleTest, BadDeletesAreClearErrorsAndChangeNothing) {
  const auto files = Files();
  const std::string unknown = engine::NewUuid();
  absl::StatusOr<engine::DeleteResult> r = store_->DeleteGroup(unknown);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), unknown)) << r.status();
  EXPECT_EQ(store_->DeleteBackup(unknown).status().code(), absl::StatusCode::kNotFound);
  for (const char* bad : {"", "../../etc", "0123456789ABCDEF0123456789ABCDEF"}) {
    EXPECT_EQ(store_->DeleteGroup(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(store_->DeleteBackup(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(Files(), files);

  // A read-only store deletes nothing.
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  auto ro = testing::OpenStore(dir_, GetParam(), false, &pool_);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_EQ((*ro)->DeleteGroup(group_).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Files(), files);
}

// A delete that stopped at any point is finished by the next writable open: the group never
// comes back, and never names a missing manifest.
TEST_P(LifecycleTest, AnInterruptedDeleteIsFinishedOnOpen) {
  for (size_t unlinked = 0; unlinked <= vols_.size(); ++unlinked) {
    SCOPED_TRACE(absl::StrCat(unlinked, " manifests unlinked before the crash"));
    const std::string g = unlinked == 0 ? group_ : engine::NewUuid();
    std::vector<testing::ImportedVolume> vols =
        unlinked == 0 ? vols_
                      : testing::ImportSampleGroup(*store_, pool_, tmp_, g, 20 + unlinked,
                                                   {1 * kMiB, 1 * kMiB, 1 * kMiB});
    ASSERT_TRUE(store_->Flush().ok());
    // What DeleteGroup does first, then `unlinked` of its manifests, then a crash.
    ASSERT_EQ(::rename(store_->GroupPath(g).c_str(),
                       absl::StrCat(dir_, "/deleting/", g, ".group").c_str()),
              0);
    for (size_t i = 0; i < unlinked; ++i) {
      ASSERT_EQ(::unlink(store_->ManifestPath(vols[i].meta.uuid).c_str()), 0);
    }
    Reopen();
    EXPECT_EQ(store_->GetGroup(g).status().code(), absl::StatusCode::kNotFound);
    for (const auto& v : vols) EXPECT_FALSE(store_->HasManifest(v.meta.uuid));
    EXPECT_TRUE(testing::ListFiles(absl::StrCat(dir_, "/deleting")).empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, LifecycleTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
