// Import then restore gives back the image byte for byte: every kind of content, sizes that are
// not multiples of the chunk size, both chunkers, both I/O backends, holes kept sparse.
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/importer.h"
#include "engine/local_store.h"
#include "engine/restorer.h"
#include "engine/verifier.h"
#include "engine/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::AllocatedBytes;
using ::chunkferry::testing::FilesEqual;
using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::FileSize;
using ::chunkferry::testing::ReadFile;
using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

struct Param {
  io::Backend backend;
  const char* chunker;
};

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  return absl::StrCat(std::string(io::BackendName(info.param.backend)), "_",
                      absl::StrContains(info.param.chunker, "cdc") ? "cdc" : "fixed");
}

class RoundTripTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam().backend);
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_, GetParam().chunker);
    auto s = testing::OpenStore(dir_, GetParam().backend, true, &pool_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  // Imports `image` (with `window` bytes per import window), restores it and compares; returns
  // the backup's metadata.
  engine::VolumeBackupMeta RoundTrip(const std::string& image, size_t window = 8 << 20,
                                     size_t restore_window = 16 << 20,
                                     engine::ImportStats* stats_out = nullptr) {
    engine::ImportOptions o;
    o.source = image;
    o.meta = testing::NewMeta(group_);
    o.window = window;
    engine::ImportStats stats;
    auto meta = engine::ImportVolume(*store_, pool_, o, &stats);
    EXPECT_TRUE(meta.ok()) << meta.status();
    if (!meta.ok()) return {};
    const uint64_t size = static_cast<uint64_t>(FileSize(image));
    EXPECT_EQ(meta->size, size);
    EXPECT_EQ(stats.bytes_read, size);
    EXPECT_EQ(meta->uuid, o.meta.uuid);
    EXPECT_EQ(meta->chunker, store_->info().chunker.ToString());
    EXPECT_EQ(meta->install_path, engine::DefaultInstallPath(group_, meta->uuid));
    EXPECT_GT(meta->create_date, 0);
    EXPECT_EQ(stats.new_chunks + stats.duplicate_chunks + stats.zero_chunks, stats.chunks);
    if (stats_out) *stats_out = stats;

    const std::string out = tmp_.Sub(absl::StrCat("restored-", ++restores_));
    engine::RestoreOptions ro;
    ro.output = out;
    ro.window = restore_window;
    engine::RestoreStats rs;
    absl::Status st = engine::RestoreVolume(*store_, pool_, meta->uuid, ro, &rs);
    EXPECT_TRUE(st.ok()) << st;
    EXPECT_TRUE(FilesEqual(image, out));
    EXPECT_EQ(rs.bytes, size);
    EXPECT_EQ(rs.data_bytes + rs.hole_bytes, size);
    EXPECT_EQ(rs.hole_bytes, stats.zero_bytes);
    EXPECT_FALSE(FileExists(out + ".partial"));
    return *meta;
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
  std::unique_ptr<engine::LocalStore> store_;
  std::string group_ = engine::NewUuid();
  int restores_ = 0;
};

TEST_P(RoundTripTest, RandomImage) {
  const std::string img = tmp_.Sub("random.img");
  testing::WriteRandomFile(img, 4 * kMiB, 1);
  engine::ImportStats stats;
  RoundTrip(img, 8 << 20, 16 << 20, &stats);
  EXPECT_EQ(stats.zero_chunks, 0u);
  EXPECT_EQ(stats.new_raw_bytes, 4 * kMiB);
  // Random bytes do not compress: stored raw, plus headers.
  EXPECT_GE(stats.stored_bytes, 4 * kMiB);
  EXPECT_LT(stats.stored_bytes, 4 * kMiB + 4 * kMiB / 20);
}

TEST_P(RoundTripTest, CompressibleImage) {
  const std::string img = tmp_.Sub("text.img");
  testing::WriteTextFile(img, 4 * kMiB, 2);
  engine::ImportStats stats;
  RoundTrip(img, 8 << 20, 16 << 20, &stats);
  EXPECT_LT(stats.stored_bytes, stats.new_raw_bytes / 2) << "text should compress";
}

TEST_P(RoundTripTest, AllZeroImageStoresNothing) {
  const std::string img = tmp_.Sub("zero.img");
  testing::WriteZeroFile(img, 3 * kMiB);
  engine::ImportStats stats;
  RoundTrip(img, 8 << 20, 16 << 20, &stats);
  EXPECT_EQ(stats.zero_chunks, stats.chunks);
  EXPECT_EQ(stats.zero_bytes, 3 * kMiB);
  EXPECT_EQ(stats.new_chunks, 0u);
  EXPECT_EQ(stats.stored_bytes, 0u);
  EXPECT_EQ(testing::TotalPackBytes(dir_), 0u);
}

TEST_P(RoundTripTest, MixedImage) {
  const std::string img = tmp_.Sub("mixed.img");
  // 64 KiB regions of random, text and zeros, and one long zero run: content-defined chunks
  // straddle the short zero regions, but a long run gives all-zero chunks with any chunker.
  std::vector<uint8_t> data = testing::MixedBytes(6 * kMiB + 4096 * 3, 3);
  std::fill(data.begin() + 2 * kMiB, data.begin() + 3 * kMiB, 0);
  testing::WriteFile(img, data);
  engine::ImportStats stats;
  RoundTrip(img, 8 << 20, 16 << 20, &stats);
  EXPECT_GT(stats.zero_chunks, 0u);
  EXPECT_GT(stats.new_chunks, 0u);
}

TEST_P(RoundTripTest, SizesThatAreNotMultiplesOfTheChunkSize) {
  for (size_t size : {5 * kMiB + 123, size_t{1}, size_t{4095}, size_t{4097}, 1 * kMiB - 1,
                      8 * kMiB + 1}) {
    SCOPED_TRACE(size);
    const std::string img = tmp_.Sub(absl::StrCat("odd-", size, ".img"));
    testing::WriteMixedFile(img, size, size);
    RoundTrip(img);
  }
}

TEST_P(RoundTripTest, EmptyImage) {
  const std::string img = tmp_.Sub("empty.img");
  testing::WriteFile(img, {});
  engine::ImportStats stats;
  const auto meta = RoundTrip(img, 8 << 20, 16 << 20, &stats);
  EXPECT_EQ(meta.size, 0u);
  EXPECT_EQ(stats.chunks, 0u);
}

// Small windows: chunks and records cross window boundaries on both sides (import carry, restore
// pieces taken from the previous window's records).
TEST_P(RoundTripTest, SmallWindows) {
  const std::string img = tmp_.Sub("small-windows.img");
  // Repeats make later windows reference records read in earlier ones.
  std::vector<uint8_t> data = testing::MixedBytes(5 * kMiB + 777, 9);
  for (size_t off = 3 * kMiB; off + 256 * 1024 <= data.size(); off += 256 * 1024) {
    std::copy(data.begin(), data.begin() + 128 * 1024, data.begin() + static_cast<long>(off));
  }
  testing::WriteFile(img, data);
  RoundTrip(img, 1 << 20, 64 << 10);
  RoundTrip(img, 1 << 20, 4 << 10);
}

TEST_P(RoundTripTest, SparseImageRestoresSparse) {
  const std::string img = tmp_.Sub("sparse.img");
  constexpr uint64_t kSize = 64 * kMiB;
  testing::WriteSparseFile(img, kSize,
                           {{0, 64 << 10}, {10 * kMiB + 4096, 100000}, {kSize - 8192, 8192}}, 4);
  engine::ImportStats stats;
  const auto meta = RoundTrip(img, 8 << 20, 16 << 20, &stats);
  EXPECT_GT(stats.zero_bytes, kSize - 1 * kMiB);
  const std::string out = tmp_.Sub("restored-1");
  ASSERT_EQ(FileSize(out), static_cast<int64_t>(kSize));
  EXPECT_LT(AllocatedBytes(out), kSize / 16)
      << "restored image is not sparse: " << AllocatedBytes(out) << " bytes allocated";
}

TEST_P(RoundTripTest, RestoreRefusesToReplaceAnExistingFileUnlessAsked) {
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 1 * kMiB + 5, 5);
  const auto meta = RoundTrip(img);
  const std::string out = tmp_.Sub("existing");
  testing::WriteFile(out, std::vector<uint8_t>{'k', 'e', 'e', 'p'});
  engine::RestoreOptions ro;
  ro.output = out;
  absl::Status st = engine::RestoreVolume(*store_, pool_, meta.uuid, ro, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_EQ(ReadFile(out), (std::vector<uint8_t>{'k', 'e', 'e', 'p'}));
  EXPECT_FALSE(FileExists(out + ".partial"));
  ro.overwrite = true;
  ASSERT_TRUE(engine::RestoreVolume(*store_, pool_, meta.uuid, ro, nullptr).ok());
  EXPECT_TRUE(FilesEqual(img, out));
}

TEST_P(RoundTripTest, RestoreOfAnUnknownBackupFailsAndWritesNothing) {
  const std::string out = tmp_.Sub("never");
  engine::RestoreOptions ro;
  ro.output = out;
  EXPECT_EQ(engine::RestoreVolume(*store_, pool_, engine::NewUuid(), ro, nullptr).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine::RestoreVolume(*store_, pool_, "not-a-uuid", ro, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(FileExists(out));
  EXPECT_FALSE(FileExists(out + ".partial"));
}

// The store is closed and reopened read-only between import and restore, as the CLI does.
TEST_P(RoundTripTest, RestoreFromAReopenedReadOnlyStore) {
  const std::string img = tmp_.Sub("img");
  testing::WriteMixedFile(img, 3 * kMiB + 99, 6);
  auto meta = testing::Import(*store_, pool_, img, group_);
  ASSERT_TRUE(meta.ok()) << meta.status();
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  auto ro = testing::OpenStore(dir_, GetParam().backend, false, &pool_);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_TRUE(testing::RestoresIdentical(**ro, pool_, meta->uuid, img, tmp_.Sub("out")));
  auto report = engine::VerifyStore(**ro, pool_, engine::VerifyMode::kFull);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->manifests, 1u);
  EXPECT_EQ(report->groups, 1u);
}

INSTANTIATE_TEST_SUITE_P(All, RoundTripTest,
                         ::testing::Values(Param{io::Backend::kUring, "fixed:4k"},
                                           Param{io::Backend::kThreads, "fixed:4k"},
                                           Param{io::Backend::kUring, "cdc:2k:8k:64k"},
                                           Param{io::Backend::kThreads, "cdc:2k:8k:64k"}),
                         ParamName);

}  // namespace
}  // namespace chunkferry
