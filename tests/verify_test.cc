// VerifyStore: a clean store is ok; damage is found and pinned on exactly the backups it breaks.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/repairer.h"
#include "engine/pipeline/restorer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

std::string Problems(const engine::VerifyReport& r) {
  std::string s;
  for (const auto& p : r.problems) absl::StrAppend(&s, "\n  problem: ", p);
  for (const auto& d : r.damaged) {
    absl::StrAppend(&s, "\n  damaged: ", d.uuid, " damaged=", d.damaged_chunks,
                    " missing=", d.missing_chunks, " ", d.problem);
  }
  return s;
}

class VerifyTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_);
    auto s = testing::OpenStore(dir_, GetParam(), true, &pool_);
    ASSERT_TRUE(s.ok()) << s.status();
    // Two volumes with disjoint content: text (compressed records) and random (raw records).
    const std::string text = tmp_.Sub("text"), random = tmp_.Sub("random");
    testing::WriteTextFile(text, 3 * kMiB, 1);
    testing::WriteRandomFile(random, 2 * kMiB + 300, 2);
    auto m1 = testing::Import(**s, pool_, text, group_, "Root", &stats_[0]);
    ASSERT_TRUE(m1.ok()) << m1.status();
    auto m2 = testing::Import(**s, pool_, random, group_, "Data", &stats_[1]);
    ASSERT_TRUE(m2.ok()) << m2.status();
    uuids_ = {m1->uuid, m2->uuid};
    ASSERT_TRUE((*s)->Close().ok());
  }

  std::unique_ptr<engine::LocalStore> Reopen(bool writable = false) {
    auto s = testing::OpenStore(dir_, GetParam(), writable, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  engine::VerifyReport Verify(engine::LocalStore& store,
                              engine::VerifyMode mode = engine::VerifyMode::kFull) {
    auto r = engine::VerifyStore(store, pool_, mode);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : engine::VerifyReport{};
  }

  // Damages one payload byte of the record holding a chunk of backup `which`; returns how many
  // of that backup's data entries name a chunk of the record.
  uint64_t DamageRecordOf(int which) {
    auto s = Reopen();
    if (s == nullptr) return 0;
    const auto entries = testing::ManifestEntries(*s, uuids_[which]);
    std::vector<engine::ManifestEntry> data;
    for (const auto& e : entries) {
      if (!e.zero) data.push_back(e);
    }
    EXPECT_FALSE(data.empty());
    if (data.empty()) return 0;
    const std::optional<engine::ChunkLocation> loc = s->index().Find(data[data.size() / 3].id);
    EXPECT_TRUE(loc.has_value());
    if (!loc.has_value()) return 0;
    damaged_record_ = loc->record;
    uint64_t named = 0;
    for (const auto& e : data) {
      const std::optional<engine::ChunkLocation> l = s->index().Find(e.id);
      if (l.has_value() && l->record == loc->record) ++named;
    }
    testing::FlipByte(testing::PackPath(dir_, loc->record.pack),
                      testing::PayloadOffset(dir_, loc->record) + 17, 0x04);
    return named;
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
  std::string group_ = engine::NewUuid();
  std::vector<std::string> uuids_;
  engine::ImportStats stats_[2];
  engine::RecordLocation damaged_record_;
};

TEST_P(VerifyTest, CleanStoreVerifies) {
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  for (auto mode : {engine::VerifyMode::kFull, engine::VerifyMode::kChecksum}) {
    const auto r = Verify(*s, mode);
    EXPECT_TRUE(r.ok()) << Problems(r);
    EXPECT_EQ(r.bad_records, 0u);
    EXPECT_EQ(r.records, stats_[0].records + stats_[1].records);
    EXPECT_EQ(r.chunks, s->index().size());
    EXPECT_EQ(r.chunks, stats_[0].new_chunks + stats_[1].new_chunks);
    EXPECT_EQ(r.stored_bytes, stats_[0].stored_bytes + stats_[1].stored_bytes);
    EXPECT_EQ(r.manifests, 2u);
    EXPECT_EQ(r.groups, 1u);
  }
}

TEST_P(VerifyTest, ADamagedIndexRunIsReported) {
  auto runs = io::ListDir(dir_ + "/index", ".run");
  ASSERT_TRUE(runs.ok() && runs->size() == 1) << runs.status();
  const std::string run = dir_ + "/index/" + (*runs)[0] + ".run";
  // The bucket table follows the 64-byte header and 64 bytes of filter per bucket (one bucket
  // per 56 entries): make the 6th bucket's start point far past the end.
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  const uint64_t buckets = (s->index().size() + 55) / 56;
  s.reset();
  const uint64_t huge = uint64_t{1} << 40;
  {
    auto fd = io::OpenFile(run, O_RDWR);
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_TRUE(io::PwriteFull(fd->get(),
                               absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&huge), 8),
                               64 + buckets * 64 + 5 * 8)
                    .ok());
  }
  s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto r = Verify(*s);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(std::any_of(r.problems.begin(), r.problems.end(), [](const std::string& p) {
    return absl::StrContains(p, "index run") && absl::StrContains(p, "rebuild");
  })) << Problems(r);
}

