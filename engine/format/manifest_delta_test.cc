// Manifest deltas: a delta rebuilds exactly the manifest it was made from when merged with its
// base (rewrites, holes that change size, a volume that grows or shrinks), stays small when little
// changed, and every hostile delta (bad magic, version, checksum, ops past the base, zero or
// overflowing counts, truncation, trailing bytes, another base) is refused.
#include "engine/format/manifest_delta.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "codec/chunk_id.h"
#include "engine/format/byte_io.h"
#include "engine/format/kv_block.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;

// Entries from a vector.
class VectorSource final : public ManifestSource {
 public:
  VectorSource(VolumeBackupMeta meta, std::vector<ManifestEntry> entries)
      : meta_(std::move(meta)), entries_(std::move(entries)) {}
  const VolumeBackupMeta& meta() const override { return meta_; }
  absl::StatusOr<size_t> Next(std::vector<ManifestEntry>* out, size_t max) override {
    out->clear();
    while (out->size() < max && pos_ < entries_.size()) out->push_back(entries_[pos_++]);
    return out->size();
  }
  void Rewind() override { pos_ = 0; }

 private:
  VolumeBackupMeta meta_;
  std::vector<ManifestEntry> entries_;
  size_t pos_ = 0;
};

codec::ChunkId IdOf(uint64_t n) {
  uint8_t b[codec::kChunkIdSize] = {};
  StoreU64(b, n * 0x9e3779b97f4a7c15ull + 1);
  StoreU64(b + 8, n);
  return codec::ChunkId::DecodeFrom(b);
}

ManifestEntry Data(uint64_t n, uint64_t length = 4096) {
  ManifestEntry e;
  e.length = length;
  e.id = IdOf(n);
  return e;
}
ManifestEntry Zero(uint64_t length) {
  ManifestEntry e;
  e.zero = true;
  e.length = length;
  return e;
}

VolumeBackupMeta MetaFor(const std::vector<ManifestEntry>& entries) {
  VolumeBackupMeta m = testing::NewMeta(NewUuid());
  m.chunker = "fixed:4k";
  m.install_path = "/x";
  for (const auto& e : entries) m.size += e.length;
  return m;
}

bool Same(const std::vector<ManifestEntry>& a, const std::vector<ManifestEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameEntry(a[i], b[i])) return false;
  }
  return true;
}

class ManifestDeltaTest : public ::testing::Test {
 protected:
  std::string Encode(const VolumeBackupMeta& meta, const std::vector<ManifestEntry>& entries,
                     const std::vector<ManifestEntry>& base, DeltaStats* stats = nullptr) {
    VectorSource e(meta, entries), b(MetaFor(base), base);
    std::string out;
    absl::Status st = EncodeManifestDelta(
        meta, e, b,
        [&](absl::string_view bytes) {
          out.append(bytes.data(), bytes.size());
          return absl::OkStatus();
        },
        stats);
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }

  // Decodes `delta` against `base`; the entries, or the first error.
  absl::StatusOr<std::vector<ManifestEntry>> Decode(const std::string& delta,
                                                    const std::vector<ManifestEntry>& base,
                                                    VolumeBackupMeta* meta = nullptr) {
    const std::string path = tmp_.Sub(absl::StrCat("delta", ++n_));
    testing::WriteFile(path, AsBytes(delta));
    VectorSource b(MetaFor(base), base);
    auto src = ManifestDeltaSource::Open(path, &b, "under test");
    if (!src.ok()) return src.status();
    if (meta != nullptr) *meta = (*src)->meta();
    std::vector<ManifestEntry> all, batch;
    // Twice: a second pass after Rewind gives the same.
    for (int pass = 0; pass < 2; ++pass) {
      (*src)->Rewind();
      all.clear();
      for (;;) {
        auto n = (*src)->Next(&batch, 100);
        if (!n.ok()) return n.status();
        if (*n == 0) break;
        all.insert(all.end(), batch.begin(), batch.end());
      }
    }
    return all;
  }

  TempDir tmp_;
  int n_ = 0;
};

std::vector<ManifestEntry> BaseEntries(size_t n) {
  std::vector<ManifestEntry> v;
  for (size_t i = 0; i < n; ++i) {
    if (i % 97 == 5) {
      v.push_back(Zero(4096 * (1 + i % 3)));
    } else {
      v.push_back(Data(i));
    }
  }
  return v;
}

