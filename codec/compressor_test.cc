#include "codec/compressor.h"

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_getFrameHeader
#include <zstd.h>

#include <vector>

#include "absl/status/status.h"
#include "codec/internal/test_data.h"
#include "gtest/gtest.h"

namespace chunkferry::codec {
namespace {

using Spans = std::vector<absl::Span<const uint8_t>>;

std::vector<uint8_t> CompressOrDie(Compressor& compressor, const Spans& inputs) {
  size_t total = 0;
  for (const auto& input : inputs) total += input.size();
  std::vector<uint8_t> frame(CompressBound(total));
  absl::StatusOr<size_t> size = compressor.Compress(inputs, absl::MakeSpan(frame));
  EXPECT_TRUE(size.ok()) << size.status();
  frame.resize(size.ok() ? *size : 0);
  return frame;
}

std::vector<uint8_t> Concat(const Spans& inputs) {
  std::vector<uint8_t> out;
  for (const auto& input : inputs) out.insert(out.end(), input.begin(), input.end());
  return out;
}

TEST(CompressorTest, RoundTripsOneSpan) {
  Compressor compressor(1);
  Decompressor decompressor;
  EXPECT_EQ(compressor.level(), 1);
  for (const auto& data : {internal::TextLikeBytes(65536, 1), internal::BinaryLikeBytes(65536, 2),
                           internal::RandomBytes(65536, 3), std::vector<uint8_t>(65536, 0),
                           internal::TextLikeBytes(1, 4), std::vector<uint8_t>()}) {
    const std::vector<uint8_t> frame = CompressOrDie(compressor, {data});
    std::vector<uint8_t> out(data.size());
    ASSERT_TRUE(decompressor.Decompress(frame, absl::MakeSpan(out)).ok()) << data.size();
    EXPECT_EQ(out, data);
  }
}

TEST(CompressorTest, CompressesCompressibleData) {
  Compressor compressor(1);
  const std::vector<uint8_t> text = internal::TextLikeBytes(65536, 1);
  EXPECT_LT(CompressOrDie(compressor, {text}).size(), text.size() / 2);
  const std::vector<uint8_t> zeros(65536, 0);
  EXPECT_LT(CompressOrDie(compressor, {zeros}).size(), 100u);
  const std::vector<uint8_t> random = internal::RandomBytes(65536, 1);
  EXPECT_GE(CompressOrDie(compressor, {random}).size(), random.size());
}

TEST(CompressorTest, FrameRecordsContentSizeAndNoChecksum) {
  Compressor compressor(3);
  const std::vector<uint8_t> text = internal::TextLikeBytes(10000, 1);
  const Spans pieces = {absl::MakeConstSpan(text).first(3000),
                        absl::MakeConstSpan(text).subspan(5000)};  // not adjacent
  for (const Spans& inputs : {Spans{text}, pieces}) {
    const std::vector<uint8_t> frame = CompressOrDie(compressor, inputs);
    ZSTD_frameHeader header;
    ASSERT_EQ(ZSTD_getFrameHeader(&header, frame.data(), frame.size()), 0u);
    EXPECT_EQ(header.frameContentSize, Concat(inputs).size());
    EXPECT_EQ(header.checksumFlag, 0u);
  }
}

TEST(CompressorTest, MultipleSpansAreOneFrameOfTheirConcatenation) {
  Compressor compressor(1);
  Decompressor decompressor;
  const std::vector<uint8_t> a = internal::TextLikeBytes(40000, 1);
  const std::vector<uint8_t> b = internal::BinaryLikeBytes(30000, 2);
  const std::vector<uint8_t> c = internal::RandomBytes(500, 3);
  const std::vector<uint8_t> empty;
  const Spans inputs = {a, empty, b, c, empty};
  const std::vector<uint8_t> frame = CompressOrDie(compressor, inputs);
  const std::vector<uint8_t> want = Concat(inputs);
  std::vector<uint8_t> out(want.size());
  ASSERT_TRUE(decompressor.Decompress(frame, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, want);
}

// Adjacent spans take the in-place path and give the same frame as one span.
TEST(CompressorTest, AdjacentSpansGiveTheSameFrameAsOneSpan) {
  Compressor compressor(1);
  const std::vector<uint8_t> data = internal::BinaryLikeBytes(16 * 4096, 7);
  Spans chunks;
  for (size_t i = 0; i < 16; ++i)
    chunks.push_back(absl::MakeConstSpan(data).subspan(i * 4096, 4096));
  EXPECT_EQ(CompressOrDie(compressor, chunks), CompressOrDie(compressor, {data}));
}

TEST(CompressorTest, TooSmallOutputIsResourceExhaustedAndTheContextRecovers) {
  Compressor compressor(1);
  Decompressor decompressor;
  const std::vector<uint8_t> random = internal::RandomBytes(100000, 1);
  const Spans split = {absl::MakeConstSpan(random).first(50000),
                       absl::MakeConstSpan(random).subspan(60000)};
  std::vector<uint8_t> small(random.size());
  for (const Spans& inputs : {Spans{random}, split}) {
    const size_t total = Concat(inputs).size();
    // Random bytes do not compress: a frame needs more than `total` bytes.
    for (const size_t capacity : {size_t{0}, size_t{10}, size_t{40000}, total - 1, total}) {
      absl::StatusOr<size_t> size =
          compressor.Compress(inputs, absl::MakeSpan(small).first(capacity));
      EXPECT_EQ(size.status().code(), absl::StatusCode::kResourceExhausted)
          << capacity << " " << size.status();
    }
  }
  // A failed call leaves no state behind.
  const std::vector<uint8_t> text = internal::TextLikeBytes(20000, 2);
  for (const Spans& inputs : {Spans{text}, Spans{absl::MakeConstSpan(text).first(100),
                                                 absl::MakeConstSpan(random).first(100)}}) {
    const std::vector<uint8_t> frame = CompressOrDie(compressor, inputs);
    const std::vector<uint8_t> want = Concat(inputs);
    std::vector<uint8_t> out(want.size());
    ASSERT_TRUE(decompressor.Decompress(frame, absl::MakeSpan(out)).ok());
    EXPECT_EQ(out, want);
  }
}

TEST(CompressorTest, LevelsAndMoves) {
  const std::vector<uint8_t> text = internal::TextLikeBytes(65536, 3);
  Compressor fast(-5);
  Compressor strong(19);
  Compressor clamped(1000);  // zstd clamps to its maximum
  EXPECT_EQ(clamped.level(), 1000);
  const size_t fast_size = CompressOrDie(fast, {text}).size();
  const size_t strong_size = CompressOrDie(strong, {text}).size();
  EXPECT_LT(strong_size, fast_size);
  Compressor max_level(ZSTD_maxCLevel());
  EXPECT_EQ(CompressOrDie(clamped, {text}), CompressOrDie(max_level, {text}));

  Compressor moved(std::move(strong));
  EXPECT_EQ(CompressOrDie(moved, {text}).size(), strong_size);
  Decompressor d1;
  Decompressor d2(std::move(d1));
  std::vector<uint8_t> out(text.size());
  ASSERT_TRUE(d2.Decompress(CompressOrDie(moved, {text}), absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, text);
}

TEST(DecompressorTest, WrongOutputSizeIsDataLoss) {
  Compressor compressor(1);
  Decompressor decompressor;
  const std::vector<uint8_t> text = internal::TextLikeBytes(10000, 1);
  const std::vector<uint8_t> frame = CompressOrDie(compressor, {text});
  for (const size_t size : {size_t{0}, size_t{9999}, size_t{10001}, size_t{20000}}) {
    std::vector<uint8_t> out(size);
    const absl::Status status = decompressor.Decompress(frame, absl::MakeSpan(out));
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << size << " " << status;
  }
}

TEST(DecompressorTest, DamagedFramesAreDataLoss) {
  Compressor compressor(1);
  Decompressor decompressor;
  const std::vector<uint8_t> text = internal::TextLikeBytes(10000, 1);
  const std::vector<uint8_t> frame = CompressOrDie(compressor, {text});
  std::vector<uint8_t> out(text.size());
  // Every truncation.
  for (size_t size = 0; size < frame.size(); ++size) {
    const absl::Status status =
        decompressor.Decompress(absl::MakeConstSpan(frame).first(size), absl::MakeSpan(out));
    ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << size << " " << status;
  }
  // Trailing bytes, and a second frame appended.
  std::vector<uint8_t> trailing = frame;
  trailing.push_back(0);
  EXPECT_EQ(decompressor.Decompress(trailing, absl::MakeSpan(out)).code(),
            absl::StatusCode::kDataLoss);
  std::vector<uint8_t> two = frame;
  two.insert(two.end(), frame.begin(), frame.end());
  EXPECT_EQ(decompressor.Decompress(two, absl::MakeSpan(out)).code(), absl::StatusCode::kDataLoss);
  // Not a frame at all.
  const std::vector<uint8_t> garbage = internal::RandomBytes(1000, 9);
  EXPECT_EQ(decompressor.Decompress(garbage, absl::MakeSpan(out)).code(),
            absl::StatusCode::kDataLoss);
  // Damaged magic and header.
  for (size_t i = 0; i < 6; ++i) {
    std::vector<uint8_t> damaged = frame;
    damaged[i] ^= 0xff;
    EXPECT_EQ(decompressor.Decompress(damaged, absl::MakeSpan(out)).code(),
              absl::StatusCode::kDataLoss)
        << i;
  }
  // Without zstd's own checksum a flip in literals may decode "fine" to wrong bytes: the
  // record's payload checksum is what catches that. Any flip must be OK or DataLoss, no crash.
  for (size_t i = 0; i < frame.size(); ++i) {
    std::vector<uint8_t> damaged = frame;
    damaged[i] ^= 0x10;
    const absl::Status status = decompressor.Decompress(damaged, absl::MakeSpan(out));
    EXPECT_TRUE(status.ok() || status.code() == absl::StatusCode::kDataLoss) << status;
  }
  // The decompressor still works afterwards.
  ASSERT_TRUE(decompressor.Decompress(frame, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, text);
}

}  // namespace
}  // namespace chunkferry::codec
