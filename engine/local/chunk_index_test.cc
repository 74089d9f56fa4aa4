#include "engine/local/chunk_index.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "codec/chunk_id.h"
#include "codec/record.h"
#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

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
  index.EraseChunksOf([](uint32_t r) { return r == 1; });
  EXPECT_FALSE(index.Contains(b.ids[0]));
  EXPECT_TRUE(index.Contains(a.ids[0]));
  EXPECT_EQ(index.record_count(), 2u);  // numbers stay

  // The snapshot keeps only records some chunk names, renumbered.
  char dir[] = "/var/tmp/cf-index-test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/chunks.idx";
  ASSERT_TRUE(index.Save(path).ok());
  absl::StatusOr<ChunkIndex> loaded = ChunkIndex::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->record_count(), 1u);
  EXPECT_EQ(loaded->size(), 2u);
  ASSERT_TRUE(loaded->Find(a.ids[0]).has_value());
  EXPECT_EQ(loaded->Find(a.ids[0])->record.pack, 7u);
  EXPECT_FALSE(loaded->Contains(b.ids[0]));
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace chunkferry::engine
