#include "engine/format/manifest.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "engine/format/volume_backup.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::ReadFile;
using ::chunkferry::testing::TempDir;
using ::chunkferry::testing::WriteFile;

codec::ChunkId Id(uint64_t n) { return codec::ChunkId{n * 0x9e3779b97f4a7c15ull, ~n}; }

VolumeBackupMeta BasicMeta(uint64_t size) {
  VolumeBackupMeta m;
  m.uuid = "0123456789abcdef0123456789abcdef";
  m.volume_uuid = "11111111111111111111111111111111";
  m.group_uuid = "22222222222222222222222222222222";
  m.size = size;
  m.install_path = "chunkferry://volume-backups/x/y";
  m.chunker = "fixed:4096";
  return m;
}

// Reads every entry of a manifest, `max` at a time.
std::vector<ManifestEntry> ReadAll(ManifestReader& r, size_t max) {
  std::vector<ManifestEntry> all, batch;
  for (;;) {
    auto n = r.Next(&batch, max);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) break;
    EXPECT_LE(*n, max);
    EXPECT_EQ(*n, batch.size());
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

class ManifestTest : public ::testing::Test {
 protected:
  // The bytes of a valid manifest of one 4 KiB chunk, to make damaged ones from.
  std::vector<uint8_t> OneChunkManifestBytes() {
    auto w = ManifestWriter::Create(Tmp("one"));
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return {};
    EXPECT_TRUE((*w)->AddData(Id(1), 4096).ok());
    EXPECT_TRUE((*w)->Finish(BasicMeta(4096), Final("one")).ok());
    return ReadFile(Final("one"));
  }
  std::string Tmp(const std::string& name) { return dir_.Sub(name + ".tmp"); }
  std::string Final(const std::string& name) { return dir_.Sub(name + ".manifest"); }

  // Writes a small manifest: data, two zero runs that merge, data, zero at the end.
  std::string WriteSmall(const VolumeBackupMeta& meta_in) {
    auto w = ManifestWriter::Create(Tmp("small"));
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return "";
    EXPECT_TRUE((*w)->AddData(Id(1), 4096).ok());
    EXPECT_TRUE((*w)->AddZero(4096).ok());
    EXPECT_TRUE((*w)->AddZero(8192).ok());
    EXPECT_TRUE((*w)->AddData(Id(2), 100).ok());
    EXPECT_TRUE((*w)->AddZero(10).ok());
    VolumeBackupMeta meta = meta_in;
    meta.size = (*w)->logical_size();
    absl::Status st = (*w)->Finish(meta, Final("small"));
    EXPECT_TRUE(st.ok()) << st;
    return Final("small");
  }

  TempDir dir_;
};

TEST_F(ManifestTest, RoundTripsDataAndZeroEntriesMergingConsecutiveZeros) {
  auto w = ManifestWriter::Create(Tmp("m"));
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->AddData(Id(1), 4096).ok());
  ASSERT_TRUE((*w)->AddZero(4096).ok());
  ASSERT_TRUE((*w)->AddZero(8192).ok());
  ASSERT_TRUE((*w)->Add(ManifestEntry{100, false, Id(2)}).ok());
  ASSERT_TRUE((*w)->Add(ManifestEntry{10, true, {}}).ok());
  ASSERT_TRUE((*w)->AddData(Id(1), 4096).ok());  // the same chunk twice is fine
  EXPECT_EQ((*w)->logical_size(), 4096u + 12288u + 100u + 10u + 4096u);
  EXPECT_EQ((*w)->data_entries(), 3u);
  ASSERT_TRUE((*w)->Finish(BasicMeta((*w)->logical_size()), Final("m")).ok());
  EXPECT_FALSE(FileExists(Tmp("m")));

  auto r = ManifestReader::Open(Final("m"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->data_entries(), 3u);
  EXPECT_EQ((*r)->zero_entries(), 2u);
  const auto all = ReadAll(**r, 100);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_FALSE(all[0].zero);
  EXPECT_EQ(all[0].length, 4096u);
  EXPECT_EQ(all[0].id, Id(1));
  EXPECT_TRUE(all[1].zero);
  EXPECT_EQ(all[1].length, 12288u);  // 4096 + 8192 merged
  EXPECT_FALSE(all[2].zero);
  EXPECT_EQ(all[2].length, 100u);
  EXPECT_EQ(all[2].id, Id(2));
  EXPECT_TRUE(all[3].zero);
  EXPECT_EQ(all[3].length, 10u);
  EXPECT_EQ(all[4].id, Id(1));

  // One at a time gives the same, and Rewind starts over.
  (*r)->Rewind();
  const auto one_by_one = ReadAll(**r, 1);
  ASSERT_EQ(one_by_one.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(one_by_one[i].length, all[i].length);
    EXPECT_EQ(one_by_one[i].zero, all[i].zero);
    EXPECT_EQ(one_by_one[i].id, all[i].id);
  }
}

TEST_F(ManifestTest, TrailingAndLeadingZeroRunsAndEmptyManifest) {
  {
    auto w = ManifestWriter::Create(Tmp("z"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddZero(1 << 20).ok());
    ASSERT_TRUE((*w)->AddZero(1 << 20).ok());
    ASSERT_TRUE((*w)->Finish(BasicMeta(2 << 20), Final("z")).ok());
    auto r = ManifestReader::Open(Final("z"));
    ASSERT_TRUE(r.ok()) << r.status();
    const auto all = ReadAll(**r, 10);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_TRUE(all[0].zero);
    EXPECT_EQ(all[0].length, 2u << 20);
  }
  {
    auto w = ManifestWriter::Create(Tmp("e"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Finish(BasicMeta(0), Final("e")).ok());
    auto r = ManifestReader::Open(Final("e"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->data_entries(), 0u);
    EXPECT_EQ((*r)->zero_entries(), 0u);
    EXPECT_EQ((*r)->meta().size, 0u);
    EXPECT_TRUE(ReadAll(**r, 10).empty());
  }
}

// Enough entries that the reader refills its buffer many times and entries straddle blocks.
TEST_F(ManifestTest, RoundTripsManyEntriesAcrossReadBlocks) {
  constexpr uint64_t kEntries = 150000;  // ~3 MiB of entries
  auto w = ManifestWriter::Create(Tmp("big"));
  ASSERT_TRUE(w.ok());
  uint64_t size = 0;
  for (uint64_t i = 0; i < kEntries; ++i) {
    if (i % 7 == 3) {
      ASSERT_TRUE((*w)->AddZero(512 + i % 5).ok());
      size += 512 + i % 5;
    } else {
      const uint32_t len = static_cast<uint32_t>(1 + i % 8192);
      ASSERT_TRUE((*w)->AddData(Id(i), len).ok());
      size += len;
    }
  }
  ASSERT_TRUE((*w)->Finish(BasicMeta(size), Final("big")).ok());
  auto r = ManifestReader::Open(Final("big"));
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t max : {size_t{4096}, size_t{777}}) {
    (*r)->Rewind();
    const auto all = ReadAll(**r, max);
    ASSERT_EQ(all.size(), kEntries);
    uint64_t covered = 0;
    for (uint64_t i = 0; i < kEntries; ++i) {
      ASSERT_EQ(all[i].zero, i % 7 == 3) << i;
      if (!all[i].zero) {
        ASSERT_EQ(all[i].id, Id(i)) << i;
        ASSERT_EQ(all[i].length, 1 + i % 8192) << i;
      }
      covered += all[i].length;
    }
    EXPECT_EQ(covered, size);
  }
}

TEST_F(ManifestTest, MetaFieldsRoundTripAndAbsentOptionalsStayAbsent) {
  VolumeBackupMeta full = BasicMeta(0);
  full.name = "root disk";
  full.description = "with ünïcode and = signs\nand a newline";
  full.type = "Data";
  full.state = "Disabled";
  full.status = "Creating";
  full.metadata = "{\"k\": [1, 2, 3]}";
  full.mode = "incremental";
  full.vm_instance_uuid = "33333333333333333333333333333333";
  full.create_date = 1510698057;
  full.last_op_date = -5;
  full.extra = {{"futureKey", "v1"}, {"another", ""}};
  full.name = std::string("");  // present but empty is not absent
  {
    auto w = ManifestWriter::Create(Tmp("full"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Finish(full, Final("full")).ok());
    auto r = ManifestReader::Open(Final("full"));
    ASSERT_TRUE(r.ok()) << r.status();
    const VolumeBackupMeta& m = (*r)->meta();
    EXPECT_EQ(m.uuid, full.uuid);
    EXPECT_EQ(m.volume_uuid, full.volume_uuid);
    ASSERT_TRUE(m.name.has_value());
    EXPECT_EQ(*m.name, "");
    EXPECT_EQ(m.description, full.description);
    EXPECT_EQ(m.type, "Data");
    EXPECT_EQ(m.state, "Disabled");
    EXPECT_EQ(m.status, "Creating");
    EXPECT_EQ(m.size, 0u);
    EXPECT_EQ(m.metadata, full.metadata);
    EXPECT_EQ(m.group_uuid, full.group_uuid);
    EXPECT_EQ(m.mode, "incremental");
    EXPECT_EQ(m.vm_instance_uuid, full.vm_instance_uuid);
    EXPECT_EQ(m.create_date, 1510698057);
    EXPECT_EQ(m.last_op_date, -5);
    EXPECT_EQ(m.install_path, full.install_path);
    EXPECT_EQ(m.chunker, "fixed:4096");
    EXPECT_EQ(m.extra, full.extra);
  }
  {
    VolumeBackupMeta bare = BasicMeta(0);
    auto w = ManifestWriter::Create(Tmp("bare"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Finish(bare, Final("bare")).ok());
    auto r = ManifestReader::Open(Final("bare"));
    ASSERT_TRUE(r.ok()) << r.status();
    const VolumeBackupMeta& m = (*r)->meta();
    EXPECT_FALSE(m.name.has_value());
    EXPECT_FALSE(m.description.has_value());
    EXPECT_FALSE(m.metadata.has_value());
    EXPECT_FALSE(m.vm_instance_uuid.has_value());
    EXPECT_TRUE(m.extra.empty());
    EXPECT_EQ(m.type, "Root");
    EXPECT_EQ(m.mode, "full");
  }
}

TEST_F(ManifestTest, FinishRejectsSizeMismatchAndLeavesNothing) {
  {
    auto w = ManifestWriter::Create(Tmp("bad"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddData(Id(1), 4096).ok());
    ASSERT_TRUE((*w)->AddZero(4096).ok());
    for (uint64_t wrong : {uint64_t{0}, uint64_t{4096}, uint64_t{8193}}) {
      absl::Status st = (*w)->Finish(BasicMeta(wrong), Final("bad"));
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << wrong << ": " << st;
      EXPECT_FALSE(FileExists(Final("bad")));
    }
  }
  // The failed writer, destroyed, removed its temporary file.
  EXPECT_FALSE(FileExists(Tmp("bad")));
  EXPECT_FALSE(FileExists(Final("bad")));
}

TEST_F(ManifestTest, WriterDestroyedWithoutFinishLeavesNoFile) {
  {
    auto w = ManifestWriter::Create(Tmp("gone"));
    ASSERT_TRUE(w.ok());
    for (uint64_t i = 0; i < 100000; ++i) ASSERT_TRUE((*w)->AddData(Id(i), 4096).ok());
    EXPECT_TRUE(FileExists(Tmp("gone")));
  }
  EXPECT_FALSE(FileExists(Tmp("gone")));
  EXPECT_FALSE(FileExists(Final("gone")));
}

TEST_F(ManifestTest, CreateRefusesAnExistingTemporaryFile) {
  WriteFile(Tmp("x"), std::vector<uint8_t>{1, 2, 3});
  auto w = ManifestWriter::Create(Tmp("x"));
  EXPECT_FALSE(w.ok());
  // ... and leaves the file that was there alone.
  EXPECT_EQ(ReadFile(Tmp("x")), (std::vector<uint8_t>{1, 2, 3}));
}

TEST_F(ManifestTest, AddDataRejectsLengthsOutOfRange) {
  auto w = ManifestWriter::Create(Tmp("r"));
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->AddData(Id(1), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->AddData(Id(1), kMaxManifestChunk + 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*w)->AddData(Id(1), kMaxManifestChunk).ok());
  EXPECT_EQ((*w)->logical_size(), kMaxManifestChunk);
}

// Lengths adding up past 2^64 would wrap to a small volume: `restore --output -` of a 4 KiB
// volume would then stream exabytes of zeros. The writer refuses them, the reader calls them
// damage.
TEST_F(ManifestTest, LengthsThatWouldWrapPast64BitsAreRefused) {
  {
    auto w = ManifestWriter::Create(Tmp("wrap"));
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->AddZero(kMaxVolumeSize - 4096).ok());
    EXPECT_EQ((*w)->AddZero(8192).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ((*w)->AddData(Id(1), 8192).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE((*w)->AddData(Id(1), 4096).ok());
    EXPECT_EQ((*w)->AddZero(1).code(), absl::StatusCode::kInvalidArgument);
  }
  // A file whose zero runs wrap (2^63 + 4096 + 2^63 = 4096), made by hand from a valid one of
  // one 4 KiB chunk: entries, counts and checksum all consistent.
  const std::vector<uint8_t> valid = OneChunkManifestBytes();
  ASSERT_FALSE(valid.empty());
  constexpr size_t kHeader = 16, kData = 21, kTrailer = 48;
  auto zero_entry = [](uint64_t length) {
    std::vector<uint8_t> e = {2};
    for (int i = 0; i < 8; ++i) e.push_back(static_cast<uint8_t>(length >> (8 * i)));
    return e;
  };
  std::vector<uint8_t> bad(valid.begin(), valid.begin() + kHeader);
  for (const auto& part :
       {zero_entry(uint64_t{1} << 63),
        std::vector<uint8_t>(valid.begin() + kHeader, valid.begin() + kHeader + kData),
        zero_entry(uint64_t{1} << 63)}) {
    bad.insert(bad.end(), part.begin(), part.end());
  }
  const size_t meta_offset = bad.size();
  bad.insert(bad.end(), valid.begin() + kHeader + kData, valid.end() - kTrailer);
  auto put64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) bad.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  put64(meta_offset);
  put64(1);                                                  // data entries
  put64(2);                                                  // zero entries
  put64(4096);                                               // logical size, as wrapped
  bad.insert(bad.end(), valid.end() - 16, valid.end() - 8);  // "CFMT", u32 0
  put64(codec::Checksum64(bad));
  WriteFile(Final("wrapped"), bad);
  auto r = ManifestReader::Open(Final("wrapped"));
  ASSERT_FALSE(r.ok()) << "a manifest whose lengths wrap was accepted as a 4 KiB volume";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "2^63")) << r.status();
}

// A meta block is a few hundred bytes. A file with a huge one (consistent checksum) is refused
// before the reader allocates it, and the writer makes none above the bound.
TEST_F(ManifestTest, AHugeMetaBlockIsRefusedNotAllocated) {
  {
    auto w = ManifestWriter::Create(Tmp("big-meta"));
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->AddData(Id(1), 4096).ok());
    VolumeBackupMeta m = BasicMeta(4096);
    m.description = std::string(1 << 20, 'd');
    m.metadata = std::string(1 << 20, 'm');
    m.name = std::string(1 << 20, 'n');
    m.install_path = std::string(1 << 20, 'i');
    m.chunker = std::string(1 << 20, 'c');
    auto st = (*w)->Finish(m, Final("big-meta"));
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "metadata takes")) << st;
  }
  const std::vector<uint8_t> valid = OneChunkManifestBytes();
  ASSERT_FALSE(valid.empty());
  constexpr size_t kTrailer = 48;
  // The same file with 6 MiB more in its meta region, trailer and checksum kept consistent.
  std::vector<uint8_t> bad(valid.begin(), valid.end() - kTrailer);
  bad.resize(bad.size() + (6u << 20), 0);
  bad.insert(bad.end(), valid.end() - kTrailer, valid.end() - 8);
  const std::vector<uint8_t> sum = [&] {
    std::vector<uint8_t> out;
    const uint64_t v = codec::Checksum64(bad);
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return out;
  }();
  bad.insert(bad.end(), sum.begin(), sum.end());
  WriteFile(Final("fat"), bad);
  auto r = ManifestReader::Open(Final("fat"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "meta block of")) << r.status();
}

TEST_F(ManifestTest, OpenOfAMissingFileIsNotFound) {
  auto r = ManifestReader::Open(Final("nope"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

bool IsRefusal(const absl::Status& st) {
  return st.code() == absl::StatusCode::kDataLoss ||
         st.code() == absl::StatusCode::kFailedPrecondition;
}

TEST_F(ManifestTest, EverySingleByteFlipIsRefused) {
  VolumeBackupMeta meta = BasicMeta(0);
  meta.name = "n";
  meta.vm_instance_uuid = "33333333333333333333333333333333";
  const std::string path = WriteSmall(meta);
  ASSERT_FALSE(path.empty());
  const std::vector<uint8_t> good = ReadFile(path);
  ASSERT_GT(good.size(), 100u);
  ASSERT_TRUE(ManifestReader::Open(path).ok());
  const std::string damaged = dir_.Sub("damaged.manifest");
  size_t refused = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::vector<uint8_t> bad = good;
      bad[i] ^= mask;
      WriteFile(damaged, bad);
      auto r = ManifestReader::Open(damaged);
      ASSERT_FALSE(r.ok()) << "flip of byte " << i << " (mask " << int{mask} << ") of "
                           << good.size() << " was accepted";
      EXPECT_TRUE(IsRefusal(r.status())) << "byte " << i << ": " << r.status();
      ++refused;
    }
  }
  EXPECT_EQ(refused, good.size() * 3);
}

TEST_F(ManifestTest, TruncationsAndExtensionsAreRefused) {
  const std::string path = WriteSmall(BasicMeta(0));
  ASSERT_FALSE(path.empty());
  const std::vector<uint8_t> good = ReadFile(path);
  const std::string damaged = dir_.Sub("short.manifest");
  for (size_t len :
       {size_t{0}, size_t{1}, size_t{4}, size_t{15}, size_t{16}, size_t{40}, good.size() / 2,
        good.size() - 48, good.size() - 40, good.size() - 9, good.size() - 8, good.size() - 1}) {
    ASSERT_LT(len, good.size());
    WriteFile(damaged, absl::MakeConstSpan(good.data(), len));
    auto r = ManifestReader::Open(damaged);
    ASSERT_FALSE(r.ok()) << "truncation to " << len << " of " << good.size() << " was accepted";
    EXPECT_TRUE(IsRefusal(r.status())) << len << ": " << r.status();
  }
  for (size_t extra : {size_t{1}, size_t{8}, size_t{21}}) {
    std::vector<uint8_t> longer = good;
    longer.insert(longer.end(), extra, 0);
    WriteFile(damaged, longer);
    auto r = ManifestReader::Open(damaged);
    ASSERT_FALSE(r.ok()) << extra << " extra bytes were accepted";
    EXPECT_TRUE(IsRefusal(r.status())) << r.status();
  }
}

// A manifest the writer accepted must be readable: metadata the reader would refuse (a value
// above kMaxKvValue) has to be refused when writing, not discovered when restoring.
TEST_F(ManifestTest, MetadataTheReaderRefusesIsRefusedByTheWriter) {
  VolumeBackupMeta meta = BasicMeta(0);
  meta.metadata = std::string(kMaxKvValue + 1, 'm');
  auto w = ManifestWriter::Create(Tmp("huge"));
  ASSERT_TRUE(w.ok());
  absl::Status finished = (*w)->Finish(meta, Final("huge"));
  if (!finished.ok()) {
    EXPECT_EQ(finished.code(), absl::StatusCode::kInvalidArgument) << finished;
    EXPECT_FALSE(FileExists(Final("huge")));
    return;
  }
  auto r = ManifestReader::Open(Final("huge"));
  ASSERT_TRUE(r.ok()) << "BUG: ManifestWriter::Finish wrote a manifest that ManifestReader::Open "
                         "refuses: "
                      << r.status();
  EXPECT_EQ((*r)->meta().metadata, meta.metadata);
}

}  // namespace
}  // namespace chunkferry::engine
