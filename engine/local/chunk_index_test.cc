#include "engine/local/chunk_index.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "codec/chunk_id.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// A record of one-byte-pattern chunks, encoded raw; keeps its bytes (the view points into them).
struct Record {
  std::vector<uint8_t> bytes;
  std::vector<codec::ChunkId> ids;
  codec::RecordView view;
};

Record MakeRecord(std::vector<uint8_t> fills) {
  const codec::ChunkHasher hasher;
  std::vector<std::vector<uint8_t>> chunks;
  std::vector<codec::ChunkRef> refs;
  std::vector<absl::Span<const uint8_t>> spans;
  Record r;
  for (uint8_t f : fills) chunks.emplace_back(4096, f);
  for (const auto& c : chunks) {
    refs.push_back(codec::ChunkRef{hasher.Hash(c), static_cast<uint32_t>(c.size())});
    r.ids.push_back(refs.back().id);
    spans.push_back(c);
  }
  r.bytes.resize(codec::MaxRecordSize(chunks.size(), chunks.size() * 4096));
  auto n = codec::EncodeRecord(refs, spans, nullptr, absl::MakeSpan(r.bytes));
  EXPECT_TRUE(n.ok()) << n.status();
  r.bytes.resize(n.ok() ? *n : 0);
  auto view = codec::ParseRecord(r.bytes);
  EXPECT_TRUE(view.ok()) << view.status();
  r.view = *view;
  return r;
}

TEST(ChunkIndexTest, FindAllAndContainsAllAgreeWithFind) {
  ChunkIndex index;
  const Record a = MakeRecord({1, 2, 3});
  const Record b = MakeRecord({4, 5});
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(a.bytes.size()), 32}, a.view);
  index.InsertRecord(RecordLocation{2, static_cast<uint32_t>(b.bytes.size()), 32}, b.view);
  const Record absent = MakeRecord({9});
  // More ids than the prefetch distance, present and absent mixed.
  std::vector<codec::ChunkId> ids;
  for (int round = 0; round < 5; ++round) {
    ids.insert(ids.end(), a.ids.begin(), a.ids.end());
    ids.push_back(absent.ids[0]);
    ids.insert(ids.end(), b.ids.begin(), b.ids.end());
  }
  std::vector<std::optional<ChunkLocation>> found(ids.size());
  index.FindAll(ids, absl::MakeSpan(found));
  std::vector<bool> have;
  index.ContainsAll(ids, &have);
  ASSERT_EQ(have.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(i);
    const std::optional<ChunkLocation> one = index.Find(ids[i]);
    EXPECT_EQ(found[i].has_value(), one.has_value());
    EXPECT_EQ(have[i], one.has_value());
    if (one) {
      EXPECT_EQ(found[i]->record, one->record);
      EXPECT_EQ(found[i]->slot, one->slot);
    }
  }
  EXPECT_FALSE(have[3]);  // the absent id
  EXPECT_EQ(found[4]->record.pack, 2u);
  EXPECT_EQ(found[4]->slot, 0u);
}

TEST(ChunkIndexTest, ForgetChunksOfUndoesInsertsButKeepsEarlierChunks) {
  ChunkIndex index;
  const Record a = MakeRecord({1, 2});
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(a.bytes.size()), 32}, a.view);
  const size_t first = index.record_count();
  // b shares chunk 2 with a (which keeps its first place) and brings 7 and 8.
  const Record b = MakeRecord({2, 7});
  const Record c = MakeRecord({8});
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(b.bytes.size()), 4096}, b.view);
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(c.bytes.size()), 8192}, c.view);
  ASSERT_EQ(index.size(), 4u);
  index.ForgetChunksOf(b.view, first);
  index.ForgetChunksOf(c.view, first);
  index.TruncateRecords(first);
  EXPECT_EQ(index.record_count(), first);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_TRUE(index.Contains(a.ids[0]));
  ASSERT_TRUE(index.Contains(a.ids[1]));
  EXPECT_EQ(index.Find(a.ids[1])->record.offset, 32u);
  EXPECT_FALSE(index.Contains(b.ids[1]));
  EXPECT_FALSE(index.Contains(c.ids[0]));
}

