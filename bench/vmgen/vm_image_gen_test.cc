#include "bench/vmgen/vm_image_gen.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace chunkferry::vmgen {
namespace {

constexpr uint64_t kMiB = 1 << 20;

VolumeSpec Spec(VolumeSpec::Kind kind, uint64_t size, uint64_t seed, uint32_t version = 1) {
  VolumeSpec spec;
  spec.kind = kind;
  spec.size = size;
  spec.seed = seed;
  spec.version = version;
  return spec;
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/vmgen_" + std::to_string(::getpid()) + "_" + name;
}

// Removes a generated image when the test ends.
class ScopedFile {
 public:
  explicit ScopedFile(std::string path) : path_(std::move(path)) {}
  ~ScopedFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::vector<uint8_t> data;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
    return data;
  }
  struct stat st;
  EXPECT_EQ(::fstat(fd, &st), 0);
  data.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t r = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (r <= 0) {
      ADD_FAILURE() << "pread " << path;
      break;
    }
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  return data;
}

// Generates the whole volume in memory (for test sizes only).
std::vector<uint8_t> GenerateAll(const VolumeSpec& spec) {
  absl::StatusOr<VolumeGenerator> gen = VolumeGenerator::Make(spec);
  EXPECT_TRUE(gen.ok()) << gen.status();
  std::vector<uint8_t> data(spec.size);
  if (gen.ok()) {
    EXPECT_TRUE(gen->Generate(0, absl::MakeSpan(data)).ok());
  }
  return data;
}

bool BlockIsZero(const uint8_t* p) {
  return std::all_of(p, p + kBlockSize, [](uint8_t c) { return c == 0; });
}

uint64_t NonZeroBlocks(const std::vector<uint8_t>& data) {
  uint64_t n = 0;
  for (size_t off = 0; off < data.size(); off += kBlockSize) n += !BlockIsZero(data.data() + off);
  return n;
}

std::pair<uint64_t, uint64_t> Id(const uint8_t* p, size_t n) {
  const XXH128_hash_t h = XXH3_128bits(p, n);
  return {h.low64, h.high64};
}

double Zstd1Ratio(const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
  const size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 1);
  EXPECT_FALSE(ZSTD_isError(n));
  return static_cast<double>(data.size()) / static_cast<double>(n);
}

// Collects up to `limit` bytes of the blocks of `kind`, file tails included.
std::vector<uint8_t> BlocksOfKind(const VolumeSpec& spec, BlockKind kind, size_t limit) {
  absl::StatusOr<VolumeGenerator> gen = VolumeGenerator::Make(spec);
  EXPECT_TRUE(gen.ok()) << gen.status();
  std::vector<uint8_t> region(kRegionSize);
  std::vector<uint8_t> out;
  for (uint64_t off = 0; gen.ok() && off < spec.size && out.size() < limit; off += kRegionSize) {
    EXPECT_TRUE(gen->Generate(off, absl::MakeSpan(region)).ok());
    for (uint64_t b = 0; b < kRegionSize / kBlockSize && out.size() < limit; ++b) {
      absl::StatusOr<BlockInfo> info = gen->Describe(off / kBlockSize + b);
      EXPECT_TRUE(info.ok()) << info.status();
      if (!info.ok() || info->kind != kind) continue;
      const uint8_t* p = region.data() + b * kBlockSize;
      out.insert(out.end(), p, p + kBlockSize);
    }
  }
  return out;
}

TEST(VmImageGenTest, SameSeedGivesSameBytesWhateverTheThreads) {
  for (VolumeSpec::Kind kind : {VolumeSpec::kRootFs, VolumeSpec::kData}) {
    const VolumeSpec spec = Spec(kind, 64 * kMiB, 11, 2);
    ScopedFile a(TempPath("same_a.img"));
    ScopedFile b(TempPath("same_b.img"));
    ASSERT_TRUE(WriteVolume(spec, a.path(), {.threads = 1}).ok());
    ASSERT_TRUE(WriteVolume(spec, b.path(), {.threads = 3}).ok());
    const std::vector<uint8_t> da = ReadFile(a.path());
    const std::vector<uint8_t> db = ReadFile(b.path());
    ASSERT_EQ(da.size(), spec.size);
    EXPECT_TRUE(da == db) << "kind " << kind;
    EXPECT_GT(NonZeroBlocks(da), 0u);
  }
}

