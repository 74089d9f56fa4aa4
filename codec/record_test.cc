#include "codec/record.h"

#include <xxhash.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "codec/internal/test_data.h"
#include "gtest/gtest.h"

namespace chunkferry::codec {
namespace {

using Spans = std::vector<absl::Span<const uint8_t>>;

bool Contains(const absl::Status& status, const std::string& fragment) {
  return std::string(status.message()).find(fragment) != std::string::npos;
}

// A record built from `data` cut into chunks of the given lengths.
struct Built {
  std::vector<uint8_t> data;
  std::vector<ChunkRef> refs;
  Spans chunks;
  std::vector<uint8_t> record;  // exactly the encoded record
};

Built Build(std::vector<uint8_t> data, const std::vector<size_t>& lengths, Compressor* compressor,
            const ChunkHasher& hasher = ChunkHasher()) {
  Built b;
  b.data = std::move(data);
  size_t offset = 0;
  for (const size_t length : lengths) {
    const absl::Span<const uint8_t> chunk = absl::MakeConstSpan(b.data).subspan(offset, length);
    b.chunks.push_back(chunk);
    b.refs.push_back({hasher.Hash(chunk), static_cast<uint32_t>(length)});
    offset += length;
  }
  EXPECT_EQ(offset, b.data.size());
  b.record.resize(MaxRecordSize(lengths.size(), b.data.size()));
  absl::StatusOr<size_t> size =
      EncodeRecord(b.refs, b.chunks, compressor, absl::MakeSpan(b.record));
  EXPECT_TRUE(size.ok()) << size.status();
  b.record.resize(size.ok() ? *size : 0);
  return b;
}

std::vector<size_t> Even(size_t count, size_t length) { return std::vector<size_t>(count, length); }

// Checks that `b.record` parses, verifies and decodes back to b.data with b.refs.
void ExpectRoundTrip(const Built& b, const ChunkHasher& hasher = ChunkHasher()) {
  // Parse from a buffer with trailing bytes: the view must end at the record's own size.
  std::vector<uint8_t> bytes = b.record;
  bytes.resize(bytes.size() + 100, 0xee);
  absl::StatusOr<size_t> peeked = PeekRecordSize(bytes);
  ASSERT_TRUE(peeked.ok()) << peeked.status();
  EXPECT_EQ(*peeked, b.record.size());
  absl::StatusOr<RecordView> view = ParseRecord(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->size, b.record.size());
  EXPECT_EQ(view->chunk_count, b.refs.size());
  EXPECT_EQ(view->raw_length, b.data.size());
  EXPECT_EQ(view->stored_length, view->payload.size());
  EXPECT_EQ(view->size, RecordHeaderSize(b.refs.size()) + view->stored_length);
  EXPECT_LE(view->size, MaxRecordSize(b.refs.size(), b.data.size()));
  uint32_t offset = 0;
  for (size_t i = 0; i < b.refs.size(); ++i) {
    EXPECT_EQ(view->chunk(i).id, b.refs[i].id) << i;
    EXPECT_EQ(view->chunk(i).raw_length, b.refs[i].raw_length) << i;
    EXPECT_EQ(view->raw_offset(i), offset) << i;
    offset += b.refs[i].raw_length;
  }
  EXPECT_TRUE(CheckPayload(*view).ok());
  Decompressor decompressor;
  std::vector<uint8_t> raw(view->raw_length);
  const absl::Status status = DecodeRecord(*view, decompressor, &hasher, absl::MakeSpan(raw));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(raw, b.data);
  std::fill(raw.begin(), raw.end(), 0xaa);
  ASSERT_TRUE(DecodeRecord(*view, decompressor, nullptr, absl::MakeSpan(raw)).ok());
  EXPECT_EQ(raw, b.data);
}

Codec CodecOf(const std::vector<uint8_t>& record) { return static_cast<Codec>(record[5]); }

// Recomputes the header checksum after a test edits the header or table on purpose, so that
// the bound checks behind the checksum are reached.
void Resign(std::vector<uint8_t>& record) {
  const size_t count = record[6] | (record[7] << 8);
  std::vector<uint8_t> covered(record.begin(), record.begin() + 24);
  const size_t table_end = std::min(record.size(), RecordHeaderSize(count));
  covered.insert(covered.end(), record.begin() + 32, record.begin() + table_end);
  const uint64_t checksum = XXH3_64bits(covered.data(), covered.size());
  std::memcpy(record.data() + 24, &checksum, 8);
}

void ResignPayload(std::vector<uint8_t>& record) {
  const size_t count = record[6] | (record[7] << 8);
  const size_t header = RecordHeaderSize(count);
  const uint64_t checksum = XXH3_64bits(record.data() + header, record.size() - header);
  std::memcpy(record.data() + 16, &checksum, 8);
  Resign(record);
}

template <typename T>
void Put(std::vector<uint8_t>& record, size_t offset, T value) {
  std::memcpy(record.data() + offset, &value, sizeof(value));
}

TEST(RecordTest, RoundTripsCompressibleDataAsZstd) {
  Compressor compressor(1);
  const Built b = Build(internal::TextLikeBytes(16 * 4096, 1), Even(16, 4096), &compressor);
  EXPECT_EQ(CodecOf(b.record), Codec::kZstd);
  EXPECT_LT(b.record.size(), b.data.size() / 2);
  ExpectRoundTrip(b);
}

TEST(RecordTest, RoundTripsBinaryLikeData) {
  Compressor compressor(1);
  const Built b = Build(internal::BinaryLikeBytes(16 * 4096, 2), Even(16, 4096), &compressor);
  EXPECT_EQ(CodecOf(b.record), Codec::kZstd);
  ExpectRoundTrip(b);
}

TEST(RecordTest, IncompressibleDataFallsBackToRaw) {
  Compressor compressor(1);
  const Built b = Build(internal::RandomBytes(16 * 4096, 3), Even(16, 4096), &compressor);
  EXPECT_EQ(CodecOf(b.record), Codec::kRaw);
  EXPECT_EQ(b.record.size(), MaxRecordSize(16, 16 * 4096));
  ExpectRoundTrip(b);
  // And the compressor is fine afterwards.
  const Built text = Build(internal::TextLikeBytes(8192, 3), Even(2, 4096), &compressor);
  EXPECT_EQ(CodecOf(text.record), Codec::kZstd);
  ExpectRoundTrip(text);
}

TEST(RecordTest, NoCompressorStoresRaw) {
  const Built b = Build(internal::TextLikeBytes(10000, 4), {1, 4999, 5000}, nullptr);
  EXPECT_EQ(CodecOf(b.record), Codec::kRaw);
  ExpectRoundTrip(b);
}

TEST(RecordTest, RoundTripsZeroData) {
  Compressor compressor(1);
  const Built b = Build(std::vector<uint8_t>(64 * 1024, 0), Even(16, 4096), &compressor);
  EXPECT_EQ(CodecOf(b.record), Codec::kZstd);
  EXPECT_LT(b.record.size(), RecordHeaderSize(16) + 100);
  ExpectRoundTrip(b);
}

TEST(RecordTest, RoundTripsTinyAndManyChunks) {
  Compressor compressor(1);
  ExpectRoundTrip(Build({42}, {1}, &compressor));
  ExpectRoundTrip(Build({1, 2}, {1, 1}, &compressor));
  // The maximum chunk count, of uneven sizes.
  internal::SplitMix64 rng(8);
  std::vector<size_t> lengths;
  size_t total = 0;
  for (uint32_t i = 0; i < kMaxRecordChunks; ++i) {
    lengths.push_back(1 + rng.Below(300));
    total += lengths.back();
  }
  const Built many = Build(internal::TextLikeBytes(total, 9), lengths, &compressor);
  EXPECT_EQ(CodecOf(many.record), Codec::kZstd);
  ExpectRoundTrip(many);
  ExpectRoundTrip(Build(internal::RandomBytes(total, 9), lengths, &compressor));
}

TEST(RecordTest, RoundTripsTheLargestRecord) {
  Compressor compressor(1);
  ExpectRoundTrip(Build(internal::BinaryLikeBytes(kMaxRecordRawLength, 10),
                        Even(4, kMaxRecordRawLength / 4), &compressor));
}

TEST(RecordTest, RoundTripsChunksThatAreNotAdjacent) {
  Compressor compressor(1);
  const std::vector<uint8_t> a = internal::TextLikeBytes(5000, 1);
  const std::vector<uint8_t> b = internal::TextLikeBytes(7000, 2);
  const Spans chunks = {b, a};  // in reverse memory order
  const ChunkHasher hasher;
  const std::vector<ChunkRef> refs = {{hasher.Hash(b), 7000}, {hasher.Hash(a), 5000}};
  std::vector<uint8_t> record(MaxRecordSize(2, 12000));
  absl::StatusOr<size_t> size = EncodeRecord(refs, chunks, &compressor, absl::MakeSpan(record));
  ASSERT_TRUE(size.ok()) << size.status();
  absl::StatusOr<RecordView> view = ParseRecord(absl::MakeConstSpan(record).first(*size));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->codec, Codec::kZstd);
  Decompressor decompressor;
  std::vector<uint8_t> raw(12000);
  ASSERT_TRUE(DecodeRecord(*view, decompressor, &hasher, absl::MakeSpan(raw)).ok());
  EXPECT_EQ(std::vector<uint8_t>(raw.begin(), raw.begin() + 7000), b);
  EXPECT_EQ(std::vector<uint8_t>(raw.begin() + 7000, raw.end()), a);
}

// The layout of record.h, byte for byte.
TEST(RecordTest, LayoutMatchesTheFormat) {
  const Built b = Build({'a', 'b', 'c', 'd', 'e'}, {2, 3}, nullptr);
  const std::vector<uint8_t>& r = b.record;
  ASSERT_EQ(r.size(), 32u + 2 * 20 + 5);
  EXPECT_EQ(std::string(r.begin(), r.begin() + 4), "CFRC");
  EXPECT_EQ(r[4], 1);  // version
  EXPECT_EQ(r[5], 0);  // raw
  EXPECT_EQ(r[6], 2);  // chunk_count, little-endian
  EXPECT_EQ(r[7], 0);
  EXPECT_EQ(std::vector<uint8_t>(r.begin() + 8, r.begin() + 12),
            (std::vector<uint8_t>{5, 0, 0, 0}));
  EXPECT_EQ(std::vector<uint8_t>(r.begin() + 12, r.begin() + 16),
            (std::vector<uint8_t>{5, 0, 0, 0}));
  uint64_t payload_checksum;
  std::memcpy(&payload_checksum, r.data() + 16, 8);
  EXPECT_EQ(payload_checksum, XXH3_64bits("abcde", 5));
  uint8_t id0[16];
  b.refs[0].id.EncodeTo(id0);
  EXPECT_EQ(std::memcmp(r.data() + 32, id0, 16), 0);
  EXPECT_EQ(std::vector<uint8_t>(r.begin() + 48, r.begin() + 52),
            (std::vector<uint8_t>{2, 0, 0, 0}));
  EXPECT_EQ(std::vector<uint8_t>(r.begin() + 68, r.begin() + 72),
            (std::vector<uint8_t>{3, 0, 0, 0}));
  EXPECT_EQ(std::string(r.begin() + 72, r.end()), "abcde");
  std::vector<uint8_t> resigned = r;
  Resign(resigned);
  EXPECT_EQ(resigned, r) << "header checksum is XXH3-64 of bytes [0,24) then the table";
}

TEST(EncodeRecordTest, RejectsBadArguments) {
  Compressor compressor(1);
  const std::vector<uint8_t> data(100, 1);
  const absl::Span<const uint8_t> chunk(data);
  const ChunkRef ref{ChunkHasher().Hash(chunk), 100};
  std::vector<uint8_t> out(MaxRecordSize(2, 200));
  auto encode = [&](const std::vector<ChunkRef>& refs, const Spans& chunks, size_t out_size) {
    return EncodeRecord(refs, chunks, &compressor, absl::MakeSpan(out).first(out_size)).status();
  };
  absl::Status status = encode({ref}, {chunk, chunk}, out.size());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "1 refs but 2 chunks")) << status;
  status = encode({}, {}, out.size());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "chunk count 0")) << status;
  status = encode({ChunkRef{ref.id, 99}}, {chunk}, out.size());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "chunk 0 has 100 bytes but its ref says 99")) << status;
  status = encode({ChunkRef{ref.id, 0}}, {chunk.first(0)}, out.size());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "chunk 0 is empty")) << status;
  status = encode({ref}, {chunk}, MaxRecordSize(1, 100) - 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "needs MaxRecordSize")) << status;
  EXPECT_TRUE(encode({ref}, {chunk}, MaxRecordSize(1, 100)).ok());

  const std::vector<ChunkRef> too_many_refs(kMaxRecordChunks + 1, ChunkRef{ref.id, 1});
  const Spans too_many_chunks(kMaxRecordChunks + 1, chunk.first(1));
  status = EncodeRecord(too_many_refs, too_many_chunks, &compressor, absl::MakeSpan(out)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "chunk count 1025")) << status;

  const std::vector<uint8_t> big(kMaxRecordRawLength / 2 + 1, 0);
  status = EncodeRecord({ChunkRef{ref.id, static_cast<uint32_t>(big.size())},
                         ChunkRef{ref.id, static_cast<uint32_t>(big.size())}},
                        {big, big}, &compressor, absl::MakeSpan(out))
               .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "raw length exceeds 16777216")) << status;
}

class ParseRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    zstd_ = Build(internal::TextLikeBytes(3000, 5), {1000, 1500, 500}, &compressor_).record;
    raw_ = Build(internal::RandomBytes(3000, 5), {1000, 1500, 500}, &compressor_).record;
    ASSERT_EQ(CodecOf(zstd_), Codec::kZstd);
    ASSERT_EQ(CodecOf(raw_), Codec::kRaw);
  }
  static absl::Status ParseStatus(const std::vector<uint8_t>& bytes) {
    return ParseRecord(bytes).status();
  }
  Compressor compressor_{1};
  std::vector<uint8_t> zstd_;
  std::vector<uint8_t> raw_;
};

TEST_F(ParseRecordTest, EveryTruncationIsOutOfRange) {
  for (const std::vector<uint8_t>* record : {&zstd_, &raw_}) {
    for (size_t size = 0; size < record->size(); ++size) {
      const absl::Span<const uint8_t> prefix = absl::MakeConstSpan(*record).first(size);
      const absl::Status status = ParseRecord(prefix).status();
      ASSERT_EQ(status.code(), absl::StatusCode::kOutOfRange) << size << " " << status;
      absl::StatusOr<size_t> peeked = PeekRecordSize(prefix);
      if (size < kRecordFixedHeaderSize) {
        ASSERT_EQ(peeked.status().code(), absl::StatusCode::kOutOfRange) << size;
      } else {
        ASSERT_TRUE(peeked.ok()) << size << " " << peeked.status();
        ASSERT_EQ(*peeked, record->size());
      }
    }
  }
}