TEST_P(VerifyTest, DamagedRecordNamesExactlyTheBackupsThatUseIt) {
  for (int which : {0, 1}) {
    SCOPED_TRACE(which);
    const uint64_t named = DamageRecordOf(which);
    ASSERT_GT(named, 0u);
    for (auto mode : {engine::VerifyMode::kFull, engine::VerifyMode::kChecksum}) {
      auto s = Reopen();
      ASSERT_NE(s, nullptr);
      const auto r = Verify(*s, mode);
      EXPECT_FALSE(r.ok());
      EXPECT_EQ(r.bad_records, 1u) << Problems(r);
      ASSERT_EQ(r.damaged.size(), 1u) << Problems(r);
      EXPECT_EQ(r.damaged[0].uuid, uuids_[which]);
      EXPECT_EQ(r.damaged[0].group_uuid, group_);
      EXPECT_EQ(r.damaged[0].damaged_chunks, named);
      EXPECT_EQ(r.damaged[0].missing_chunks, 0u);
      ASSERT_FALSE(r.problems.empty());
      EXPECT_TRUE(absl::StrContains(
          r.problems[0],
          absl::StrCat(engine::PackFileName(damaged_record_.pack), ":", damaged_record_.offset)))
          << r.problems[0];
    }
    // Undo the damage for the next round.
    testing::FlipByte(testing::PackPath(dir_, damaged_record_.pack),
                      testing::PayloadOffset(dir_, damaged_record_) + 17, 0x04);
    auto s = Reopen();
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(Verify(*s).ok());
  }
}

TEST_P(VerifyTest, DeletedManifestThatAGroupNamesIsReported) {
  ASSERT_EQ(::unlink((dir_ + "/volumes/" + uuids_[1] + ".manifest").c_str()), 0);
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto r = Verify(*s);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.manifests, 1u);
  EXPECT_EQ(r.bad_records, 0u);
  bool named = false;
  for (const auto& p : r.problems) {
    if (absl::StrContains(p, uuids_[1]) && absl::StrContains(p, group_)) named = true;
  }
  EXPECT_TRUE(named) << Problems(r);
}

TEST_P(VerifyTest, DamagedManifestIsReported) {
  testing::FlipByte(dir_ + "/volumes/" + uuids_[0] + ".manifest", 40, 0x01);
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto r = Verify(*s);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.damaged.size(), 1u) << Problems(r);
  EXPECT_EQ(r.damaged[0].uuid, uuids_[0]);
  EXPECT_FALSE(r.damaged[0].problem.empty());
  // The group names it, so the group is reported too.
  bool group_named = false;
  for (const auto& p : r.problems) group_named |= absl::StrContains(p, uuids_[0]);
  EXPECT_TRUE(group_named) << Problems(r);
}

// A pack cut after the commit (lost blocks): the chunks of the cut records are missing, and the
// backups that name them are reported.
TEST_P(VerifyTest, ChunksLostFromAPackAreReportedMissing) {
  const std::string pack = testing::PackPath(dir_, 1);
  const int64_t size = testing::FileSize(pack);
  ASSERT_GT(size, 100);
  testing::TruncateFile(pack, static_cast<uint64_t>(size - 100));
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->open_report().index_rebuilt);
  const auto r = Verify(*s);
  EXPECT_FALSE(r.ok());
  // The last record belonged to the random volume, imported second.
  ASSERT_EQ(r.damaged.size(), 1u) << Problems(r);
  EXPECT_EQ(r.damaged[0].uuid, uuids_[1]);
  EXPECT_GT(r.damaged[0].missing_chunks, 0u);
}

