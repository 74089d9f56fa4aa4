#include "io/size.h"

#include <gtest/gtest.h>

namespace chunkferry::io {
namespace {

TEST(ParseSizeTest, TakesDigitsWithBinarySuffixes) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("4k"), 4096u);
  EXPECT_EQ(*ParseSize("64KiB"), 64u << 10);
  EXPECT_EQ(*ParseSize("4MB"), 4u << 20);
  EXPECT_EQ(*ParseSize("2g"), 2ull << 30);
  EXPECT_EQ(*ParseSize("2TiB"), 2ull << 40);
  EXPECT_EQ(*ParseSize("0"), 0u);
}

TEST(ParseSizeTest, RefusesWhatIsNotASize) {
  for (const char* bad : {"", "k", "KiB", "b", "-1", "+5", "1.5G", "4x", "4 k", "20000000000T",
                          "18446744073709551616"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace chunkferry::io
