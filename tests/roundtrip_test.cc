// Import then restore gives back the image byte for byte: every kind of content, sizes that are
// not multiples of the chunk size, both chunkers, both I/O backends, holes kept sparse.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "codec/chunker.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/restorer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/progress.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::AllocatedBytes;
using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::FilesEqual;
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
  for (size_t size :
       {5 * kMiB + 123, size_t{1}, size_t{4095}, size_t{4097}, 1 * kMiB - 1, 8 * kMiB + 1}) {
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

// Sparse sources in many layouts: holes big and small (merged or not into one read), extents at
// unaligned offsets, across window boundaries, at the very start and end, a file of one hole.
TEST_P(RoundTripTest, SparseLayouts) {
  const uint64_t k4 = 4096;
  const std::vector<std::pair<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>>> layouts = {
      {16 * kMiB, {}},                                // all hole
      {16 * kMiB + 1, {{16 * kMiB, 1}}},              // one byte at the end
      {10 * kMiB, {{0, 100}, {8 * kMiB - 50, 100}}},  // across a window
      {12 * kMiB + 333,
       {{k4 * 3 + 7, 5000},
        {k4 * 3 + 7 + 5000 + 100 * 1024, 70000},
        {k4 * 200, k4},
        {6 * kMiB, 3 * kMiB},
        {12 * kMiB, 333}}},
      {9 * kMiB, {{1 * kMiB, 1}, {1 * kMiB + 300 * 1024, 1}, {2 * kMiB - 1, 2}}},
  };
  int n = 0;
  for (const auto& [size, extents] : layouts) {
    SCOPED_TRACE(n);
    const std::string img = tmp_.Sub(absl::StrCat("sparse-", n++));
    testing::WriteSparseFile(img, size, extents, 100 + static_cast<uint64_t>(n));
    RoundTrip(img);
    RoundTrip(img, 1 << 20, 64 << 10);
  }
}

// Preallocated (fallocate) regions read as zeros; data written into some of them must not be
// mistaken for a hole, nor a hole for data.
TEST_P(RoundTripTest, PreallocatedImage) {
  const std::string img = tmp_.Sub("prealloc.img");
  {
    io::Fd fd(::open(img.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::fallocate(fd.get(), 0, 0, 10 * kMiB), 0) << std::strerror(errno);
    ASSERT_EQ(::fallocate(fd.get(), 0, 12 * kMiB, 2 * kMiB), 0);  // hole at 10..12 MiB
    ASSERT_EQ(::ftruncate(fd.get(), 16 * kMiB + 5), 0);
    const auto bytes = testing::RandomBytes(300000, 31);
    ASSERT_TRUE(io::PwriteFull(fd.get(), bytes, 3 * kMiB + 7).ok());
    ASSERT_TRUE(io::PwriteFull(fd.get(), bytes, 13 * kMiB).ok());
    ASSERT_TRUE(io::PwriteFull(fd.get(), absl::MakeConstSpan(bytes.data(), 5), 16 * kMiB).ok());
  }
  RoundTrip(img);
  RoundTrip(img, 1 << 20, 64 << 10);
  // Same again once the data is on disk rather than in the page cache.
  {
    io::Fd fd(::open(img.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  RoundTrip(img);
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

// A record that ends with a volume's short last chunk has an odd raw length. Another volume that
// shares one of its whole chunks pulls it into a restore window ahead of other records: their
// bytes must still land right (and, in memory, stay aligned for direct writes).
TEST_P(RoundTripTest, RecordWithAShortLastChunkInsideAnotherVolume) {
  const std::string a = tmp_.Sub("odd-tail-a.img");
  const std::vector<uint8_t> a_bytes = testing::RandomBytes(1 * kMiB + 1000, 41);
  testing::WriteFile(a, a_bytes);
  RoundTrip(a);
  // B starts with A's last whole 4 KiB block (a chunk of A's last record), then new data.
  const size_t last_block = (a_bytes.size() / 4096 - 1) * 4096;
  std::vector<uint8_t> b_bytes(a_bytes.begin() + static_cast<long>(last_block),
                               a_bytes.begin() + static_cast<long>(last_block + 4096));
  const std::vector<uint8_t> fresh = testing::MixedBytes(2 * kMiB, 42);
  b_bytes.insert(b_bytes.end(), fresh.begin(), fresh.end());
  const std::string b = tmp_.Sub("odd-tail-b.img");
  testing::WriteFile(b, b_bytes);
  engine::ImportStats stats;
  RoundTrip(b, 8 << 20, 16 << 20, &stats);
  if (absl::StartsWith(GetParam().chunker, "fixed")) {
    EXPECT_GE(stats.duplicate_chunks, 1u);
  }
  RoundTrip(b, 1 << 20, 64 << 10);
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

// Tests of store options and sources, on each backend.
class RoundTripOptionsTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override { CF_SKIP_IF_NO_URING(GetParam()); }

  std::unique_ptr<engine::LocalStore> MakeStore(const std::string& name,
                                                const engine::StoreInitOptions& o,
                                                uint64_t pack_target = 1ull << 30) {
    const std::string dir = tmp_.Sub(name);
    absl::Status st = engine::LocalStore::Init(dir, o);
    EXPECT_TRUE(st.ok()) << st;
    engine::LocalStoreOptions lo;
    lo.queue.backend = GetParam();
    lo.pool = &pool_;
    lo.pack_target = pack_target;
    auto s = engine::LocalStore::Open(dir, lo);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
};

// The largest chunks and records: 4 MiB chunks, 16 MiB records (larger than the store's write
// buffers), a 1 MiB import window (smaller than a chunk), small packs.
TEST_P(RoundTripOptionsTest, LargestChunksAndRecords) {
  engine::StoreInitOptions o;
  o.chunker = *codec::ChunkerSpec::Parse("fixed:4m");
  o.record_target = 16 << 20;
  auto store = MakeStore("big", o, 20 << 20);
  ASSERT_NE(store, nullptr);
  // Image 1 through a 1 MiB window: chunks are carried over several windows. Image 2 through a
  // 32 MiB window: records of 16 MiB, written past the store's buffers.
  std::vector<std::string> uuids, images;
  for (int k = 0; k < 2; ++k) {
    SCOPED_TRACE(k);
    const std::string img = tmp_.Sub(absl::StrCat("img", k));
    std::vector<uint8_t> data = testing::RandomBytes(k == 0 ? 13 * kMiB + 5 : 40 * kMiB + 1000,
                                                     11 + static_cast<uint64_t>(k));
    std::fill(data.begin() + 8 * kMiB, data.begin() + 12 * kMiB, 0);  // one zero chunk
    testing::WriteFile(img, data);
    engine::ImportOptions opts;
    opts.source = img;
    opts.meta = testing::NewMeta(engine::NewUuid());
    opts.window = k == 0 ? 1 << 20 : 32 << 20;
    engine::ImportStats stats;
    auto meta = engine::ImportVolume(*store, pool_, opts, &stats);
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ(stats.chunks, k == 0 ? 4u : 11u);
    EXPECT_EQ(stats.zero_chunks, 1u);
    if (k == 1) {
      EXPECT_EQ(stats.records, 3u);
    }
    EXPECT_TRUE(testing::RestoresIdentical(*store, pool_, meta->uuid, img, tmp_.Sub("out")));
    uuids.push_back(meta->uuid);
    images.push_back(img);
  }
  ASSERT_TRUE(store->Close().ok());
  auto ro = testing::OpenStore(tmp_.Sub("big"), GetParam(), false, &pool_);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_FALSE((*ro)->open_report().index_rebuilt) << (*ro)->open_report().index_problem;
  EXPECT_GE(testing::PackSizes(tmp_.Sub("big")).size(), 2u);
  for (size_t k = 0; k < uuids.size(); ++k) {
    EXPECT_TRUE(testing::RestoresIdentical(**ro, pool_, uuids[k], images[k], tmp_.Sub("out2")));
  }
  auto report = engine::VerifyStore(**ro, pool_, engine::VerifyMode::kFull);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
}

// A keyed store: ids differ from unkeyed ones, everything else works the same.
TEST_P(RoundTripOptionsTest, KeyedStore) {
  engine::StoreInitOptions o;
  o.id_key_hex = "000102030405060708090a0b0c0d0e0f";
  auto store = MakeStore("keyed", o);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->hasher().keyed());
  const std::string img = tmp_.Sub("img");
  testing::WriteMixedFile(img, 2 * kMiB + 3, 12);
  auto meta = testing::Import(*store, pool_, img, engine::NewUuid());
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_TRUE(testing::RestoresIdentical(*store, pool_, meta->uuid, img, tmp_.Sub("out")));
  const auto entries = testing::ManifestEntries(*store, meta->uuid);
  const auto bytes = testing::ReadFile(img);
  ASSERT_FALSE(entries.empty());
  ASSERT_FALSE(entries[0].zero);
  EXPECT_NE(entries[0].id,
            codec::ChunkHasher().Hash(absl::MakeConstSpan(bytes.data(), entries[0].length)));
  EXPECT_EQ(entries[0].id,
            store->hasher().Hash(absl::MakeConstSpan(bytes.data(), entries[0].length)));
}

// A source that cannot seek (a named pipe, as `--image <(zcat img.gz)` gives): read as a stream,
// all of it. A writer racing the importer's open is the normal case, so try a few times.
TEST_P(RoundTripOptionsTest, FifoSource) {
  auto store = MakeStore("fifo", engine::StoreInitOptions{});
  ASSERT_NE(store, nullptr);
  const std::vector<uint8_t> data = testing::MixedBytes(3 * kMiB + 17, 13);
  const std::string img = tmp_.Sub("img");
  testing::WriteFile(img, data);
  // If the import stops reading early, the writer must see EPIPE, not die of SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  for (int attempt = 0; attempt < 5; ++attempt) {
    SCOPED_TRACE(attempt);
    const std::string fifo = tmp_.Sub(absl::StrCat("pipe", attempt));
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::atomic<bool> all_written{false};
    std::thread writer([&] {
      // Open as soon as a reader is there (a non-blocking open of a FIFO succeeds only then),
      // and write from the first moment on, as a busy producer does.
      io::Fd fd;
      for (int i = 0; i < 20000 && !fd.valid(); ++i) {
        fd = io::Fd(::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        if (!fd.valid()) std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (!fd.valid()) return;
      ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
      size_t done = 0;
      while (done < data.size()) {
        // Small writes first, then 4 KiB at a time, like a shell pipeline writes.
        const size_t want = done < (16 << 10) ? 1 : 4096;
        const ssize_t n =
            ::write(fd.get(), data.data() + done, std::min<size_t>(want, data.size() - done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      all_written = done == data.size();
      fd.Reset();
      // Should the importer open the FIFO again after the writer gave up (so that nothing
      // would ever pair with it), release it with an empty write end rather than hang.
      for (int i = 0; i < 100; ++i) {
        io::Fd again(::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        if (again.valid()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    engine::ImportOptions opts;
    opts.source = fifo;
    opts.meta = testing::NewMeta(engine::NewUuid());
    opts.window = 1 << 20;
    auto meta = engine::ImportVolume(*store, pool_, opts, nullptr);
    writer.join();
    ASSERT_TRUE(all_written) << "the importer closed the FIFO before reading all of it";
    ASSERT_TRUE(meta.ok()) << meta.status();
    ASSERT_EQ(meta->size, data.size()) << "the import of a FIFO lost data";
    ASSERT_TRUE(testing::RestoresIdentical(*store, pool_, meta->uuid, img, tmp_.Sub("out")));
  }
}

// A manifest from a peer (PutManifest) whose lengths disagree with the chunks it names must not
// restore into a wrong image: PutManifest refuses it, or restore fails with DataLoss.
TEST_P(RoundTripOptionsTest, ManifestLengthsThatDisagreeWithTheChunksNeverRestoreSilently) {
  auto store = MakeStore("lengths", engine::StoreInitOptions{});
  ASSERT_NE(store, nullptr);
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 64 << 10, 14);
  auto meta = testing::Import(*store, pool_, img, engine::NewUuid());
  ASSERT_TRUE(meta.ok()) << meta.status();
  const auto entries = testing::ManifestEntries(*store, meta->uuid);
  ASSERT_EQ(entries.size(), 16u);
  for (uint64_t wrong : {uint64_t{8192}, uint64_t{100}}) {
    SCOPED_TRACE(wrong);
    // The first chunk once right, then again with a wrong length.
    std::vector<engine::ManifestEntry> lying = {entries[0], entries[0]};
    lying[1].length = wrong;
    engine::VolumeBackupMeta m = testing::NewMeta(meta->group_uuid);
    m.size = 4096 + wrong;
    testing::VectorManifestSource source(m, lying);
    absl::Status put = store->PutManifest(m, source);
    if (!put.ok()) continue;  // refused up front: fine
    for (size_t window : {size_t{16} << 20, size_t{4096}}) {
      SCOPED_TRACE(window);
      engine::RestoreOptions ro;
      ro.output = tmp_.Sub("out");
      ro.overwrite = true;
      ro.window = window;
      absl::Status st = engine::RestoreVolume(*store, pool_, m.uuid, ro, nullptr);
      EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss)
          << "a manifest naming a 4096-byte chunk with length " << wrong
          << " restored without error (restore window " << window << "): " << st;
    }
  }
}

TEST_P(RoundTripOptionsTest, ProgressEndsWithAFinalReportOfEverything) {
  auto store = MakeStore("progress", engine::StoreInitOptions{});
  ASSERT_NE(store, nullptr);
  const std::string img = tmp_.Sub("img");
  testing::WriteMixedFile(img, 3 * kMiB + 1, 15);
  std::vector<engine::ProgressState> seen;
  const engine::ProgressFn fn = [&](const engine::ProgressState& s) { seen.push_back(s); };
  engine::ImportOptions opts;
  opts.source = img;
  opts.meta = testing::NewMeta(engine::NewUuid());
  auto meta = engine::ImportVolume(*store, pool_, opts, nullptr, &fn);
  ASSERT_TRUE(meta.ok()) << meta.status();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().phase, "import");
  EXPECT_EQ(seen.back().bytes_done, 3 * kMiB + 1);
  EXPECT_EQ(seen.back().bytes_total, 3 * kMiB + 1);
  for (size_t i = 0; i + 1 < seen.size(); ++i) EXPECT_FALSE(seen[i].final);
  seen.clear();
  engine::RestoreOptions ro;
  ro.output = tmp_.Sub("out");
  ASSERT_TRUE(engine::RestoreVolume(*store, pool_, meta->uuid, ro, nullptr, &fn).ok());
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().phase, "restore");
  EXPECT_EQ(seen.back().bytes_done, 3 * kMiB + 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, RoundTripOptionsTest,
                         ::testing::ValuesIn(testing::AllBackends()), testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