TEST_F(ManifestDeltaTest, RebuildsTheManifestAndStaysSmall) {
  const auto base = BaseEntries(20000);
  auto next = base;
  size_t changed = 0;
  for (size_t i = 3; i < next.size(); i += 100) {
    if (next[i].zero) continue;
    next[i] = Data(1000000 + i);
    ++changed;
  }
  const VolumeBackupMeta meta = MetaFor(next);
  DeltaStats stats;
  const std::string delta = Encode(meta, next, base, &stats);
  EXPECT_EQ(stats.entries, next.size());
  EXPECT_EQ(stats.literal, changed);
  EXPECT_EQ(stats.copied, next.size() - changed);
  EXPECT_EQ(stats.bytes, delta.size());
  // About 18 bytes per changed entry and a few per unchanged run, plus the meta.
  EXPECT_LT(delta.size(), changed * 24 + 1024) << delta.size();
  VolumeBackupMeta got_meta;
  auto got = Decode(delta, base, &got_meta);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(Same(*got, next));
  EXPECT_EQ(got_meta.uuid, meta.uuid);
  EXPECT_EQ(got_meta.size, meta.size);
  EXPECT_EQ(got_meta.volume_uuid, meta.volume_uuid);
}

TEST_F(ManifestDeltaTest, AlignsByByteOffset) {
  // Holes that grow and shrink, an entry split in two, a volume that grows: the rest of the base
  // stays aligned by offset and is copied.
  std::vector<ManifestEntry> base = {Data(1),       Zero(8192), Data(2),    Data(3),
                                     Data(4, 8192), Data(5),    Zero(4096), Data(6)};
  std::vector<ManifestEntry> next = {Data(1),  Zero(4096),    Data(9),     Data(2),  Data(3),
                                     Data(10), Data(11),      Data(5),     Data(12), Data(6),
                                     Data(7),  Zero(1 << 20), Data(8, 100)};
  DeltaStats stats;
  const std::string delta = Encode(MetaFor(next), next, base, &stats);
  EXPECT_EQ(stats.copied, 5u);  // 1, 2, 3, 5, 6
  auto got = Decode(delta, base);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(Same(*got, next));
  // A volume that shrank, and an empty base.
  const std::vector<ManifestEntry> small = {Data(1), Zero(4096)};
  auto shrunk = Decode(Encode(MetaFor(small), small, base), base);
  ASSERT_TRUE(shrunk.ok()) << shrunk.status();
  EXPECT_TRUE(Same(*shrunk, small));
  auto fresh = Decode(Encode(MetaFor(next), next, {}), {});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(Same(*fresh, next));
}

