// Garbage collection: after a delete, gc gives the space back and every published backup still
// restores byte for byte; the races against work that runs during a collection, played step by
// step; a dry run changes nothing.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/format/volume_backup.h"
#include "engine/local/garbage_collector.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::TempDir;
using engine::GarbageCollector;
using engine::GcOptions;

constexpr size_t kMiB = 1 << 20;
// Small packs, so that a few MiB of backups spread over several.
constexpr uint64_t kPackTarget = 2 * kMiB;

class GcTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_);
    store_ = Open(dir_);
    ASSERT_NE(store_, nullptr);
    old_ = testing::ImportSampleGroup(*store_, pool_, tmp_, old_group_, 3,
                                      {3 * kMiB + 512, 2 * kMiB, 2 * kMiB - 7});
    new_ =
        testing::ImportRelatedGroup(*store_, pool_, tmp_, new_group_, old_[0].image, old_[1].image);
    ASSERT_TRUE(store_->Flush().ok());
  }

  void TearDown() override {
    if (store_ != nullptr) {
      EXPECT_TRUE(store_->Close().ok());
    }
  }

  std::unique_ptr<engine::LocalStore> Open(const std::string& dir) {
    engine::LocalStoreOptions o;
    o.queue.backend = GetParam();
    o.pool = &pool_;
    o.pack_target = kPackTarget;
    // A small memtable: the index saves runs during imports and collections, and merges them.
    o.index.memtable_entries = 256;
    auto s = engine::LocalStore::Open(dir, o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  void Reopen() {
    ASSERT_TRUE(store_->Close().ok());
    store_ = Open(dir_);
    ASSERT_NE(store_, nullptr);
  }

  void ExpectRestores(const std::vector<testing::ImportedVolume>& vols) {
    for (size_t i = 0; i < vols.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, vols[i].meta.uuid, vols[i].image,
                                             tmp_.Sub(absl::StrCat("out", i))));
    }
  }

  void ExpectVerifies() {
    auto report = engine::VerifyStore(*store_, pool_, engine::VerifyMode::kFull);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->problems.empty()) << report->problems.front();
  }

  absl::StatusOr<engine::GcStats> Collect(GcOptions o = GcOptions()) {
    GarbageCollector gc(*store_, o);
    absl::Status st = gc.Run();
    if (!st.ok()) return st;
    return gc.stats();
  }

  // Runs steps until the collector reaches `phase`.
  void StepUntil(GarbageCollector& gc, GarbageCollector::Phase phase) {
    while (gc.phase() != phase) {
      absl::StatusOr<bool> more = gc.Step();
      ASSERT_TRUE(more.ok()) << more.status();
      ASSERT_TRUE(*more || phase == GarbageCollector::Phase::kDone);
    }
  }

  void RunToEnd(GarbageCollector& gc) { StepUntil(gc, GarbageCollector::Phase::kDone); }

  // The chunk ids of a volume backup's manifest (holes left out).
  std::vector<codec::ChunkId> ChunksOf(const std::string& backup) {
    std::vector<codec::ChunkId> ids;
    for (const auto& e : testing::ManifestEntries(*store_, backup)) {
      if (!e.zero) ids.push_back(e.id);
    }
    return ids;
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
  std::unique_ptr<engine::LocalStore> store_;
  std::string old_group_ = engine::NewUuid(), new_group_ = engine::NewUuid();
  std::vector<testing::ImportedVolume> old_, new_;
};

TEST_P(GcTest, NothingDeletedNothingReclaimed) {
  const auto packs = testing::PackSizes(dir_);
  auto stats = Collect();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->bytes_reclaimed, 0u);
  EXPECT_EQ(stats->packs_removed + stats->packs_rewritten, 0u);
  EXPECT_EQ(stats->manifests, old_.size() + new_.size());
  EXPECT_EQ(testing::PackSizes(dir_), packs);
  ExpectRestores(old_);
  ExpectRestores(new_);
}

