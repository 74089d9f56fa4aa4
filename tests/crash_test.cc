// Crash safety: a store damaged the way a crash damages it (torn pack tails, a lost index) opens
// cleanly, and an import killed with SIGKILL at any point leaves either the whole backup or
// nothing of it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "codec/record.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

class CrashTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_);
  }

  std::unique_ptr<engine::LocalStore> OpenOk(bool writable) {
    auto s = testing::OpenStore(dir_, GetParam(), writable, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // Checks that every manifest's chunks are in the index and the store verifies.
  void ExpectConsistent(engine::LocalStore& store) {
    auto report = engine::VerifyStore(store, pool_, engine::VerifyMode::kFull);
    ASSERT_TRUE(report.ok()) << report.status();
    std::string why;
    for (const auto& p : report->problems) absl::StrAppend(&why, "\n", p);
    EXPECT_TRUE(report->ok()) << why;
    auto manifests = store.ListManifests();
    ASSERT_TRUE(manifests.ok());
    for (const auto& m : *manifests) {
      for (const auto& e : testing::ManifestEntries(store, m)) {
        if (!e.zero) {
          ASSERT_TRUE(store.index().Contains(e.id)) << m << " names a chunk the store lacks";
        }
      }
    }
  }

  std::string Cli() const { return CHUNKFERRY_CLI; }
  std::string IoFlag() const {
    return absl::StrCat("--io=", GetParam() == io::Backend::kUring ? "uring" : "threads");
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
};

TEST_P(CrashTest, GarbageAndHalfRecordAfterACommitAndNoIndex) {
  const std::string img1 = tmp_.Sub("img1"), img2 = tmp_.Sub("img2");
  testing::WriteMixedFile(img1, 3 * kMiB + 11, 1);
  testing::WriteRandomFile(img2, 2 * kMiB, 2);
  std::vector<std::string> uuids;
  {
    auto s = OpenOk(true);
    ASSERT_NE(s, nullptr);
    const std::string group = engine::NewUuid();
    for (const auto& img : {img1, img2}) {
      auto m = testing::Import(*s, pool_, img, group);
      ASSERT_TRUE(m.ok()) << m.status();
      uuids.push_back(m->uuid);
    }
    ASSERT_TRUE(s->Close().ok());
  }
  const std::string pack = testing::PackPath(dir_, 1);
  const int64_t committed = testing::FileSize(pack);
  // What a crash in the middle of the next import leaves: some bytes of a buffer that never
  // became a record, then the first part of a record.
  std::vector<uint8_t> garbage(3000, 0xab);
  testing::AppendToFile(pack, garbage);
  std::vector<uint8_t> half;
  {
    // Take a real record from the pack and keep its first half.
    auto s = OpenOk(false);
    ASSERT_NE(s, nullptr);
    const auto recs = testing::IndexedRecords(*s);
    ASSERT_FALSE(recs.empty());
    const auto all = testing::ReadFile(pack);
    const auto& r = recs.back();
    half.assign(all.begin() + static_cast<long>(r.offset),
                all.begin() + static_cast<long>(r.offset + r.size / 2));
  }
  testing::AppendToFile(pack, half);
  ASSERT_EQ(::unlink((dir_ + "/index/STATE").c_str()), 0);

  auto s = OpenOk(true);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->open_report().index_rebuilt);
  ASSERT_EQ(s->open_report().torn_tails_cut.size(), 1u);
  EXPECT_EQ(testing::FileSize(pack), committed);
  ExpectConsistent(*s);
  for (size_t i = 0; i < uuids.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, uuids[i], i == 0 ? img1 : img2,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
  // And the store takes new imports.
  const std::string img3 = tmp_.Sub("img3");
  testing::WriteTextFile(img3, 1 * kMiB, 3);
  auto m = testing::Import(*s, pool_, img3, engine::NewUuid());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, m->uuid, img3, tmp_.Sub("out3")));
}

