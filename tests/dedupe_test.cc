// Dedupe: what a store already holds is never stored again, within one image or across images.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;
constexpr size_t kBlock = 4096;

class DedupeTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void Open(const std::string& chunker) {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_, chunker);
    auto s = testing::OpenStore(dir_, GetParam(), true, &pool_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  engine::ImportStats ImportOk(const std::string& image, std::string* uuid = nullptr) {
    engine::ImportStats stats;
    auto meta = testing::Import(*store_, pool_, image, group_, "Root", &stats);
    EXPECT_TRUE(meta.ok()) << meta.status();
    if (meta.ok() && uuid) *uuid = meta->uuid;
    return stats;
  }

  // A copy of `base` with `n` distinct 4 KiB blocks (spread over the image) rewritten.
  static std::vector<uint8_t> Rewrite(std::vector<uint8_t> base, size_t n, uint64_t seed) {
    const size_t blocks = base.size() / kBlock;
    std::set<size_t> chosen;
    uint64_t x = seed * 2654435761u + 1;
    while (chosen.size() < n) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      chosen.insert(static_cast<size_t>((x >> 33) % blocks));
    }
    size_t k = 0;
    for (size_t b : chosen) {
      const auto fresh = testing::RandomBytes(kBlock, seed * 100000 + k++);
      std::copy(fresh.begin(), fresh.end(), base.begin() + static_cast<long>(b * kBlock));
    }
    return base;
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
  std::unique_ptr<engine::LocalStore> store_;
  std::string group_ = engine::NewUuid();
};

TEST_P(DedupeTest, SameImageTwiceStoresNothingNew) {
  Open("fixed:4k");
  if (IsSkipped()) return;
  const std::string img = tmp_.Sub("img");
  testing::WriteMixedFile(img, 6 * kMiB + 100, 1);
  const auto first = ImportOk(img);
  EXPECT_GT(first.new_chunks, 0u);
  EXPECT_GT(first.stored_bytes, 0u);
  const auto packs = testing::PackSizes(dir_);
  std::string second_uuid;
  const auto second = ImportOk(img, &second_uuid);
  EXPECT_EQ(second.new_chunks, 0u);
  EXPECT_EQ(second.new_raw_bytes, 0u);
  EXPECT_EQ(second.stored_bytes, 0u);
  EXPECT_EQ(second.records, 0u);
  EXPECT_EQ(second.duplicate_chunks, first.new_chunks + first.duplicate_chunks);
  EXPECT_EQ(second.zero_chunks, first.zero_chunks);
  EXPECT_EQ(testing::PackSizes(dir_), packs);
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, second_uuid, img, tmp_.Sub("out")));
}

TEST_P(DedupeTest, ScatteredChangesStoreAboutWhatChanged) {
  Open("fixed:4k");
  if (IsSkipped()) return;
  const auto base = testing::MixedBytes(8 * kMiB, 2);
  const std::string v1 = tmp_.Sub("v1"), v2 = tmp_.Sub("v2");
  testing::WriteFile(v1, base);
  constexpr size_t kChanged = 8 * kMiB / kBlock / 100;  // ~1% of the blocks
  testing::WriteFile(v2, Rewrite(base, kChanged, 3));
  ImportOk(v1);
  const uint64_t before = testing::TotalPackBytes(dir_);
  std::string uuid;
  const auto stats = ImportOk(v2, &uuid);
  EXPECT_GE(stats.new_chunks, kChanged * 8 / 10);
  EXPECT_LE(stats.new_chunks, kChanged * 12 / 10);
  EXPECT_EQ(stats.new_raw_bytes, stats.new_chunks * kBlock);
  const uint64_t grown = testing::TotalPackBytes(dir_) - before;
  EXPECT_EQ(grown, stats.stored_bytes);
  EXPECT_LE(grown, kChanged * kBlock * 12 / 10 + 64 * 1024) << "v2 stored far more than changed";
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, uuid, v2, tmp_.Sub("out")));
}