TEST(ChunkIndexTest, EveryLookupThatFindsAChunkPinsItsRecord) {
  ChunkIndex index;
  const Record a = MakeRecord({1, 2}), b = MakeRecord({3}), c = MakeRecord({4}),
               d = MakeRecord({5});
  const Record e = MakeRecord({6});
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(a.bytes.size()), 32}, a.view);
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(b.bytes.size()), 4096}, b.view);
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(c.bytes.size()), 8192}, c.view);
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(d.bytes.size()), 12288}, d.view);
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(e.bytes.size()), 16384}, e.view);
  RecordBitmap pins(4);  // record 4 (e) is past the limit: always "set"
  // Without pins installed nothing is recorded.
  EXPECT_TRUE(index.Contains(a.ids[0]));
  index.SetPins(&pins);
  for (size_t r = 0; r < 4; ++r) EXPECT_FALSE(pins.Get(r)) << r;
  EXPECT_TRUE(pins.Get(4));
  EXPECT_TRUE(index.Find(a.ids[1]).has_value());  // record 0
  std::vector<bool> have;
  index.ContainsAll(std::vector<codec::ChunkId>{b.ids[0]}, &have);  // record 1
  EXPECT_EQ(index.CountLacking(c.view), 0u);                        // record 2
  EXPECT_TRUE(pins.Get(0) && pins.Get(1) && pins.Get(2));
  EXPECT_FALSE(pins.Get(3));
  std::vector<int64_t> numbers(2);
  const Record absent = MakeRecord({9});
  index.FindRecordNumbers(std::vector<codec::ChunkId>{d.ids[0], absent.ids[0]},
                          absl::MakeSpan(numbers));
  EXPECT_EQ(numbers, (std::vector<int64_t>{3, -1}));
  EXPECT_TRUE(pins.Get(3));
  index.SetPins(nullptr);
}

TEST(ChunkIndexTest, RelocatedRecordsCarryTheirChunksAndErasedOnesLoseThem) {
  ChunkIndex index;
  const Record a = MakeRecord({1, 2}), b = MakeRecord({3});
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(a.bytes.size()), 32}, a.view);
  index.InsertRecord(RecordLocation{1, static_cast<uint32_t>(b.bytes.size()), 4096}, b.view);
  const RecordLocation moved{7, static_cast<uint32_t>(a.bytes.size()), 32};
  index.Relocate(0, moved);
  ASSERT_TRUE(index.Find(a.ids[1]).has_value());
  EXPECT_EQ(index.Find(a.ids[1])->record.pack, 7u);
  EXPECT_EQ(index.Find(a.ids[1])->slot, 1u);
  ASSERT_TRUE(index.EraseChunksOf([](uint32_t r) { return r == 1; }).ok());
  EXPECT_FALSE(index.Contains(b.ids[0]));
  EXPECT_TRUE(index.Contains(a.ids[0]));
  EXPECT_EQ(index.record_count(), 2u);  // numbers stay
}

// ---- On disk. ----

class OnDiskIndexTest : public ::testing::Test {
 protected:
  // Opens the index in dir_ (writable unless said otherwise); the reason of a rebuild in
  // problem_.
  ChunkIndex Open(bool writable = true) {
    absl::StatusOr<ChunkIndex> index = ChunkIndex::Open(dir_, options_, writable, &problem_);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : ChunkIndex();
  }
  static codec::ChunkId Id(uint64_t n) {
    // Ids are uniform hashes in a store; these are too.
    const codec::ChunkHasher hasher;
    return hasher.Hash(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&n), sizeof(n)));
  }
  static ChunkLocation Loc(uint64_t n) {
    return ChunkLocation{RecordLocation{static_cast<uint32_t>(1 + n % 3), 100, 32 + n * 100},
                         static_cast<uint16_t>(n % 7)};
  }
  // Inserts ids [begin, end), one record each.
  static void Fill(ChunkIndex& index, uint64_t begin, uint64_t end) {
    for (uint64_t n = begin; n < end; ++n) ASSERT_TRUE(index.Insert(Id(n), Loc(n))) << n;
  }
  // Every id below `present` is found where Fill put it, and `absent` ids past it are not.
  static void ExpectHolds(const ChunkIndex& index, uint64_t present, uint64_t absent) {
    std::vector<codec::ChunkId> ids;
    for (uint64_t n = 0; n < present + absent; ++n) ids.push_back(Id(n));
    std::vector<std::optional<ChunkLocation>> found(ids.size());
    index.FindAll(ids, absl::MakeSpan(found));
    uint64_t wrong = 0;
    for (uint64_t n = 0; n < ids.size(); ++n) {
      if (n < present) {
        wrong += !found[n] || !(found[n]->record == Loc(n).record) ||
                 found[n]->record.size != 100 || found[n]->slot != Loc(n).slot;
      } else {
        wrong += found[n].has_value();
      }
    }
    EXPECT_EQ(wrong, 0u);
  }

  ::chunkferry::testing::TempDir tmp_;
  const std::string dir_ = tmp_.path();
  // Runs read from disk at every lookup unless a test caches them.
  ChunkIndexOptions options_{
      .memtable_entries = 5000, .mapped_bytes_max = 160 << 20, .cached_entries_bytes = 0};
  std::string problem_;
};