TEST_P(GcTest, DeletedGroupSpaceComesBackAndTheRestRestores) {
  ASSERT_TRUE(store_->DeleteGroup(old_group_).ok());
  const uint64_t before = testing::TotalPackBytes(dir_);

  GcOptions dry;
  dry.dry_run = true;
  auto planned = Collect(dry);
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_GT(planned->bytes_reclaimed, 0u);
  EXPECT_EQ(testing::TotalPackBytes(dir_), before);  // a dry run changes nothing

  auto stats = Collect();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->packs_removed + stats->packs_rewritten, 0u);
  EXPECT_EQ(stats->bytes_reclaimed, planned->bytes_reclaimed);
  // Reclaimed counts record bytes; the packs the copies start add a header each.
  const uint64_t after = testing::TotalPackBytes(dir_);
  EXPECT_LE(before - after, stats->bytes_reclaimed);
  EXPECT_GE(before - after + 2 * engine::kPackHeaderSize, stats->bytes_reclaimed);
  ExpectVerifies();
  ExpectRestores(new_);
  Reopen();
  ExpectVerifies();
  ExpectRestores(new_);

  // Compared with a store that only ever held the newer group: at most 1.1x its size (repacking
  // everything below 0.9 live).
  GcOptions tight;
  tight.repack_below = 0.9;
  ASSERT_TRUE(Collect(tight).ok());
  const std::string fresh = tmp_.Sub("fresh");
  testing::InitStore(fresh);
  auto f = Open(fresh);
  ASSERT_NE(f, nullptr);
  engine::CopyStats copied;
  ASSERT_TRUE(engine::CopyGroup(*store_, *f, new_group_, engine::CopyOptions(), &copied).ok());
  ASSERT_TRUE(f->Close().ok());
  EXPECT_LE(testing::TotalPackBytes(dir_), testing::TotalPackBytes(fresh) * 11 / 10)
      << testing::TotalPackBytes(dir_) << " vs fresh " << testing::TotalPackBytes(fresh);

  // A second collection finds nothing more.
  auto again = Collect(tight);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bytes_reclaimed, 0u);
  ExpectRestores(new_);
}

// A chunk the store answered "have" for during a collection survives it, so that the manifest
// the asker publishes afterwards is good.
TEST_P(GcTest, ChunksAnsweredHaveDuringACollectionSurviveIt) {
  const std::vector<codec::ChunkId> ids = ChunksOf(old_[2].meta.uuid);  // random: unique to it
  const std::vector<engine::ManifestEntry> entries =
      testing::ManifestEntries(*store_, old_[2].meta.uuid);
  ASSERT_TRUE(store_->DeleteGroup(old_group_).ok());
  // Without the question, the collection would take them.
  GcOptions dry;
  dry.dry_run = true;
  auto planned = Collect(dry);
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_GT(planned->bytes_reclaimed, 1 * kMiB);

  GarbageCollector gc(*store_, GcOptions());
  StepUntil(gc, GarbageCollector::Phase::kMark);
  std::vector<bool> have;
  ASSERT_TRUE(store_->HaveChunks(ids, &have).ok());
  EXPECT_TRUE(std::all_of(have.begin(), have.end(), [](bool b) { return b; }));
  RunToEnd(gc);

  // The sync that asked publishes its manifest now, under a new uuid.
  engine::VolumeBackupMeta meta = old_[2].meta;
  meta.uuid = engine::NewUuid();
  testing::VectorManifestSource source(meta, entries);
  ASSERT_TRUE(store_->PutManifest(meta, source).ok());
  ExpectVerifies();
  EXPECT_TRUE(
      testing::RestoresIdentical(*store_, pool_, meta.uuid, old_[2].image, tmp_.Sub("asked.out")));
}

// An import between two steps of a collection deduplicates against chunks that only a deleted
// backup named: they survive, and it restores. After Plan (the last look at the manifests) only
// the pins of its lookups keep them.
TEST_P(GcTest, ImportDuringACollectionKeepsWhatItDeduplicatedAgainst) {
  ASSERT_TRUE(store_->DeleteGroup(old_group_).ok());
  GarbageCollector gc(*store_, GcOptions());
  StepUntil(gc, GarbageCollector::Phase::kSweep);
  testing::ImportedVolume again =
      testing::ImportOk(*store_, pool_, old_[2].image, engine::NewUuid(), "Root");
  EXPECT_EQ(again.stats.new_chunks, 0u);  // all deduplicated
  RunToEnd(gc);
  ExpectVerifies();
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, again.meta.uuid, again.image,
                                         tmp_.Sub("again.out")));
  Reopen();
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, again.meta.uuid, again.image,
                                         tmp_.Sub("again2.out")));
}