TEST(VmImageGenTest, DifferentSeedGivesDifferentBytes) {
  for (VolumeSpec::Kind kind : {VolumeSpec::kRootFs, VolumeSpec::kData}) {
    const std::vector<uint8_t> a = GenerateAll(Spec(kind, 64 * kMiB, 1));
    const std::vector<uint8_t> b = GenerateAll(Spec(kind, 64 * kMiB, 2));
    uint64_t either = 0;
    uint64_t same = 0;
    for (size_t off = 0; off < a.size(); off += kBlockSize) {
      if (BlockIsZero(a.data() + off) && BlockIsZero(b.data() + off)) continue;
      ++either;
      same += std::memcmp(a.data() + off, b.data() + off, kBlockSize) == 0;
    }
    EXPECT_GT(either, 1000u);
    EXPECT_LT(same, either / 100) << "kind " << kind;
  }
}

TEST(VmImageGenTest, AnyRegionGeneratedAloneEqualsTheFile) {
  for (VolumeSpec::Kind kind : {VolumeSpec::kRootFs, VolumeSpec::kData}) {
    SCOPED_TRACE(testing::Message() << "kind " << kind);
    // 64 MiB and 12 KiB: three groups, the last a short tail, the last region short.
    const VolumeSpec spec = Spec(kind, 64 * kMiB + 3 * kBlockSize, 5, 3);
    ScopedFile file(TempPath("regions.img"));
    ASSERT_TRUE(WriteVolume(spec, file.path(), {.threads = 2}).ok());
    const std::vector<uint8_t> whole = ReadFile(file.path());
    ASSERT_EQ(whole.size(), spec.size);

    std::vector<std::pair<uint64_t, uint64_t>> ranges;  // offset, length; in a scrambled order
    for (uint64_t off = 0; off < spec.size; off += kRegionSize) {
      ranges.push_back({off, std::min(kRegionSize, spec.size - off)});
    }
    std::reverse(ranges.begin(), ranges.end());
    std::swap(ranges[3], ranges[40]);
    ranges.push_back({32 * kMiB - 2 * kBlockSize, 5 * kBlockSize});  // across a group boundary
    ranges.push_back({kBlockSize, kBlockSize});
    absl::StatusOr<VolumeGenerator> gen = VolumeGenerator::Make(spec);
    ASSERT_TRUE(gen.ok()) << gen.status();
    std::vector<uint8_t> buf;
    for (const auto& [off, len] : ranges) {
      buf.assign(len, 0xAB);
      ASSERT_TRUE(gen->Generate(off, absl::MakeSpan(buf)).ok());
      EXPECT_EQ(std::memcmp(buf.data(), whole.data() + off, len), 0) << "offset " << off;
    }

    // A fresh generator for one region, with nothing cached; the mask tells the zero blocks.
    absl::StatusOr<VolumeGenerator> fresh = VolumeGenerator::Make(spec);
    ASSERT_TRUE(fresh.ok());
    buf.assign(kRegionSize, 0xAB);
    std::vector<uint8_t> mask;
    absl::StatusOr<uint64_t> count = fresh->Generate(37 * kRegionSize, absl::MakeSpan(buf), &mask);
    ASSERT_TRUE(count.ok());
    EXPECT_EQ(std::memcmp(buf.data(), whole.data() + 37 * kRegionSize, kRegionSize), 0);
    ASSERT_EQ(mask.size(), kRegionSize / kBlockSize);
    uint64_t marked = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      EXPECT_EQ(mask[i] != 0, !BlockIsZero(buf.data() + i * kBlockSize)) << "block " << i;
      marked += mask[i];
    }
    EXPECT_EQ(marked, *count);
  }
}

TEST(VmImageGenTest, RootVolumeIsAboutNinePercentUsedAndSparse) {
  const VolumeSpec spec = Spec(VolumeSpec::kRootFs, 256 * kMiB, 3);
  ScopedFile file(TempPath("root.img"));
  absl::StatusOr<WriteStats> stats = WriteVolume(spec, file.path());
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::vector<uint8_t> data = ReadFile(file.path());
  const uint64_t nonzero = NonZeroBlocks(data);
  EXPECT_EQ(stats->size, spec.size);
  EXPECT_EQ(stats->nonzero_bytes, nonzero * kBlockSize);
  const double used = static_cast<double>(nonzero * kBlockSize) / static_cast<double>(spec.size);
  EXPECT_GT(used, 0.075);
  EXPECT_LT(used, 0.105);

  struct stat st;
  ASSERT_EQ(::stat(file.path().c_str(), &st), 0);
  const uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  EXPECT_LT(allocated, spec.size / 5) << "the image is not sparse";
  EXPECT_GE(allocated, stats->nonzero_bytes / 2);
}