// Any single damaged byte in the header or table is refused, never a crash. When more bytes
// follow the record (as in a pack file), damage reads as DataLoss, except a version byte that
// becomes a larger number, which reads as a newer version (FailedPrecondition).
TEST_F(ParseRecordTest, EveryHeaderOrTableFlipIsRefused) {
  for (const std::vector<uint8_t>* record : {&zstd_, &raw_}) {
    const size_t header = RecordHeaderSize(3);
    for (size_t pos = 0; pos < header; ++pos) {
      for (const uint8_t mask : {0x01, 0x02, 0x10, 0x80, 0xff}) {
        std::vector<uint8_t> damaged = *record;
        damaged[pos] ^= mask;
        absl::Status exact = ParseStatus(damaged);
        damaged.resize(damaged.size() + (64 << 10), 0);
        absl::Status padded = ParseStatus(damaged);
        const std::string where = absl::StrCat("pos ", pos, " mask ", mask, ": ");
        ASSERT_FALSE(exact.ok()) << where;
        ASSERT_FALSE(padded.ok()) << where;
        ASSERT_FALSE(exact.message().empty()) << where;
        const bool newer_version = pos == 4 && (1 ^ mask) > 1;
        const absl::StatusCode want =
            newer_version ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kDataLoss;
        EXPECT_EQ(padded.code(), want) << where << padded;
        // Exactly sized: a damaged length may also look like a record cut short.
        EXPECT_TRUE(exact.code() == want || exact.code() == absl::StatusCode::kOutOfRange)
            << where << exact;
        if (!newer_version) {
          absl::StatusOr<size_t> peeked = PeekRecordSize(damaged);
          EXPECT_TRUE(!peeked.ok() || pos >= 5)
              << where << "a damaged magic or version passed Peek";
        }
      }
    }
  }
}