TEST_F(OnDiskIndexTest, SavedRunsAnswerLikeTheMemtableAndSurviveReopening) {
  {
    ChunkIndex index = Open();
    EXPECT_EQ(problem_, "no index state");
    for (uint64_t n = 0; n < 60000; n += 5000) {
      Fill(index, n, n + 5000);
      EXPECT_TRUE(index.WantsSave());
      ASSERT_TRUE(index.Save().ok());
      EXPECT_FALSE(index.WantsSave());
    }
    Fill(index, 60000, 61000);  // left in the memtable
    EXPECT_EQ(index.size(), 61000u);
    // Merged as they came: far fewer runs than saves (at most one per doubling).
    EXPECT_LE(index.run_count(), 4u);
    ExpectHolds(index, 61000, 3000);
    EXPECT_FALSE(index.Insert(Id(17), Loc(99)));  // present in a run: keeps its first place
    ASSERT_TRUE(index.Save().ok());
    ASSERT_TRUE(index.CheckRuns().ok());
  }
  ChunkIndex index = Open(/*writable=*/false);
  EXPECT_EQ(problem_, "");
  EXPECT_EQ(index.size(), 61000u);
  EXPECT_EQ(index.record_count(), 61000u);
  ExpectHolds(index, 61000, 3000);
  uint64_t seen = 0;
  ASSERT_TRUE(index.ForEach([&](const codec::ChunkId&, const ChunkLocation&) { ++seen; }).ok());
  EXPECT_EQ(seen, 61000u);
  // The same answers from runs read into memory (all of them fit, then only some).
  for (uint64_t cache : {uint64_t{64} << 20, uint64_t{30000 * 24}}) {
    options_.cached_entries_bytes = cache;
    ExpectHolds(Open(/*writable=*/false), 61000, 3000);
  }
}

TEST_F(OnDiskIndexTest, ARunLargerThanTheWriterBuffersIsWhole) {
  options_.memtable_entries = 100000;  // 2.4 MB of entries: written in several pieces
  ChunkIndex index = Open();
  Fill(index, 0, 100000);
  ASSERT_TRUE(index.Save().ok());
  ASSERT_EQ(index.run_count(), 1u);
  EXPECT_TRUE(index.CheckRuns().ok()) << index.CheckRuns();
  ExpectHolds(index, 100000, 1000);
}

TEST_F(OnDiskIndexTest, LookupsStayRightWhenTheProcessLetsGoOfMappedPages) {
  options_.mapped_bytes_max = 0;  // let go at every check
  ChunkIndex index = Open();
  Fill(index, 0, 40000);
  ASSERT_TRUE(index.Save().ok());
  for (int round = 0; round < 3; ++round) ExpectHolds(index, 40000, 20000);
}

TEST_F(OnDiskIndexTest, WhatNoSaveFinishedIsForgottenAndItsFilesRemoved) {
  {
    ChunkIndex index = Open();
    Fill(index, 0, 5000);
    ASSERT_TRUE(index.Save().ok());
    Fill(index, 5000, 6000);
    // Died in the middle of a save: a run no state names, records past the saved count.
    ASSERT_TRUE(index.PersistRecords().ok());
  }
  ::chunkferry::testing::WriteFile(dir_ + "/00000000000000ff.run", std::vector<uint8_t>(100, 7));
  ChunkIndex index = Open();
  EXPECT_EQ(problem_, "");
  EXPECT_EQ(index.size(), 5000u);
  EXPECT_EQ(index.record_count(), 5000u);
  EXPECT_FALSE(FileExists(dir_ + "/00000000000000ff.run"));
  ExpectHolds(index, 5000, 1000);
  // The next run takes a name no earlier file had.
  Fill(index, 5000, 6000);
  ASSERT_TRUE(index.Save().ok());
  EXPECT_TRUE(Open().Contains(Id(5500)));
}