TEST(VmImageGenTest, DataVolumeIsTextRandomAndZeroInThirds) {
  const VolumeSpec spec = Spec(VolumeSpec::kData, 256 * kMiB, 4);
  absl::StatusOr<VolumeGenerator> gen = VolumeGenerator::Make(spec);
  ASSERT_TRUE(gen.ok());
  uint64_t count[3] = {0, 0, 0};
  for (uint64_t b = 0; b < spec.size / kBlockSize; ++b) {
    absl::StatusOr<BlockInfo> info = gen->Describe(b);
    ASSERT_TRUE(info.ok());
    ASSERT_TRUE(info->kind == BlockKind::kZero || info->kind == BlockKind::kText ||
                info->kind == BlockKind::kRandom);
    ++count[info->kind == BlockKind::kZero ? 0 : info->kind == BlockKind::kText ? 1 : 2];
  }
  for (uint64_t c : count) {
    EXPECT_GT(c, spec.size / kBlockSize / 6);
    EXPECT_LT(c, spec.size / kBlockSize / 2);
  }
}

// Streams two versions and counts how their blocks differ.
struct VersionDiff {
  uint64_t used_before = 0;
  uint64_t rewritten = 0;  // non-zero in both, different
  uint64_t appended = 0;   // zero before, non-zero after
  uint64_t vanished = 0;   // non-zero before, zero after
};

VersionDiff Diff(const VolumeSpec& before, const VolumeSpec& after) {
  VersionDiff d;
  absl::StatusOr<VolumeGenerator> a = VolumeGenerator::Make(before);
  absl::StatusOr<VolumeGenerator> b = VolumeGenerator::Make(after);
  EXPECT_TRUE(a.ok() && b.ok());
  std::vector<uint8_t> ra(kRegionSize);
  std::vector<uint8_t> rb(kRegionSize);
  for (uint64_t off = 0; a.ok() && b.ok() && off < before.size; off += kRegionSize) {
    EXPECT_TRUE(a->Generate(off, absl::MakeSpan(ra)).ok());
    EXPECT_TRUE(b->Generate(off, absl::MakeSpan(rb)).ok());
    for (size_t i = 0; i < kRegionSize; i += kBlockSize) {
      const bool za = BlockIsZero(ra.data() + i);
      const bool zb = BlockIsZero(rb.data() + i);
      d.used_before += !za;
      if (!za && !zb) {
        d.rewritten += std::memcmp(ra.data() + i, rb.data() + i, kBlockSize) != 0;
      } else {
        d.appended += za && !zb;
        d.vanished += !za && zb;
      }
    }
  }
  return d;
}

TEST(VmImageGenTest, EachVersionRewritesAboutThreePercentAndAppendsAboutOneAndAHalf) {
  for (VolumeSpec::Kind kind : {VolumeSpec::kRootFs, VolumeSpec::kData}) {
    const uint64_t size = kind == VolumeSpec::kRootFs ? 512 * kMiB : 128 * kMiB;
    for (uint32_t v = 1; v <= 2; ++v) {
      const VersionDiff d = Diff(Spec(kind, size, 9, v), Spec(kind, size, 9, v + 1));
      const double used = static_cast<double>(d.used_before);
      SCOPED_TRACE(testing::Message()
                   << "kind " << kind << " v" << v << " -> v" << v + 1 << ": used " << d.used_before
                   << " rewritten " << d.rewritten << " appended " << d.appended);
      EXPECT_GT(d.rewritten / used, 0.022);
      EXPECT_LT(d.rewritten / used, 0.045);
      EXPECT_GT(d.appended / used, 0.010);
      EXPECT_LT(d.appended / used, 0.020);
      EXPECT_EQ(d.vanished, 0u);
    }
  }
}

TEST(VmImageGenTest, DescribeReportsTheVersionThatWroteEachBlock) {
  const VolumeSpec v1 = Spec(VolumeSpec::kData, 64 * kMiB, 6, 1);
  const VolumeSpec v2 = Spec(VolumeSpec::kData, 64 * kMiB, 6, 2);
  const std::vector<uint8_t> a = GenerateAll(v1);
  const std::vector<uint8_t> b = GenerateAll(v2);
  absl::StatusOr<VolumeGenerator> gen = VolumeGenerator::Make(v2);
  ASSERT_TRUE(gen.ok());
  uint64_t new_in_v2 = 0;
  for (uint64_t blk = 0; blk < v2.size / kBlockSize; ++blk) {
    absl::StatusOr<BlockInfo> info = gen->Describe(blk);
    ASSERT_TRUE(info.ok());
    const bool changed =
        std::memcmp(a.data() + blk * kBlockSize, b.data() + blk * kBlockSize, kBlockSize) != 0;
    EXPECT_EQ(info->version == 2, changed) << "block " << blk;
    EXPECT_EQ(info->kind == BlockKind::kZero, BlockIsZero(b.data() + blk * kBlockSize));
    new_in_v2 += info->version == 2;
  }
  EXPECT_GT(new_in_v2, 0u);
}