TEST_F(ParseRecordTest, PayloadFlipsFailTheChecksum) {
  for (const std::vector<uint8_t>* record : {&zstd_, &raw_}) {
    const size_t header = RecordHeaderSize(3);
    for (size_t pos = header; pos < record->size(); ++pos) {
      std::vector<uint8_t> damaged = *record;
      damaged[pos] ^= 0x04;
      absl::StatusOr<RecordView> view = ParseRecord(damaged);
      ASSERT_TRUE(view.ok()) << "ParseRecord does not read the payload: " << view.status();
      const absl::Status check = CheckPayload(*view);
      ASSERT_EQ(check.code(), absl::StatusCode::kDataLoss) << pos;
      EXPECT_TRUE(Contains(check, "payload checksum mismatch")) << check;
      Decompressor decompressor;
      std::vector<uint8_t> raw(view->raw_length);
      const ChunkHasher hasher;
      EXPECT_EQ(DecodeRecord(*view, decompressor, &hasher, absl::MakeSpan(raw)).code(),
                absl::StatusCode::kDataLoss);
      EXPECT_EQ(DecodeRecord(*view, decompressor, nullptr, absl::MakeSpan(raw)).code(),
                absl::StatusCode::kDataLoss);
    }
  }
}

// Each bound check, reached with a valid header checksum (as a buggy or hostile writer would).
TEST_F(ParseRecordTest, BoundChecksBehindAValidChecksum) {
  struct Case {
    std::string name;
    std::vector<uint8_t> record;
    absl::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, const std::vector<uint8_t>& base, auto edit,
                 absl::StatusCode code, std::string says) {
    std::vector<uint8_t> r = base;
    edit(r);
    Resign(r);
    cases.push_back({std::move(name), std::move(r), code, std::move(says)});
  };
  add(
      "magic", raw_, [](auto& r) { r[3] = 'X'; }, absl::StatusCode::kDataLoss, "bad record magic");
  add(
      "version 0", raw_, [](auto& r) { r[4] = 0; }, absl::StatusCode::kDataLoss,
      "record version 0 is invalid");
  add(
      "version 2", raw_, [](auto& r) { r[4] = 2; }, absl::StatusCode::kFailedPrecondition,
      "record version 2 is newer than this build (1)");
  add(
      "version 255", zstd_, [](auto& r) { r[4] = 255; }, absl::StatusCode::kFailedPrecondition,
      "record version 255 is newer than this build (1)");
  add(
      "codec 2", raw_, [](auto& r) { r[5] = 2; }, absl::StatusCode::kDataLoss,
      "unknown record codec 2 (known: 0 raw, 1 zstd)");
  add(
      "count 0", raw_, [](auto& r) { Put<uint16_t>(r, 6, 0); }, absl::StatusCode::kDataLoss,
      "record chunk count 0 is out of range 1..1024");
  add(
      "count 1025", raw_, [](auto& r) { Put<uint16_t>(r, 6, 1025); }, absl::StatusCode::kDataLoss,
      "record chunk count 1025 is out of range");
  add(
      "count 65535", raw_, [](auto& r) { Put<uint16_t>(r, 6, 65535); }, absl::StatusCode::kDataLoss,
      "record chunk count 65535 is out of range");
  add(
      "raw too long", raw_, [](auto& r) { Put<uint32_t>(r, 8, kMaxRecordRawLength + 1); },
      absl::StatusCode::kDataLoss, "record raw length 16777217 is out of range");
  add(
      "raw shorter than count", raw_, [](auto& r) { Put<uint32_t>(r, 8, 2); },
      absl::StatusCode::kDataLoss, "record raw length 2 is out of range 3..");
  add(
      "raw stored != raw", raw_, [](auto& r) { Put<uint32_t>(r, 12, 2999); },
      absl::StatusCode::kDataLoss, "raw record stores 2999 bytes but its raw length is 3000");
  add(
      "zstd stored > bound", zstd_,
      [](auto& r) { Put<uint32_t>(r, 12, static_cast<uint32_t>(CompressBound(3000) + 1)); },
      absl::StatusCode::kDataLoss, "more than zstd's bound");
  add(
      "zstd stored huge", zstd_, [](auto& r) { Put<uint32_t>(r, 12, 0xffffffff); },
      absl::StatusCode::kDataLoss, "zstd record stores 4294967295 bytes");
  add(
      "table sum", raw_, [](auto& r) { Put<uint32_t>(r, 32 + 20 + 16, 1499); },
      absl::StatusCode::kDataLoss, "record chunk lengths sum to 2999 but its raw length is 3000");
  add(
      "table sum overflow", raw_, [](auto& r) { Put<uint32_t>(r, 32 + 16, 0xffffffff); },
      absl::StatusCode::kDataLoss, "sum to 4294969295");
  add(
      "empty chunk", raw_,
      [](auto& r) {
        Put<uint32_t>(r, 32 + 16, 0);
        Put<uint32_t>(r, 32 + 20 + 16, 2500);
      },
      absl::StatusCode::kDataLoss, "record chunk 0 is empty");
  for (const Case& c : cases) {
    std::vector<uint8_t> padded = c.record;
    padded.resize(padded.size() + 100000);
    const absl::Status status = ParseStatus(padded);
    EXPECT_EQ(status.code(), c.code) << c.name << ": " << status;
    EXPECT_TRUE(Contains(status, c.says)) << c.name << ": " << status;
  }
  // Version, codec and bounds are checked by PeekRecordSize too, before any checksum.
  std::vector<uint8_t> newer = raw_;
  newer[4] = 2;
  EXPECT_EQ(PeekRecordSize(newer).status().code(), absl::StatusCode::kFailedPrecondition);
  std::vector<uint8_t> bad_codec = raw_;
  bad_codec[5] = 9;
  EXPECT_EQ(PeekRecordSize(bad_codec).status().code(), absl::StatusCode::kDataLoss);
}