// Builds delta bytes by hand: header, meta, `ops` as given, END for `entries`, checksum.
class RawDelta {
 public:
  explicit RawDelta(const VolumeBackupMeta& meta, uint16_t version = kManifestDeltaVersion) {
    bytes_.append("CFMD", 4);
    PutU16(&bytes_, version);
    PutU16(&bytes_, 0);
    EncodeKv(MetaToKv(meta), &bytes_);
  }
  RawDelta& Op(uint8_t op) {
    bytes_.push_back(static_cast<char>(op));
    return *this;
  }
  RawDelta& Varint(uint64_t v) {
    while (v >= 0x80) {
      bytes_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    bytes_.push_back(static_cast<char>(v));
    return *this;
  }
  RawDelta& Raw(const std::string& s) {
    bytes_ += s;
    return *this;
  }
  RawDelta& Id(uint64_t n) {
    uint8_t b[codec::kChunkIdSize];
    IdOf(n).EncodeTo(b);
    bytes_.append(reinterpret_cast<const char*>(b), sizeof(b));
    return *this;
  }
  RawDelta& End(uint64_t count, uint64_t hash) {
    Op(0);
    PutU64(&bytes_, count);
    PutU64(&bytes_, hash);
    return *this;
  }
  std::string Finish() const {
    std::string out = bytes_;
    PutU64(&out, codec::Checksum64(AsBytes(out)));
    return out;
  }

 private:
  std::string bytes_;
};

TEST_F(ManifestDeltaTest, HostileDeltasAreRefused) {
  const std::vector<ManifestEntry> base = {Data(1), Data(2), Zero(4096), Data(3)};
  const std::vector<ManifestEntry> next = {Data(1), Data(9), Zero(4096), Data(3)};
  const VolumeBackupMeta meta = MetaFor(next);
  const std::string good = Encode(meta, next, base);
  ASSERT_TRUE(Decode(good, base).ok());
  auto code_of = [&](const std::string& delta) { return Decode(delta, base).status().code(); };
  auto message_of = [&](const std::string& delta) {
    return std::string(Decode(delta, base).status().message());
  };

  // Damage anywhere: the checksum.
  for (size_t at : {size_t{0}, size_t{5}, good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x20;
    EXPECT_EQ(code_of(bad), absl::StatusCode::kDataLoss) << at;
  }
  EXPECT_EQ(code_of(good.substr(0, 10)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of(""), absl::StatusCode::kInvalidArgument);
  // Bad magic and another version (with a valid checksum).
  {
    std::string body = good.substr(0, good.size() - 8);
    body[0] = 'X';
    PutU64(&body, codec::Checksum64(AsBytes(body)));
    EXPECT_TRUE(absl::StrContains(message_of(body), "bad magic"));
  }
  EXPECT_EQ(code_of(RawDelta(meta, 2).End(0, 0).Finish()), absl::StatusCode::kFailedPrecondition);
  // The real entries, as literals (the hash below is the real one, from `good`).
  const uint64_t hash = LoadU64(reinterpret_cast<const uint8_t*>(good.data()) + good.size() - 16);
  auto literals = [&](RawDelta& d) -> RawDelta& {
    return d.Op(2)
        .Varint(4)
        .Varint(4096 << 1)
        .Id(1)
        .Varint(4096 << 1)
        .Id(9)
        .Varint((4096 << 1) | 1)
        .Varint(4096 << 1)
        .Id(3);
  };
  {
    RawDelta d(meta);
    EXPECT_TRUE(Decode(literals(d).End(4, hash).Finish(), base).ok());
  }
  // COPY past the end of the base, and COPY where no base entry starts.
  EXPECT_TRUE(absl::StrContains(message_of(RawDelta(meta).Op(1).Varint(5).End(5, 0).Finish()),
                                "the base has no entry starting there"));
  EXPECT_TRUE(absl::StrContains(
      message_of(
          RawDelta(meta).Op(2).Varint(1).Varint(100 << 1).Id(7).Op(1).Varint(1).End(2, 0).Finish()),
      "no entry starting there"));
  // Huge counts: they run out of base or bytes; zero counts; a varint over 64 bits.
  EXPECT_EQ(code_of(RawDelta(meta).Op(1).Varint(~uint64_t{0}).End(0, 0).Finish()),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(
      message_of(RawDelta(meta).Op(2).Varint(~uint64_t{0}).Varint(4096 << 1).Id(1).Finish()),
      "malformed"));
  EXPECT_TRUE(absl::StrContains(message_of(RawDelta(meta).Op(1).Varint(0).End(0, 0).Finish()),
                                "COPY of 0 entries"));
  EXPECT_TRUE(absl::StrContains(message_of(RawDelta(meta).Op(2).Varint(0).End(0, 0).Finish()),
                                "LIT of 0 entries"));
  EXPECT_TRUE(absl::StrContains(
      message_of(RawDelta(meta).Op(1).Raw(std::string(10, '\xff')).Raw("\x01").End(0, 0).Finish()),
      "overflows 64 bits"));
  // Entries of 0 bytes or longer than a chunk can be.
  EXPECT_TRUE(absl::StrContains(
      message_of(RawDelta(meta).Op(2).Varint(1).Varint(0).Id(1).End(1, 0).Finish()), "0 bytes"));
  EXPECT_TRUE(absl::StrContains(message_of(RawDelta(meta)
                                               .Op(2)
                                               .Varint(1)
                                               .Varint(uint64_t{kMaxManifestChunk + 1} << 1)
                                               .Id(1)
                                               .End(1, 0)
                                               .Finish()),
                                "literal chunk of"));
  // An unknown op, no END, bytes after END.
  EXPECT_TRUE(
      absl::StrContains(message_of(RawDelta(meta).Op(7).End(0, 0).Finish()), "unknown op 7"));
  {
    RawDelta d(meta);
    EXPECT_TRUE(absl::StrContains(message_of(literals(d).Finish()), "without END"));
  }
  {
    RawDelta d(meta);
    EXPECT_TRUE(absl::StrContains(message_of(literals(d).End(4, hash).Raw("x").Finish()),
                                  "1 bytes after END"));
  }
  // END that does not match what was rebuilt (another base than the sender's).
  {
    RawDelta d(meta);
    EXPECT_EQ(code_of(literals(d).End(4, hash ^ 1).Finish()), absl::StatusCode::kDataLoss);
  }
  {
    RawDelta d(meta);
    EXPECT_EQ(code_of(literals(d).End(3, hash).Finish()), absl::StatusCode::kDataLoss);
  }
  const std::vector<ManifestEntry> other = {Data(1), Data(2), Zero(4096), Data(4)};
  EXPECT_EQ(Decode(good, other).status().code(), absl::StatusCode::kDataLoss);
  // A malformed meta block.
  {
    std::string body = "CFMD";
    PutU16(&body, kManifestDeltaVersion);
    PutU16(&body, 0);
    PutU32(&body, 1000000);
    body += std::string(40, '\0');
    PutU64(&body, codec::Checksum64(AsBytes(body)));
    EXPECT_EQ(code_of(body), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace chunkferry::engine