// Kills `chunkferry import` at several points of a 64 MiB import.
TEST_P(CrashTest, ImportKilledWithSigkillLeavesAllOrNothing) {
  const std::string img = tmp_.Sub("big.img");
  testing::WriteRandomFile(img, 64 * kMiB, 7);
  const std::string group = engine::NewUuid(), volume = engine::NewUuid();
  // Kill points: right away, and once the packs have grown past a threshold.
  struct Kill {
    int delay_ms;
    uint64_t pack_bytes;
  };
  const std::vector<Kill> kills = {{5, 0}, {0, 8 * kMiB}, {0, 40 * kMiB}, {0, 64 * kMiB}};
  int complete = 0, absent = 0;
  for (size_t k = 0; k < kills.size(); ++k) {
    SCOPED_TRACE(absl::StrCat("kill point ", k));
    // A fresh store each time, so that every import has all 64 MiB to write.
    dir_ = tmp_.Sub(absl::StrCat("store", k));
    testing::InitStore(dir_);
    const std::string uuid = engine::NewUuid();
    const uint64_t before = testing::TotalPackBytes(dir_);
    const pid_t pid = testing::StartProcess({Cli(), "import", "--store", dir_, "--image", img,
                                             "--group", group, "--volume", volume, "--uuid", uuid,
                                             "--quiet", "--threads=2", IoFlag()});
    ASSERT_GT(pid, 0);
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        // It finished before the kill point.
        break;
      }
      const auto elapsed = std::chrono::steady_clock::now() - start;
      const bool time_up =
          kills[k].delay_ms > 0 && elapsed >= std::chrono::milliseconds(kills[k].delay_ms);
      const bool grown =
          kills[k].pack_bytes > 0 && testing::TotalPackBytes(dir_) >= before + kills[k].pack_bytes;
      if (time_up || grown || elapsed > std::chrono::seconds(60)) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }

    auto s = OpenOk(true);
    ASSERT_NE(s, nullptr);
    ExpectConsistent(*s);
    EXPECT_TRUE(testing::ListFiles(dir_ + "/tmp").empty());
    const bool has_manifest = FileExists(s->ManifestPath(uuid));
    auto g = s->GetGroup(group);
    if (g.ok() &&
        std::find(g->volume_uuids.begin(), g->volume_uuids.end(), uuid) != g->volume_uuids.end()) {
      EXPECT_TRUE(has_manifest) << "the group names a backup without a manifest";
    }
    if (has_manifest) {
      ++complete;
      EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, uuid, img, tmp_.Sub("out")));
    } else {
      ++absent;
      // Rerunning the import completes it.
      auto again = testing::Import(*s, pool_, img, group);
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, again->uuid, img, tmp_.Sub("out")));
    }
    ASSERT_TRUE(s->Close().ok());
  }
  // The early kills must have caught an import in flight.
  EXPECT_GE(absent, 1) << complete << " complete";
  // After everything, a full CLI import of the same image still works and stores nothing new.
  const uint64_t packs = testing::TotalPackBytes(dir_);
  const auto r = testing::RunProcess({Cli(), "import", "--store", dir_, "--image", img, "--group",
                                      group, "--volume", volume, "--quiet", IoFlag()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::TotalPackBytes(dir_), packs);
}

// A torn record whose payload holds the bytes of another, intact record (the image being backed
// up contains a chunkferry pack, e.g. a VM that hosts a store): a crash that leaves part of such
// a record at the end of a pack is still a torn tail, and is cut back whole.
TEST_P(CrashTest, TornTailWhosePayloadHoldsARecordIsCut) {
  // An image of random bytes with one small, valid, raw record embedded in every 64 KiB (one
  // per record of the store, so that zstd finds nothing to gain and stores them raw).
  std::vector<uint8_t> image = testing::RandomBytes(1 * kMiB, 1);
  const codec::ChunkHasher hasher;
  for (size_t k = 0; k < 16; ++k) {
    const auto chunk = testing::RandomBytes(4096, 100 + k);
    const codec::ChunkRef ref{hasher.Hash(chunk), 4096};
    const std::vector<absl::Span<const uint8_t>> parts = {chunk};
    std::vector<uint8_t> rec(codec::MaxRecordSize(1, 4096));
    auto n = codec::EncodeRecord(absl::MakeConstSpan(&ref, 1), parts, nullptr, absl::MakeSpan(rec));
    ASSERT_TRUE(n.ok()) << n.status();
    std::copy(rec.begin(), rec.begin() + static_cast<long>(*n),
              image.begin() + static_cast<long>(k * (64 << 10) + 1000));
  }
  const std::string img = tmp_.Sub("img");
  testing::WriteFile(img, image);
  std::string uuid;
  engine::RecordLocation victim;
  {
    auto s = OpenOk(true);
    ASSERT_NE(s, nullptr);
    auto m = testing::Import(*s, pool_, img, engine::NewUuid());
    ASSERT_TRUE(m.ok()) << m.status();
    uuid = m->uuid;
    const auto recs = testing::IndexedRecords(*s);
    ASSERT_EQ(recs.size(), 16u);
    victim = recs[8];
    ASSERT_TRUE(s->Close().ok());
  }
  const std::string pack = testing::PackPath(dir_, 1);
  const int64_t committed = testing::FileSize(pack);
  const auto all = testing::ReadFile(pack);
  const std::vector<uint8_t> whole(all.begin() + static_cast<long>(victim.offset),
                                   all.begin() + static_cast<long>(victim.offset + victim.size));
  auto view = codec::ParseRecord(whole);
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->codec, codec::Codec::kRaw) << "premise: the victim record is stored raw";
  // The crash: 90% of that record (header, table and most of its payload) at the end.
  testing::AppendToFile(pack, absl::MakeConstSpan(whole.data(), whole.size() * 9 / 10));

  auto s = OpenOk(true);
  ASSERT_NE(s, nullptr);
  const auto& report = s->open_report();
  EXPECT_EQ(report.torn_tails_cut.size(), 1u);
  EXPECT_TRUE(report.damaged_regions.empty())
      << "a torn tail was taken for damage followed by an intact record: "
      << (report.damaged_regions.empty() ? "" : report.damaged_regions[0]);
  EXPECT_EQ(testing::FileSize(pack), committed) << "the torn tail was not cut back whole";
  ExpectConsistent(*s);
  EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, uuid, img, tmp_.Sub("out")));
}