TEST_F(OnDiskIndexTest, DamagedOrMissingFilesMakeItRebuildNeverAnswerWrong) {
  auto setup = [&] {
    ::chunkferry::testing::RemoveAll(dir_ + "/STATE");
    ChunkIndex index = Open();
    Fill(index, 0, 5000);
    ASSERT_TRUE(index.Save().ok());
  };
  auto run_file = [&] {
    auto runs = io::ListDir(dir_, ".run");
    EXPECT_TRUE(runs.ok() && runs->size() == 1);
    return dir_ + "/" + (runs.ok() && !runs->empty() ? (*runs)[0] : "") + ".run";
  };
  auto flip = [](const std::string& path, uint64_t offset) {
    auto data = io::ReadFileToString(path);
    ASSERT_TRUE(data.ok());
    ASSERT_LT(offset, data->size());
    (*data)[offset] ^= 0x40;
    ::chunkferry::testing::WriteFile(path, AsBytes(*data));
  };
  struct Case {
    const char* name;
    std::function<void()> damage;
  };
  const std::vector<Case> cases = {
      {"state flipped", [&] { flip(dir_ + "/STATE", 20); }},
      {"state gone", [&] { ::unlink((dir_ + "/STATE").c_str()); }},
      {"records cut", [&] { ASSERT_EQ(::truncate((dir_ + "/records").c_str(), 16 * 100), 0); }},
      {"run gone", [&] { ::unlink(run_file().c_str()); }},
      {"run header flipped", [&] { flip(run_file(), 13); }},
      {"run cut",
       [&] {
         const std::string run = run_file();
         ASSERT_EQ(::truncate(run.c_str(), 4096), 0);
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    setup();
    c.damage();
    ChunkIndex index = Open();
    EXPECT_NE(problem_, "");
    EXPECT_EQ(index.size(), 0u);
    EXPECT_EQ(index.record_count(), 0u);
    EXPECT_FALSE(index.Contains(Id(1)));
  }
}

TEST_F(OnDiskIndexTest, ADamagedBucketTableReadsAsAbsentAndCheckFindsIt) {
  ChunkIndex index = Open();
  Fill(index, 0, 5000);
  ASSERT_TRUE(index.Save().ok());
  auto runs = io::ListDir(dir_, ".run");
  ASSERT_TRUE(runs.ok() && runs->size() == 1);
  const std::string run = dir_ + "/" + (*runs)[0] + ".run";
  // The bucket table starts after the header and 64 bytes of filter per bucket (5000 entries:
  // 90 buckets): make the 10th bucket's start point far past the end.
  io::Fd fd = *io::OpenFile(run, O_RDWR);
  const uint64_t huge = uint64_t{1} << 40;
  ASSERT_TRUE(io::PwriteFull(fd.get(),
                             absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&huge), 8),
                             64 + 90 * 64 + 10 * 8)
                  .ok());
  fd.Reset();
  ChunkIndex reopened = Open(/*writable=*/false);
  EXPECT_EQ(problem_, "");
  EXPECT_TRUE(absl::IsDataLoss(reopened.CheckRuns()));
  uint64_t found = 0;
  for (uint64_t n = 0; n < 5000; ++n) found += reopened.Contains(Id(n));
  EXPECT_LT(found, 5000u);  // the damaged buckets' chunks read as absent (sent again)
  EXPECT_GT(found, 4000u);  // the others are there
}

TEST_F(OnDiskIndexTest, RelocationsAndErasesReachDiskAtSaveOnly) {
  {
    ChunkIndex index = Open();
    Fill(index, 0, 8000);
    ASSERT_TRUE(index.Save().ok());
    index.Relocate(10, RecordLocation{9, 100, 4096});
    EXPECT_EQ(index.Find(Id(10))->record.pack, 9u);
    ASSERT_TRUE(index.EraseChunksOf([](uint32_t r) { return r >= 4000; }).ok());
    EXPECT_FALSE(index.Contains(Id(4000)));
  }
  {
    ChunkIndex index = Open();  // nothing saved: as before
    EXPECT_EQ(index.size(), 8000u);
    EXPECT_EQ(index.Find(Id(10))->record.pack, Loc(10).record.pack);
    index.Relocate(10, RecordLocation{9, 100, 4096});
    ASSERT_TRUE(index.EraseChunksOf([](uint32_t r) { return r >= 4000; }).ok());
    ASSERT_TRUE(index.Save().ok());
  }
  ChunkIndex index = Open();
  EXPECT_EQ(index.size(), 4000u);
  EXPECT_EQ(index.run_count(), 1u);
  EXPECT_EQ(index.record_count(), 8000u);  // numbers stay
  EXPECT_EQ(index.Find(Id(10))->record.pack, 9u);
  EXPECT_EQ(index.Find(Id(10))->record.offset, 4096u);
  ExpectHolds(index, 10, 0);
  EXPECT_FALSE(index.Contains(Id(4000)));
  EXPECT_TRUE(index.Contains(Id(3999)));
}

TEST_F(OnDiskIndexTest, AnIndexOfAnEarlierVersionIsRebuiltAndItsFileRemoved) {
  ::chunkferry::testing::WriteFile(dir_ + "/chunks.idx", std::vector<uint8_t>(64, 1));
  ChunkIndex index = Open();
  EXPECT_EQ(problem_, "no index state");
  Fill(index, 0, 10);
  ASSERT_TRUE(index.Save().ok());
  EXPECT_FALSE(FileExists(dir_ + "/chunks.idx"));
}

}  // namespace
}  // namespace chunkferry::engine