TEST(VmImageGenTest, TextCompressesAndRandomDoesNot) {
  const VolumeSpec data = Spec(VolumeSpec::kData, 128 * kMiB, 8);
  const std::vector<uint8_t> text = BlocksOfKind(data, BlockKind::kText, 8 * kMiB);
  const std::vector<uint8_t> random = BlocksOfKind(data, BlockKind::kRandom, 8 * kMiB);
  ASSERT_EQ(text.size(), 8 * kMiB);
  ASSERT_EQ(random.size(), 8 * kMiB);
  EXPECT_GE(Zstd1Ratio(text), 2.5);
  EXPECT_LE(Zstd1Ratio(text), 6.0);
  EXPECT_GT(Zstd1Ratio(random), 0.99);
  EXPECT_LT(Zstd1Ratio(random), 1.01);

  const VolumeSpec root = Spec(VolumeSpec::kRootFs, 512 * kMiB, 8);
  const std::vector<uint8_t> root_text = BlocksOfKind(root, BlockKind::kText, 4 * kMiB);
  const std::vector<uint8_t> binary = BlocksOfKind(root, BlockKind::kBinary, 4 * kMiB);
  const std::vector<uint8_t> root_random = BlocksOfKind(root, BlockKind::kRandom, 4 * kMiB);
  ASSERT_GE(root_text.size(), 2 * kMiB);
  ASSERT_GE(binary.size(), 2 * kMiB);
  ASSERT_GE(root_random.size(), 1 * kMiB);
  EXPECT_GE(Zstd1Ratio(root_text), 2.5);
  EXPECT_LE(Zstd1Ratio(root_text), 6.0);
  EXPECT_GT(Zstd1Ratio(binary), 1.6);
  EXPECT_LT(Zstd1Ratio(binary), 2.6);
  EXPECT_LT(Zstd1Ratio(root_random), 1.15);  // only the zero-padded file tails compress
}

TEST(VmImageGenTest, RootVolumeHoldsDuplicateBlocks) {
  const std::vector<uint8_t> data = GenerateAll(Spec(VolumeSpec::kRootFs, 256 * kMiB, 10));
  std::set<std::pair<uint64_t, uint64_t>> seen;
  uint64_t nonzero = 0;
  uint64_t duplicates = 0;
  for (size_t off = 0; off < data.size(); off += kBlockSize) {
    if (BlockIsZero(data.data() + off)) continue;
    ++nonzero;
    duplicates += !seen.insert(Id(data.data() + off, kBlockSize)).second;
  }
  EXPECT_GT(duplicates, nonzero / 100);
  EXPECT_LT(duplicates, nonzero / 4);
}