// A power loss during an append can leave any prefix of what was written, and with O_DIRECT
// appends even a file whose size covers blocks that never reached the disk (zeros, or old bytes
// of the device): a record's header and table can survive while its payload does not. Whatever a
// crash leaves after the last commit, at every record boundary and inside every part of a record,
// the next writable open must index only whole records, cut the rest, and keep every committed
// backup restorable; a re-run then brings back whatever the crash lost.
TEST_P(CrashTest, TornWritesAtEveryRecordBoundaryAndInsideRecordsAreCutNotIndexed) {
  const std::string img1 = tmp_.Sub("img1"), img2 = tmp_.Sub("img2");
  testing::WriteMixedFile(img1, 1 * kMiB, 1);
  testing::WriteRandomFile(img2, 512 << 10, 2);  // 8 raw records of 64 KiB
  const std::string committed_copy = tmp_.Sub("committed");
  std::string uuid1;
  std::vector<engine::RecordLocation> lost_records;
  std::vector<std::vector<codec::ChunkId>> lost_chunks;
  int64_t committed = 0;
  {
    auto s = OpenOk(true);
    ASSERT_NE(s, nullptr);
    uuid1 = testing::ImportOk(*s, pool_, img1, engine::NewUuid(), "Root").meta.uuid;
    ASSERT_TRUE(s->Close().ok());
  }
  committed = testing::FileSize(testing::PackPath(dir_, 1));
  std::filesystem::copy(dir_, committed_copy, std::filesystem::copy_options::recursive);
  {
    // The operation the crash interrupts: its records reach the pack, its commit never happens.
    auto s = OpenOk(true);
    ASSERT_NE(s, nullptr);
    testing::ImportOk(*s, pool_, img2, engine::NewUuid(), "Root");
    for (const auto& r : testing::IndexedRecords(*s)) {
      if (r.offset >= static_cast<uint64_t>(committed)) {
        lost_records.push_back(r);
        lost_chunks.push_back(testing::ChunksOfRecord(*s, r));
      }
    }
    ASSERT_TRUE(s->Close().ok());
  }
  ASSERT_EQ(lost_records.size(), 8u);
  const std::vector<uint8_t> written = testing::ReadFile(testing::PackPath(dir_, 1));

  // Cut points: every record boundary and, inside each record, the fixed header, the chunk
  // table, the payload's first byte, its middle and its last byte.
  std::vector<uint64_t> cuts;
  for (const auto& r : lost_records) {
    const uint64_t payload = testing::PayloadOffset(dir_, r);
    for (uint64_t c : {r.offset, r.offset + 10, r.offset + 40, payload,
                       payload + (r.offset + r.size - payload) / 2, r.offset + r.size - 1}) {
      cuts.push_back(c);
    }
  }
  cuts.push_back(written.size());
  enum class Tail { kCut, kZeros, kNoise };
  int trial = 0;
  for (uint64_t cut : cuts) {
    for (Tail tail : {Tail::kCut, Tail::kZeros, Tail::kNoise}) {
      SCOPED_TRACE(absl::StrCat("cut at ", cut, ", tail ", static_cast<int>(tail)));
      std::filesystem::remove_all(dir_);
      std::filesystem::copy(committed_copy, dir_, std::filesystem::copy_options::recursive);
      std::vector<uint8_t> pack(written.begin(), written.begin() + static_cast<long>(cut));
      if (tail == Tail::kZeros) pack.resize(written.size(), 0);
      if (tail == Tail::kNoise) {
        const auto noise = testing::RandomBytes(written.size() - cut, cut);
        pack.insert(pack.end(), noise.begin(), noise.end());
      }
      testing::WriteFile(testing::PackPath(dir_, 1), pack);

      auto s = OpenOk(true);
      ASSERT_NE(s, nullptr);
      EXPECT_TRUE(s->open_report().damaged_regions.empty()) << s->open_report().damaged_regions[0];
      uint64_t whole_end = static_cast<uint64_t>(committed);
      for (size_t i = 0; i < lost_records.size(); ++i) {
        const auto& r = lost_records[i];
        const bool whole = r.offset + r.size <= cut;
        if (whole) whole_end = r.offset + r.size;
        for (const auto& id : lost_chunks[i]) {
          ASSERT_EQ(s->index().Contains(id), whole)
              << "record " << i << " at " << r.offset << " (" << r.size << " bytes)";
        }
      }
      EXPECT_EQ(testing::FileSize(testing::PackPath(dir_, 1)), static_cast<int64_t>(whole_end));
      ExpectConsistent(*s);
      EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, uuid1, img1, tmp_.Sub("out1")));
      if (trial++ % 9 == 0) {
        // The re-run brings back what was lost and its backup restores whole.
        const auto again = testing::ImportOk(*s, pool_, img2, engine::NewUuid(), "Root");
        EXPECT_TRUE(testing::RestoresIdentical(*s, pool_, again.meta.uuid, img2, tmp_.Sub("out2")));
        ExpectConsistent(*s);
      }
      ASSERT_TRUE(s->Close().ok());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CrashTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