TEST_P(DedupeTest, ScatteredChangesWithContentDefinedChunks) {
  Open("cdc:2k:8k:64k");
  if (IsSkipped()) return;
  const auto base = testing::RandomBytes(8 * kMiB, 4);
  const std::string v1 = tmp_.Sub("v1"), v2 = tmp_.Sub("v2");
  testing::WriteFile(v1, base);
  constexpr size_t kChanged = 20;
  testing::WriteFile(v2, Rewrite(base, kChanged, 5));
  const auto first = ImportOk(v1);
  std::string uuid;
  const auto stats = ImportOk(v2, &uuid);
  // Each changed block touches one or two chunks of ~8 KiB average (up to 64 KiB).
  EXPECT_GE(stats.new_chunks, kChanged / 2);
  EXPECT_LE(stats.new_chunks, kChanged * 3);
  EXPECT_LT(stats.new_raw_bytes, 8 * kMiB / 10) << "content-defined chunks lost the alignment";
  EXPECT_GT(stats.duplicate_chunks, first.new_chunks * 8 / 10);
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, uuid, v2, tmp_.Sub("out")));
}

TEST_P(DedupeTest, InsertionShiftsDoNotDefeatContentDefinedChunks) {
  Open("cdc:2k:8k:64k");
  if (IsSkipped()) return;
  auto base = testing::RandomBytes(4 * kMiB, 6);
  const std::string v1 = tmp_.Sub("v1"), v2 = tmp_.Sub("v2");
  testing::WriteFile(v1, base);
  base.insert(base.begin() + 1000, 17, 'x');  // shifts everything after it
  testing::WriteFile(v2, base);
  const auto first = ImportOk(v1);
  std::string uuid;
  const auto stats = ImportOk(v2, &uuid);
  EXPECT_LE(stats.new_chunks, 4u);
  EXPECT_GE(stats.duplicate_chunks + 4, first.new_chunks);
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, uuid, v2, tmp_.Sub("out")));
}

TEST_P(DedupeTest, RepeatedBlockIsStoredOnce) {
  Open("fixed:4k");
  if (IsSkipped()) return;
  const auto block = testing::RandomBytes(kBlock, 7);
  std::vector<uint8_t> img_bytes;
  for (int i = 0; i < 512; ++i) img_bytes.insert(img_bytes.end(), block.begin(), block.end());
  const std::string img = tmp_.Sub("img");
  testing::WriteFile(img, img_bytes);
  std::string uuid;
  const auto stats = ImportOk(img, &uuid);
  EXPECT_EQ(stats.chunks, 512u);
  EXPECT_EQ(stats.new_chunks, 1u);
  EXPECT_EQ(stats.duplicate_chunks, 511u);
  EXPECT_EQ(stats.records, 1u);
  EXPECT_LT(stats.stored_bytes, 2 * kBlock);
  EXPECT_EQ(testing::TotalPackBytes(dir_), engine::kPackHeaderSize + stats.stored_bytes);
  EXPECT_EQ(store_->index().size(), 1u);
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, uuid, img, tmp_.Sub("out")));
}

TEST_P(DedupeTest, ImagesShareChunksAcrossGroupsAndVolumes) {
  Open("fixed:4k");
  if (IsSkipped()) return;
  const auto a = testing::RandomBytes(2 * kMiB, 8);
  const auto b = testing::RandomBytes(2 * kMiB, 9);
  std::vector<uint8_t> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  const std::string ia = tmp_.Sub("a"), ib = tmp_.Sub("b"), iab = tmp_.Sub("ab");
  testing::WriteFile(ia, a);
  testing::WriteFile(ib, b);
  testing::WriteFile(iab, ab);
  ImportOk(ia);
  group_ = engine::NewUuid();
  ImportOk(ib);
  std::string uuid;
  const auto stats = ImportOk(iab, &uuid);
  EXPECT_EQ(stats.new_chunks, 0u);
  EXPECT_EQ(stats.duplicate_chunks, 4 * kMiB / kBlock);
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, uuid, iab, tmp_.Sub("out")));
}

// Dedupe survives closing the store: the second import runs in a fresh process state.
TEST_P(DedupeTest, DedupeAcrossReopen) {
  Open("fixed:4k");
  if (IsSkipped()) return;
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 3 * kMiB, 10);
  ImportOk(img);
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  auto s = testing::OpenStore(dir_, GetParam(), true, &pool_);
  ASSERT_TRUE(s.ok()) << s.status();
  store_ = *std::move(s);
  const auto packs = testing::PackSizes(dir_);
  const auto stats = ImportOk(img);
  EXPECT_EQ(stats.new_chunks, 0u);
  EXPECT_EQ(testing::PackSizes(dir_), packs);
}

INSTANTIATE_TEST_SUITE_P(Backends, DedupeTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