// Random multi-byte damage and truncation: never a crash (the ASan build runs this too), and
// whatever passes both checksums decodes to the original bytes.
TEST_F(ParseRecordTest, RandomDamageIsCaughtOrHarmless) {
  internal::SplitMix64 rng(77);
  Decompressor decompressor;
  const ChunkHasher hasher;
  int accepted = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    const std::vector<uint8_t>& original = iteration % 2 == 0 ? zstd_ : raw_;
    std::vector<uint8_t> damaged = original;
    const int flips = 1 + static_cast<int>(rng.Below(4));
    for (int f = 0; f < flips; ++f) {
      damaged[rng.Below(damaged.size())] ^= static_cast<uint8_t>(1 + rng.Below(255));
    }
    if (rng.Below(4) == 0) damaged.resize(rng.Below(damaged.size() + 1));
    absl::StatusOr<RecordView> view = ParseRecord(damaged);
    if (!view.ok()) {
      const absl::StatusCode code = view.status().code();
      ASSERT_TRUE(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kOutOfRange ||
                  code == absl::StatusCode::kFailedPrecondition)
          << view.status();
      continue;
    }
    std::vector<uint8_t> raw(view->raw_length);
    const absl::Status status = DecodeRecord(*view, decompressor, &hasher, absl::MakeSpan(raw));
    if (status.ok()) {
      ++accepted;
      absl::StatusOr<RecordView> clean = ParseRecord(original);
      ASSERT_TRUE(clean.ok());
      std::vector<uint8_t> want(clean->raw_length);
      ASSERT_TRUE(DecodeRecord(*clean, decompressor, nullptr, absl::MakeSpan(want)).ok());
      ASSERT_EQ(raw, want) << "damage passed every check and changed the data";
    } else {
      ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    }
  }
  // Flips that cancel out (x ^ a ^ a) or only touch ignored bytes are rare but possible.
  EXPECT_LT(accepted, 200);
}