// Records a writer landed before a collection and has not named yet (a sync in flight holds
// them) survive it; once released, the next collection takes them.
TEST_P(GcTest, HeldRecordsSurviveUntilReleased) {
  const uint64_t hold = store_->HoldNewRecords();
  const std::string loose = tmp_.Sub("loose.img");
  testing::WriteRandomFile(loose, 1 * kMiB, 77);
  engine::ImportOptions o;
  o.source = loose;
  o.meta = testing::NewMeta(engine::NewUuid());
  o.add_to_group = false;
  engine::ImportStats stats;
  auto meta = engine::ImportVolume(*store_, pool_, o, &stats);
  ASSERT_TRUE(meta.ok()) << meta.status();
  const std::vector<engine::ManifestEntry> entries = testing::ManifestEntries(*store_, meta->uuid);
  // Unnamed again: as if the sync had landed the chunks and not yet published.
  ASSERT_TRUE(store_->DeleteBackup(meta->uuid).ok());

  auto first = Collect();
  ASSERT_TRUE(first.ok()) << first.status();
  testing::VectorManifestSource source(*meta, entries);
  ASSERT_TRUE(store_->PutManifest(*meta, source).ok());
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, meta->uuid, loose, tmp_.Sub("held.out")));

  ASSERT_TRUE(store_->DeleteBackup(meta->uuid).ok());
  store_->ReleaseHold(hold);
  const uint64_t before = testing::TotalPackBytes(dir_);
  auto second = Collect();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_GE(second->bytes_reclaimed, 1 * kMiB);
  EXPECT_LE(before - testing::TotalPackBytes(dir_), second->bytes_reclaimed);
  EXPECT_GE(before - testing::TotalPackBytes(dir_) + 2 * engine::kPackHeaderSize,
            second->bytes_reclaimed);
  testing::VectorManifestSource gone(*meta, entries);
  EXPECT_EQ(store_->PutManifest(*meta, gone).code(), absl::StatusCode::kFailedPrecondition);
  ExpectRestores(old_);
}

// An import that looked its chunks up before a collection removed records publishes nothing.
TEST_P(GcTest, CollectionsCountTheirGenerations) {
  const uint64_t g0 = store_->gc_generation();
  ASSERT_TRUE(Collect().ok());
  EXPECT_EQ(store_->gc_generation(), g0);  // nothing removed
  ASSERT_TRUE(store_->DeleteGroup(old_group_).ok());
  ASSERT_TRUE(Collect().ok());
  EXPECT_EQ(store_->gc_generation(), g0 + 1);
}

TEST_P(GcTest, ADamagedIndexStopsTheCollectionBeforeItChangesAnything) {
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  // A manifest naming a chunk the store does not hold: copied in from another store.
  const std::string other = tmp_.Sub("other");
  testing::InitStore(other);
  {
    auto o = Open(other);
    ASSERT_NE(o, nullptr);
    const std::string image = tmp_.Sub("stranger.img");
    testing::WriteRandomFile(image, 1 * kMiB, 12345);  // shares no chunk with the store
    testing::ImportedVolume v = testing::ImportOk(*o, pool_, image, engine::NewUuid(), "Root");
    ASSERT_TRUE(o->Close().ok());
    ASSERT_EQ(::link(absl::StrCat(other, "/volumes/", v.meta.uuid, ".manifest").c_str(),
                     absl::StrCat(dir_, "/volumes/", v.meta.uuid, ".manifest").c_str()),
              0);
  }
  store_ = Open(dir_);
  ASSERT_NE(store_, nullptr);
  ASSERT_TRUE(store_->DeleteGroup(old_group_).ok());
  const auto packs = testing::PackSizes(dir_);
  auto stats = Collect();
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kFailedPrecondition) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "verify")) << stats.status();
  EXPECT_EQ(testing::PackSizes(dir_), packs);
  ExpectRestores(new_);
}

// A daemon serves other requests between steps: a step looks up at most mark_batch entries,
// however large one manifest is, and the outcome does not depend on the step size.
TEST_P(GcTest, MarkStepsAreBoundedByEntriesNotManifests) {
  ASSERT_TRUE(store_->DeleteGroup(old_group_).ok());
  GcOptions whole;
  whole.dry_run = true;
  auto reference = Collect(whole);
  ASSERT_TRUE(reference.ok()) << reference.status();

  GcOptions small = whole;
  small.mark_batch = 100;
  uint64_t mark_steps = 0;
  small.before_step = [&](uint64_t, const std::string& phase) { mark_steps += phase == "mark"; };
  auto stepped = Collect(small);
  ASSERT_TRUE(stepped.ok()) << stepped.status();
  EXPECT_GE(mark_steps, stepped->chunks_referenced / 100);
  EXPECT_GT(mark_steps, stepped->manifests);
  EXPECT_EQ(stepped->manifests, reference->manifests);
  EXPECT_EQ(stepped->chunks_referenced, reference->chunks_referenced);
  EXPECT_EQ(stepped->records_live, reference->records_live);
  EXPECT_EQ(stepped->bytes_reclaimed, reference->bytes_reclaimed);
}

INSTANTIATE_TEST_SUITE_P(Backends, GcTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
