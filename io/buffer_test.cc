#include "io/buffer.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "gtest/gtest.h"

namespace chunkferry::io {
namespace {

TEST(AlignedBufferTest, RoundsSizeUpAndAligns) {
  AlignedBuffer buffer(5000);
  ASSERT_NE(buffer.data(), nullptr);
  EXPECT_EQ(buffer.size(), 8192u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % kDirectAlignment, 0u);
  EXPECT_EQ(buffer.span().size(), 8192u);
  std::memset(buffer.data(), 0xab, buffer.size());  // all of it is ours (ASan checks)
  EXPECT_EQ(buffer.data()[8191], 0xab);
}

// Large buffers are huge-page sized and aligned (so that the kernel can back them with
// transparent huge pages and a direct I/O request is one memory segment per 2 MiB).
TEST(AlignedBufferTest, LargeBuffersAreHugePageAligned) {
  AlignedBuffer buffer((3 << 20) + 1);
  ASSERT_NE(buffer.data(), nullptr);
  EXPECT_EQ(buffer.size(), 4u << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % (2 << 20), 0u);
  std::memset(buffer.data(), 0xcd, buffer.size());
  EXPECT_EQ(buffer.data()[buffer.size() - 1], 0xcd);
  AlignedBuffer just_below((2 << 20) - 4096);
  EXPECT_EQ(just_below.size(), (2u << 20) - 4096);
}

TEST(AlignedBufferTest, EmptyHasNoMemory) {
  AlignedBuffer empty;
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_EQ(empty.size(), 0u);
  AlignedBuffer zero(0);
  EXPECT_EQ(zero.data(), nullptr);
  EXPECT_EQ(zero.size(), 0u);
}

TEST(AlignedBufferTest, MoveTransfersOwnership) {
  AlignedBuffer a(4096);
  uint8_t* data = a.data();
  a.data()[0] = 42;
  AlignedBuffer b(std::move(a));
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.size(), 4096u);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is defined
  EXPECT_EQ(a.size(), 0u);
  AlignedBuffer c(100);
  c = std::move(b);
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(c.data()[0], 42);
}

TEST(AlignUpTest, RoundsToMultiples) {
  EXPECT_EQ(AlignUp(0, 4096), 0u);
  EXPECT_EQ(AlignUp(1, 4096), 4096u);
  EXPECT_EQ(AlignUp(4096, 4096), 4096u);
  EXPECT_EQ(AlignUp(4097, 512), 4608u);
}

}  // namespace
}  // namespace chunkferry::io