TEST_F(ParseRecordTest, HeaderChecksumMismatchIsDataLoss) {
  std::vector<uint8_t> r = raw_;
  r[24] ^= 1;
  const absl::Status status = ParseStatus(r);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status, "record header checksum mismatch")) << status;
}

TEST(DecodeRecordTest, FullVerificationNamesTheChunkThatDoesNotMatch) {
  Compressor compressor(1);
  Built b = Build(internal::TextLikeBytes(16 * 4096, 11), Even(16, 4096), &compressor);
  // A writer that named chunk 5 wrongly: the record is self-consistent, only the id is wrong.
  const ChunkId wrong{0x1111, 0x2222};
  const ChunkId right = b.refs[5].id;
  b.refs[5].id = wrong;
  std::vector<uint8_t> record(MaxRecordSize(16, b.data.size()));
  absl::StatusOr<size_t> size = EncodeRecord(b.refs, b.chunks, &compressor, absl::MakeSpan(record));
  ASSERT_TRUE(size.ok());
  record.resize(*size);
  absl::StatusOr<RecordView> view = ParseRecord(record);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_TRUE(CheckPayload(*view).ok());
  Decompressor decompressor;
  std::vector<uint8_t> raw(b.data.size());
  EXPECT_TRUE(DecodeRecord(*view, decompressor, nullptr, absl::MakeSpan(raw)).ok());
  const ChunkHasher hasher;
  const absl::Status status = DecodeRecord(*view, decompressor, &hasher, absl::MakeSpan(raw));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status, "chunk 5 of 16")) << status;
  EXPECT_TRUE(Contains(status, wrong.ToHex())) << status;
  EXPECT_TRUE(Contains(status, right.ToHex())) << status;
}