TEST_P(VerifyTest, DamagedRecordHeaderIsFound) {
  // Flip a byte of a record's chunk table: the index (from the snapshot) still points there.
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto records = testing::IndexedRecords(*s);
  ASSERT_GE(records.size(), 3u);
  const auto target = records[records.size() / 2];
  s.reset();
  testing::FlipByte(testing::PackPath(dir_, target.pack), target.offset + 40, 0x01);
  s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto r = Verify(*s);
  EXPECT_FALSE(r.ok());
  // Verify scans the packs rather than trusting the index: the record's header no longer
  // parses, so it is a damaged region, and the index's chunks in it are reported dangling.
  EXPECT_EQ(r.bad_records, 0u) << Problems(r);
  ASSERT_FALSE(r.problems.empty());
  EXPECT_TRUE(absl::StrContains(r.problems[0], "damaged pack region")) << Problems(r);
  EXPECT_EQ(r.damaged.size(), 1u) << Problems(r);
}

// The same damage found by a scan instead (no index snapshot): the damaged region is reported,
// and the backup whose chunks it held is named with missing chunks.
TEST_P(VerifyTest, DamagedRecordHeaderFoundByAScan) {
  auto s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto records = testing::IndexedRecords(*s);
  ASSERT_GE(records.size(), 3u);
  const auto target = records[1];
  const auto chunks = testing::ChunksOfRecord(*s, target);
  s.reset();
  testing::FlipByte(testing::PackPath(dir_, target.pack), target.offset + 40, 0x01);
  ASSERT_EQ(::unlink((dir_ + "/index/STATE").c_str()), 0);
  s = Reopen();
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->open_report().index_rebuilt);
  ASSERT_EQ(s->open_report().damaged_regions.size(), 1u);
  EXPECT_TRUE(s->open_report().torn_tails_cut.empty());
  for (const auto& id : chunks) EXPECT_FALSE(s->index().Contains(id));
  const auto r = Verify(*s);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.damaged.size(), 1u) << Problems(r);
  EXPECT_EQ(r.damaged[0].missing_chunks, chunks.size());
  bool region = false;
  for (const auto& p : r.problems) region |= absl::StrContains(p, "damaged pack region");
  EXPECT_TRUE(region) << Problems(r);
  // A writable open leaves the damaged region for verify to report, then and later.
  s = Reopen(true);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->open_report().damaged_regions.size(), 1u);
  ASSERT_TRUE(s->Close().ok());
  s = Reopen();
  ASSERT_NE(s, nullptr);
  const auto later = Verify(*s);
  bool still = false;
  for (const auto& p : later.problems) still |= absl::StrContains(p, "damaged pack region");
  EXPECT_TRUE(still) << "the damaged region was forgotten once an index snapshot was saved"
                     << Problems(later);
}

// A manifest (as a peer hands it to PutManifest) whose entry lengths disagree with the chunks
// it names cannot be restored (restore fails with DataLoss). Either PutManifest refuses it, or
// verify must name it: "verify ok" has to mean "every backup restores".
TEST_P(VerifyTest, ManifestWhoseLengthsDisagreeWithItsChunksIsNamed) {
  auto s = Reopen(true);
  ASSERT_NE(s, nullptr);
  const auto entries = testing::ManifestEntries(*s, uuids_[1]);
  ASSERT_GE(entries.size(), 2u);
  ASSERT_FALSE(entries[0].zero);
  std::vector<engine::ManifestEntry> lying = {entries[0]};
  lying[0].length = entries[0].length * 2;
  engine::VolumeBackupMeta m = testing::NewMeta(group_, "Data");
  m.size = lying[0].length;
  testing::VectorManifestSource source(m, lying);
  absl::Status put = s->PutManifest(m, source);
  if (!put.ok()) return;  // refused up front: fine
  ASSERT_TRUE(s->Close().ok());
  s = Reopen();
  ASSERT_NE(s, nullptr);
  engine::RestoreOptions ro;
  ro.output = tmp_.Sub("out");
  EXPECT_EQ(engine::RestoreVolume(*s, pool_, m.uuid, ro, nullptr).code(),
            absl::StatusCode::kDataLoss);
  const auto r = Verify(*s);
  bool named = false;
  for (const auto& d : r.damaged) named |= d.uuid == m.uuid;
  EXPECT_TRUE(named) << "verify passes a backup that restore refuses" << Problems(r);
  EXPECT_FALSE(r.ok());
}

