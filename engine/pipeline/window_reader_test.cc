#include "engine/pipeline/window_reader.h"

#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kMiB = 1 << 20;

class WindowReaderTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override { CF_SKIP_IF_NO_URING(GetParam()); }

  // Reads `path` a window at a time as the importer does (two windows ahead), calling
  // `after_window(n)` once window n is in; returns the bytes read or the first error.
  absl::StatusOr<std::vector<uint8_t>> ReadAll(const std::string& path,
                                               const std::function<void(size_t)>& after_window) {
    auto reader = WindowReader::Open(path, GetParam(), /*gap=*/0, /*window=*/kMiB);
    if (!reader.ok()) return reader.status();
    WindowReader& r = **reader;
    std::vector<uint8_t> out;
    for (size_t n = 0;; ++n) {
      while (r.submitted() < n + 2 && !r.submitted_end()) {
        absl::Status st = r.ReadAhead();
        if (!st.ok()) return st;
      }
      if (n >= r.submitted()) break;
      absl::StatusOr<size_t> got = r.Wait(n);
      if (!got.ok()) return got.status();
      const uint8_t* b = r.buffer(n) + r.gap();
      out.insert(out.end(), b, b + *got);
      after_window(n);
    }
    return out;
  }

  testing::TempDir tmp_;
};

TEST_P(WindowReaderTest, ReadsAFileWhole) {
  const std::string img = tmp_.Sub("img");
  const auto bytes = testing::RandomBytes(5 * kMiB + 123, 1);
  testing::WriteFile(img, bytes);
  auto got = ReadAll(img, [](size_t) {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
}

// An image cut short while it is read: the part past the new end would read as a hole (SEEK_DATA
// fails with ENXIO there), i.e. as zeros, and the import would succeed with a wrong backup.
TEST_P(WindowReaderTest, AFileCutShortWhileReadIsAnErrorNotZeros) {
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 8 * kMiB, 2);
  auto got = ReadAll(img, [&](size_t n) {
    if (n == 1) testing::TruncateFile(img, 3 * kMiB);  // windows 2 and 3 are read after this
  });
  ASSERT_FALSE(got.ok()) << "the cut-off part was read as zeros";
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_TRUE(absl::StrContains(got.status().message(), "while it was being imported"))
      << got.status();
}

// Cut after every window was read, or grown: the image is not the one that was read.
TEST_P(WindowReaderTest, AFileWhoseSizeChangedByTheEndIsAnError) {
  for (const uint64_t new_size : {uint64_t{5 * kMiB}, uint64_t{9 * kMiB}}) {
    const std::string img = tmp_.Sub("img");
    testing::WriteRandomFile(img, 6 * kMiB, 3);
    auto got = ReadAll(img, [&](size_t n) {
      if (n == 4) testing::TruncateFile(img, new_size);  // window 5 is already in flight
    });
    ASSERT_FALSE(got.ok()) << new_size;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, WindowReaderTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry::engine
