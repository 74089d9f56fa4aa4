#include "codec/zero.h"

#include <vector>

#include "gtest/gtest.h"

namespace chunkferry::codec {
namespace {

TEST(IsAllZeroTest, EmptyIsZero) {
  EXPECT_TRUE(IsAllZero({}));
  EXPECT_TRUE(IsAllZero(absl::Span<const uint8_t>(nullptr, 0)));
}

// Every length 0..300 at every start alignment 0..15, with one non-zero byte at each position.
TEST(IsAllZeroTest, FindsASingleNonZeroByteAnywhere) {
  std::vector<uint8_t> buffer(16 + 300 + 16, 0);
  for (size_t align = 0; align < 16; ++align) {
    for (size_t length = 0; length <= 300; ++length) {
      const absl::Span<const uint8_t> view(buffer.data() + align, length);
      ASSERT_TRUE(IsAllZero(view)) << "align " << align << " length " << length;
      for (size_t pos = 0; pos < length; ++pos) {
        for (const uint8_t value : {uint8_t{1}, uint8_t{0x80}}) {
          buffer[align + pos] = value;
          ASSERT_FALSE(IsAllZero(view))
              << "align " << align << " length " << length << " pos " << pos;
          buffer[align + pos] = 0;
        }
      }
    }
  }
}

// Bytes just outside the span must not count.
TEST(IsAllZeroTest, IgnoresBytesOutsideTheSpan) {
  std::vector<uint8_t> buffer(64, 0xff);
  for (size_t i = 8; i < 56; ++i) buffer[i] = 0;
  EXPECT_TRUE(IsAllZero(absl::Span<const uint8_t>(buffer.data() + 8, 48)));
  EXPECT_FALSE(IsAllZero(absl::Span<const uint8_t>(buffer.data() + 7, 48)));
  EXPECT_FALSE(IsAllZero(absl::Span<const uint8_t>(buffer.data() + 8, 49)));
}

// Large spans cross the internal zero page: check around every page boundary.
TEST(IsAllZeroTest, LargeSpans) {
  constexpr size_t kSize = (4 << 20) + 123;
  std::vector<uint8_t> buffer(kSize, 0);
  EXPECT_TRUE(IsAllZero(buffer));
  for (size_t page = 4096; page < kSize; page += 4096 * 97) {
    for (const size_t pos : {page - 1, page, page + 1}) {
      buffer[pos] = 3;
      EXPECT_FALSE(IsAllZero(buffer)) << pos;
      buffer[pos] = 0;
    }
  }
  buffer[kSize - 1] = 1;
  EXPECT_FALSE(IsAllZero(buffer));
  EXPECT_TRUE(IsAllZero(absl::Span<const uint8_t>(buffer.data(), kSize - 1)));
}

}  // namespace
}  // namespace chunkferry::codec