TEST(VmImageGenTest, RejectsBadSpecsAndRanges) {
  VolumeSpec spec = Spec(VolumeSpec::kRootFs, 64 * kMiB, 1);
  EXPECT_TRUE(ValidateSpec(spec).ok());
  for (auto mutate : std::vector<void (*)(VolumeSpec&)>{
           [](VolumeSpec& s) { s.size = 0; },
           [](VolumeSpec& s) { s.size = 64 * kMiB + 1; },
           [](VolumeSpec& s) { s.size = kMiB; },
           [](VolumeSpec& s) { s.version = 0; },
           [](VolumeSpec& s) { s.used_fraction = 0; },
           [](VolumeSpec& s) { s.used_fraction = 0.95; },
           [](VolumeSpec& s) { s.rewrite_fraction = 0.5; },
           [](VolumeSpec& s) { s.append_fraction = -0.1; },
       }) {
    VolumeSpec bad = spec;
    mutate(bad);
    EXPECT_EQ(ValidateSpec(bad).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(VolumeGenerator::Make(bad).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(WriteVolume(bad, TempPath("bad.img")).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  absl::StatusOr<VolumeGenerator> gen = VolumeGenerator::Make(spec);
  ASSERT_TRUE(gen.ok());
  std::vector<uint8_t> buf(2 * kBlockSize);
  EXPECT_EQ(gen->Generate(100, absl::MakeSpan(buf)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gen->Generate(0, absl::MakeSpan(buf.data(), 100)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gen->Generate(spec.size - kBlockSize, absl::MakeSpan(buf)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(gen->Generate(spec.size - 2 * kBlockSize, absl::MakeSpan(buf)).ok());
  EXPECT_EQ(gen->Describe(spec.size / kBlockSize).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(WriteVolume(spec, "/nonexistent-dir/x.img").ok());
}

TEST(ParseSizeTest, AcceptsBinarySuffixes) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64M"), 64u << 20);
  EXPECT_EQ(*ParseSize("64MiB"), 64u << 20);
  EXPECT_EQ(*ParseSize("2G"), 2ull << 30);
  EXPECT_EQ(*ParseSize("2gb"), 2ull << 30);
  EXPECT_EQ(*ParseSize("3T"), 3ull << 40);
  EXPECT_EQ(*ParseSize("8k"), 8192u);
  for (const char* bad :
       {"", "M", "12X", "1.5G", "-1", "64 M", "99999999999999999999", "16777216T", "2GG"}) {
    EXPECT_EQ(ParseSize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(IdealBytesTest, CountsNewUniqueBlocksAndCompressesThemAsOneStream) {
  const VolumeSpec v1 = Spec(VolumeSpec::kRootFs, 64 * kMiB, 12, 1);
  const VolumeSpec v2 = Spec(VolumeSpec::kRootFs, 64 * kMiB, 12, 2);
  ScopedFile f1(TempPath("ideal_v1.img"));
  ScopedFile f2(TempPath("ideal_v2.img"));
  ASSERT_TRUE(WriteVolume(v1, f1.path()).ok());
  ASSERT_TRUE(WriteVolume(v2, f2.path()).ok());
  const std::vector<uint8_t> a = ReadFile(f1.path());
  const std::vector<uint8_t> b = ReadFile(f2.path());

  // The expected answer, computed the slow, obvious way.
  std::set<std::pair<uint64_t, uint64_t>> seen;
  uint64_t v1_nonzero = 0;
  for (size_t off = 0; off < a.size(); off += kBlockSize) {
    if (BlockIsZero(a.data() + off)) continue;
    ++v1_nonzero;
    seen.insert(Id(a.data() + off, kBlockSize));
  }
  std::vector<uint8_t> fresh;
  for (size_t off = 0; off < b.size(); off += kBlockSize) {
    if (BlockIsZero(b.data() + off) || !seen.insert(Id(b.data() + off, kBlockSize)).second) {
      continue;
    }
    fresh.insert(fresh.end(), b.data() + off, b.data() + off + kBlockSize);
  }
  ASSERT_FALSE(fresh.empty());

  const std::vector<std::string> none;
  const std::vector<std::string> old_images = {f1.path()};
  const std::vector<std::string> new_images = {f2.path()};
  absl::StatusOr<IdealBytes> incremental = MeasureIdealBytes(old_images, new_images);
  ASSERT_TRUE(incremental.ok()) << incremental.status();
  EXPECT_EQ(incremental->new_blocks, fresh.size() / kBlockSize);
  EXPECT_EQ(incremental->new_raw_bytes, fresh.size());
  const double one_shot = static_cast<double>(fresh.size()) / Zstd1Ratio(fresh);
  EXPECT_NEAR(static_cast<double>(incremental->ideal_zstd1_bytes), one_shot, one_shot * 0.1);

  absl::StatusOr<IdealBytes> first = MeasureIdealBytes(none, old_images);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_LT(first->new_blocks, v1_nonzero);  // duplicates inside v1 count once
  EXPECT_GT(first->new_blocks, v1_nonzero * 3 / 4);
  EXPECT_LT(first->ideal_zstd1_bytes, first->new_raw_bytes * 4 / 5);  // it compresses

  // The same image twice adds nothing the second time, as old or as earlier new.
  absl::StatusOr<IdealBytes> same = MeasureIdealBytes(old_images, old_images);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->new_blocks, 0u);
  EXPECT_EQ(same->new_raw_bytes, 0u);
  const std::vector<std::string> twice = {f1.path(), f1.path()};
  absl::StatusOr<IdealBytes> doubled = MeasureIdealBytes(none, twice);
  ASSERT_TRUE(doubled.ok());
  EXPECT_EQ(doubled->new_blocks, first->new_blocks);

  EXPECT_EQ(IdealBytesJson({1, 4096, 300}),
            R"({"new_blocks":1,"new_raw_bytes":4096,"ideal_zstd1_bytes":300})");
  EXPECT_FALSE(MeasureIdealBytes(none, std::vector<std::string>{"/nonexistent.img"}).ok());
}

}  // namespace
}  // namespace chunkferry::vmgen