// verify --repair quarantines the damaged record: its chunks count as absent (durably), the
// backup it broke is listed as missing them, and no record problem is reported any more; a repair
// from another store that has the group brings good copies, and the backup restores again.
TEST_P(VerifyTest, RepairQuarantinesDamageThenAnotherStoreBringsGoodCopies) {
  const std::string other = tmp_.Sub("other");
  testing::InitStore(other);
  {
    auto s = Reopen();
    auto o = testing::OpenStore(other, GetParam(), true, &pool_);
    ASSERT_TRUE(o.ok()) << o.status();
    ASSERT_TRUE(engine::CopyGroup(*s, **o, group_, {}, nullptr, nullptr).ok());
    ASSERT_TRUE((*o)->Close().ok());
  }
  const uint64_t named = DamageRecordOf(1);
  ASSERT_GT(named, 0u);
  {
    auto s = Reopen(true);
    ASSERT_NE(s, nullptr);
    const auto r = Verify(*s);
    ASSERT_EQ(r.bad_records, 1u) << Problems(r);
    ASSERT_EQ(r.bad_chunks.size(), named);
    auto forgotten = s->ForgetRecordsOf(r.bad_chunks);
    ASSERT_TRUE(forgotten.ok()) << forgotten.status();
    EXPECT_EQ(*forgotten, 1u);
    ASSERT_TRUE(s->Close().ok());
  }
  {
    auto s = Reopen();
    ASSERT_NE(s, nullptr);
    const auto r = Verify(*s);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(r.problems.empty()) << Problems(r);
    EXPECT_EQ(r.unused_bad_records, 1u);
    ASSERT_EQ(r.damaged.size(), 1u) << Problems(r);
    EXPECT_EQ(r.damaged[0].uuid, uuids_[1]);
    EXPECT_EQ(r.damaged[0].damaged_chunks, 0u);
    EXPECT_EQ(r.damaged[0].missing_chunks, named);
  }
  auto s = Reopen(true);
  ASSERT_NE(s, nullptr);
  auto from = testing::OpenStore(other, GetParam(), false, &pool_);
  ASSERT_TRUE(from.ok()) << from.status();
  auto report = engine::RepairFrom(*s, **from, engine::VerifyMode::kFull);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->broken_before, std::vector<std::string>{uuids_[1]});
  EXPECT_TRUE(report->still_broken.empty());
  EXPECT_EQ(report->chunks_lacking, named);
  EXPECT_EQ(report->chunks_unavailable, 0u);
  EXPECT_GT(report->appended.records_appended, 0u);
  const auto r = Verify(*s);
  EXPECT_TRUE(r.ok()) << Problems(r);
  EXPECT_TRUE(
      testing::RestoresIdentical(*s, pool_, uuids_[1], tmp_.Sub("random"), tmp_.Sub("out")));
  EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, uuids_[0], tmp_.Sub("text"), tmp_.Sub("out")));
}

// After a quarantine, importing the same data again brings the chunks back for the old backup too.
TEST_P(VerifyTest, AfterAQuarantineAReimportRepairsTheOldBackup) {
  ASSERT_GT(DamageRecordOf(0), 0u);
  auto s = Reopen(true);
  ASSERT_NE(s, nullptr);
  const auto r = Verify(*s);
  ASSERT_FALSE(r.bad_chunks.empty()) << Problems(r);
  ASSERT_TRUE(s->ForgetRecordsOf(r.bad_chunks).ok());
  testing::ImportOk(*s, pool_, tmp_.Sub("text"), engine::NewUuid(), "Root");
  const auto after = Verify(*s);
  EXPECT_TRUE(after.ok()) << Problems(after);
  EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, uuids_[0], tmp_.Sub("text"), tmp_.Sub("out")));
}

INSTANTIATE_TEST_SUITE_P(Backends, VerifyTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