TEST(DecodeRecordTest, KeyedIdsVerifyOnlyWithTheirKey) {
  Compressor compressor(1);
  absl::StatusOr<ChunkHasher> keyed = ChunkHasher::Make(internal::RandomBytes(32, 1));
  absl::StatusOr<ChunkHasher> other = ChunkHasher::Make(internal::RandomBytes(32, 2));
  ASSERT_TRUE(keyed.ok() && other.ok());
  const Built b = Build(internal::TextLikeBytes(8192, 12), Even(2, 4096), &compressor, *keyed);
  ExpectRoundTrip(b, *keyed);
  absl::StatusOr<RecordView> view = ParseRecord(b.record);
  ASSERT_TRUE(view.ok());
  Decompressor decompressor;
  std::vector<uint8_t> raw(8192);
  const ChunkHasher unkeyed;
  for (const ChunkHasher* wrong : {&unkeyed, static_cast<const ChunkHasher*>(&*other)}) {
    const absl::Status status = DecodeRecord(*view, decompressor, wrong, absl::MakeSpan(raw));
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(Contains(status, "chunk 0 of 2")) << status;
  }
}

TEST(DecodeRecordTest, DamagedFrameBehindValidChecksumsIsDataLoss) {
  Compressor compressor(1);
  const Built b = Build(internal::TextLikeBytes(8192, 13), Even(2, 4096), &compressor);
  ASSERT_EQ(CodecOf(b.record), Codec::kZstd);
  std::vector<uint8_t> r = b.record;
  r[RecordHeaderSize(2)] ^= 0xff;  // zstd magic
  ResignPayload(r);
  absl::StatusOr<RecordView> view = ParseRecord(r);
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_TRUE(CheckPayload(*view).ok());
  Decompressor decompressor;
  std::vector<uint8_t> raw(8192);
  const absl::Status status = DecodeRecord(*view, decompressor, nullptr, absl::MakeSpan(raw));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status, "record payload: zstd frame")) << status;
}

TEST(DecodeRecordTest, WrongOutputSizeIsInvalidArgument) {
  const Built b = Build(internal::TextLikeBytes(100, 14), {100}, nullptr);
  absl::StatusOr<RecordView> view = ParseRecord(b.record);
  ASSERT_TRUE(view.ok());
  Decompressor decompressor;
  std::vector<uint8_t> raw(99);
  EXPECT_EQ(DecodeRecord(*view, decompressor, nullptr, absl::MakeSpan(raw)).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace chunkferry::codec
