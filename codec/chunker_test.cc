#include "codec/chunker.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "codec/chunk_id.h"
#include "codec/internal/test_data.h"
#include "gtest/gtest.h"

namespace chunkferry::codec {
namespace {

using Kind = ChunkerSpec::Kind;

ChunkerSpec ParseOrDie(std::string_view text) {
  absl::StatusOr<ChunkerSpec> spec = ChunkerSpec::Parse(text);
  EXPECT_TRUE(spec.ok()) << text << ": " << spec.status();
  return spec.ok() ? *spec : ChunkerSpec{};
}

// Cuts `data` the way a streaming caller does: it is shown `window` new bytes at a time, on top
// of the unconsumed tail of the previous window, and FindBoundary is called until it asks for
// more. `windows` cycles through the given sizes. Returns the chunk lengths.
std::vector<size_t> CutStreaming(const Chunker& chunker, absl::Span<const uint8_t> data,
                                 const std::vector<size_t>& windows) {
  std::vector<size_t> lengths;
  std::vector<uint8_t> tail;
  size_t fed = 0;
  for (size_t w = 0; fed < data.size(); ++w) {
    const size_t window = std::min(windows[w % windows.size()], data.size() - fed);
    tail.insert(tail.end(), data.begin() + fed, data.begin() + fed + window);
    fed += window;
    const bool last = fed == data.size();
    size_t consumed = 0;
    while (consumed < tail.size()) {
      const size_t cut = chunker.FindBoundary(
          absl::Span<const uint8_t>(tail.data() + consumed, tail.size() - consumed), last);
      if (cut == 0) {
        EXPECT_FALSE(last) << "last=true must always make progress";
        EXPECT_LT(tail.size() - consumed, chunker.max_size())
            << "a full max_size window must always give a cut";
        break;
      }
      EXPECT_LE(cut, tail.size() - consumed);
      lengths.push_back(cut);
      consumed += cut;
    }
    tail.erase(tail.begin(), tail.begin() + static_cast<ptrdiff_t>(consumed));
  }
  EXPECT_TRUE(tail.empty());
  return lengths;
}

std::vector<size_t> CutWhole(const Chunker& chunker, absl::Span<const uint8_t> data) {
  return CutStreaming(chunker, data, {data.size()});
}

std::vector<ChunkId> Ids(absl::Span<const uint8_t> data, const std::vector<size_t>& lengths) {
  const ChunkHasher hasher;
  std::vector<ChunkId> ids;
  size_t offset = 0;
  for (const size_t length : lengths) {
    ids.push_back(hasher.Hash(data.subspan(offset, length)));
    offset += length;
  }
  return ids;
}

TEST(ChunkerSpecTest, ParsesAcceptedForms) {
  struct Case {
    std::string_view text;
    Kind kind;
    uint32_t min, avg, max;
    std::string_view canonical;
  };
  const Case cases[] = {
      {"fixed:4096", Kind::kFixed, 4096, 4096, 4096, "fixed:4096"},
      {"fixed:4k", Kind::kFixed, 4096, 4096, 4096, "fixed:4096"},
      {"fixed:4K", Kind::kFixed, 4096, 4096, 4096, "fixed:4096"},
      {"fixed:64k", Kind::kFixed, 65536, 65536, 65536, "fixed:65536"},
      {"fixed:1m", Kind::kFixed, 1 << 20, 1 << 20, 1 << 20, "fixed:1048576"},
      {"fixed:4m", Kind::kFixed, 4 << 20, 4 << 20, 4 << 20, "fixed:4194304"},
      {"cdc:2k:8k:64k", Kind::kFastCdc, 2048, 8192, 65536, "cdc:2048:8192:65536"},
      {"cdc:2048:8192:65536", Kind::kFastCdc, 2048, 8192, 65536, "cdc:2048:8192:65536"},
      {"cdc:64:128:256", Kind::kFastCdc, 64, 128, 256, "cdc:64:128:256"},
      {"cdc:1m:2m:4m", Kind::kFastCdc, 1 << 20, 2 << 20, 4 << 20, "cdc:1048576:2097152:4194304"},
      {"cdc:100:1k:5000", Kind::kFastCdc, 100, 1024, 5000, "cdc:100:1024:5000"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ChunkerSpec> spec = ChunkerSpec::Parse(c.text);
    ASSERT_TRUE(spec.ok()) << c.text << ": " << spec.status();
    EXPECT_EQ(spec->kind, c.kind) << c.text;
    EXPECT_EQ(spec->min_size, c.min) << c.text;
    EXPECT_EQ(spec->avg_size, c.avg) << c.text;
    EXPECT_EQ(spec->max_size, c.max) << c.text;
    EXPECT_EQ(spec->ToString(), c.canonical) << c.text;
    absl::StatusOr<ChunkerSpec> again = ChunkerSpec::Parse(spec->ToString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->ToString(), c.canonical);
    EXPECT_TRUE(spec->Validate().ok());
  }
}

TEST(ChunkerSpecTest, RejectsWithAPreciseMessage) {
  struct Case {
    std::string_view text;
    std::string_view says;  // a fragment the message must contain
  };
  const Case cases[] = {
      {"", "unknown kind \"\""},
      {"fixed", "has 0 size field(s), fixed takes 1"},
      {"fixed:", "bad size \"\" (empty size)"},
      {"fixed:4k:8k", "has 2 size field(s), fixed takes 1"},
      {"cdc:2k:8k", "has 2 size field(s), cdc takes 3"},
      {"cdc:2k:8k:64k:1m", "has 4 size field(s), cdc takes 3"},
      {"rabin:4096", "unknown kind \"rabin\""},
      {"Fixed:4096", "unknown kind \"Fixed\""},
      {"fastcdc:2k:8k:64k", "unknown kind \"fastcdc\""},
      {" fixed:4096", "unknown kind \" fixed\""},
      {"fixed:4096 ", "unexpected character ' ' in size"},
      {"fixed:-4096", "unexpected character '-' in size"},
      {"fixed:+4096", "unexpected character '+' in size"},
      {"fixed:4kb", "unexpected character 'k' in size"},
      {"fixed:4g", "unexpected character 'g' in size"},
      {"fixed:k", "bad size \"k\" (empty size)"},
      {"fixed:0x1000", "unexpected character 'x' in size"},
      {"fixed:4.5k", "unexpected character '.' in size"},
      {"fixed:99999999999999999999999", "larger than the maximum 4194304"},
      {"fixed:8m", "larger than the maximum 4194304"},
      {"fixed:4097", "fixed chunk size 4097 must be a power of two from 4096 (4k) to 4194304"},
      {"fixed:2k", "fixed chunk size 2048 must be a power of two"},
      {"fixed:0", "fixed chunk size 0 must be a power of two"},
      {"fixed:6k", "fixed chunk size 6144 must be a power of two"},
      {"cdc:32:8k:64k", "cdc min size 32 must be at least 64"},
      {"cdc:8k:8k:64k", "min < avg < max, got 8192:8192:65536"},
      {"cdc:2k:64k:64k", "min < avg < max, got 2048:65536:65536"},
      {"cdc:16k:8k:64k", "min < avg < max"},
      {"cdc:2k:6k:64k", "cdc avg size 6144 must be a power of two"},
      {"cdc:2k:8k:8m", "larger than the maximum 4194304"},
      {"cdc:2k::64k", "bad size \"\""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ChunkerSpec> spec = ChunkerSpec::Parse(c.text);
    ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << c.text << "\"";
    const std::string message(spec.status().message());
    EXPECT_NE(message.find(c.says), std::string::npos) << "\"" << c.text << "\" gave: " << message;
    // Every message quotes the input.
    EXPECT_NE(message.find("chunker spec \"" + std::string(c.text) + "\""), std::string::npos)
        << message;
  }
}

TEST(ChunkerSpecTest, SyntaxErrorsSayWhatIsAllowed) {
  absl::StatusOr<ChunkerSpec> spec = ChunkerSpec::Parse("fixed:4q");
  EXPECT_NE(spec.status().message().find("expected \"fixed:<size>\" or \"cdc:<min>:<avg>:<max>\""),
            std::string_view::npos)
      << spec.status();
  EXPECT_NE(spec.status().message().find("k (KiB) or m (MiB)"), std::string_view::npos);
}

TEST(ChunkerSpecTest, MakeChunkerRefusesAnInvalidSpec) {
  ChunkerSpec bad;
  bad.kind = Kind::kFixed;
  bad.min_size = bad.avg_size = bad.max_size = 5000;
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_EQ(MakeChunker(bad), nullptr);
  ChunkerSpec mixed;  // fixed with unequal sizes
  mixed.max_size = 8192;
  EXPECT_FALSE(mixed.Validate().ok());
  EXPECT_EQ(MakeChunker(mixed), nullptr);
  EXPECT_NE(MakeChunker(ChunkerSpec{}), nullptr);  // the default, fixed:4096, is valid
}

TEST(FixedChunkerTest, CutsEverySizeBytes) {
  const std::unique_ptr<Chunker> chunker = MakeChunker(ParseOrDie("fixed:4k"));
  ASSERT_NE(chunker, nullptr);
  EXPECT_EQ(chunker->max_size(), 4096u);
  EXPECT_EQ(chunker->spec().ToString(), "fixed:4096");
  const std::vector<uint8_t> data(3 * 4096 + 100, 1);
  const absl::Span<const uint8_t> all(data);
  EXPECT_EQ(chunker->FindBoundary(all, false), 4096u);
  EXPECT_EQ(chunker->FindBoundary(all, true), 4096u);
  EXPECT_EQ(chunker->FindBoundary(all.first(4096), false), 4096u);
  EXPECT_EQ(chunker->FindBoundary(all.first(4095), false), 0u);
  EXPECT_EQ(chunker->FindBoundary(all.first(4095), true), 4095u);
  EXPECT_EQ(chunker->FindBoundary(all.first(1), true), 1u);
  EXPECT_EQ(chunker->FindBoundary(all.first(0), true), 0u);
  EXPECT_EQ(chunker->FindBoundary(all.first(0), false), 0u);
  EXPECT_EQ(CutWhole(*chunker, all), (std::vector<size_t>{4096, 4096, 4096, 100}));
  EXPECT_EQ(CutStreaming(*chunker, all, {1000, 3000, 7}),
            (std::vector<size_t>{4096, 4096, 4096, 100}));
}

class FastCdcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = ParseOrDie("cdc:2k:8k:64k");
    chunker_ = MakeChunker(spec_);
    ASSERT_NE(chunker_, nullptr);
    data_ = internal::RandomBytes(16 << 20, 2024);
  }
  ChunkerSpec spec_;
  std::unique_ptr<Chunker> chunker_;
  std::vector<uint8_t> data_;
};

TEST_F(FastCdcTest, ChunkSizesAreWithinBoundsAndAverageNearAvg) {
  const std::vector<size_t> lengths = CutWhole(*chunker_, data_);
  ASSERT_GT(lengths.size(), 100u);
  EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), size_t{0}), data_.size());
  for (size_t i = 0; i + 1 < lengths.size(); ++i) {
    ASSERT_GE(lengths[i], spec_.min_size) << "chunk " << i;
    ASSERT_LE(lengths[i], spec_.max_size) << "chunk " << i;
  }
  EXPECT_GE(lengths.back(), 1u);
  EXPECT_LE(lengths.back(), spec_.max_size);
  const double average = static_cast<double>(data_.size()) / static_cast<double>(lengths.size());
  EXPECT_GT(average, 0.75 * spec_.avg_size);
  EXPECT_LT(average, 1.5 * spec_.avg_size);
  // Normalized chunking: most chunks are within a factor 2 of avg, few are forced at max.
  const size_t near =
      static_cast<size_t>(std::count_if(lengths.begin(), lengths.end(), [&](size_t n) {
        return n >= spec_.avg_size / 2 && n <= spec_.avg_size * 2;
      }));
  EXPECT_GT(near, lengths.size() * 7 / 10);
  const size_t forced =
      static_cast<size_t>(std::count(lengths.begin(), lengths.end(), spec_.max_size));
  EXPECT_LT(forced, lengths.size() / 100);
}

TEST_F(FastCdcTest, BoundariesDoNotDependOnHowTheStreamIsFed) {
  const std::vector<size_t> whole = CutWhole(*chunker_, data_);
  const std::vector<std::vector<size_t>> feeds = {
      {1},  // byte at a time: FindBoundary must ask for more until max_size or a cut
      {4096}, {65536}, {65537}, {1 << 20}, {100, 70000, 3, 9000, 65535, 1},
  };
  const absl::Span<const uint8_t> head(data_.data(), 1 << 20);  // keep the 1-byte feed quick
  const std::vector<size_t> whole_head = CutWhole(*chunker_, head);
  for (const std::vector<size_t>& feed : feeds) {
    if (feed.size() == 1 && feed[0] == 1) {
      EXPECT_EQ(CutStreaming(*chunker_, head, feed), whole_head) << "1-byte windows";
    } else {
      EXPECT_EQ(CutStreaming(*chunker_, data_, feed), whole) << "window " << feed[0];
    }
  }
  internal::SplitMix64 rng(5);
  std::vector<size_t> random_windows;
  for (int i = 0; i < 1000; ++i) random_windows.push_back(1 + rng.Below(200000));
  EXPECT_EQ(CutStreaming(*chunker_, data_, random_windows), whole) << "random windows";
}

TEST_F(FastCdcTest, AsksForMoreOnlyBelowMaxSize) {
  for (size_t n = 0; n <= spec_.max_size + 10; n += 997) {
    const absl::Span<const uint8_t> view(data_.data(), n);
    const size_t cut = chunker_->FindBoundary(view, false);
    if (n >= spec_.max_size) {
      EXPECT_GT(cut, 0u) << n;
    }
    EXPECT_LE(cut, std::min<size_t>(n, spec_.max_size)) << n;
    const size_t last_cut = chunker_->FindBoundary(view, true);
    if (n > 0) {
      EXPECT_GT(last_cut, 0u) << n;
    }
    EXPECT_LE(last_cut, n);
    // A cut found with more data available (last or not) is the same cut.
    if (cut != 0) {
      EXPECT_EQ(cut, last_cut) << n;
    }
  }
  // All-zero and constant data never match the mask: cuts are forced at max_size.
  const std::vector<uint8_t> zeros(3 * spec_.max_size + 5, 0);
  EXPECT_EQ(CutWhole(*chunker_, zeros),
            (std::vector<size_t>{spec_.max_size, spec_.max_size, spec_.max_size, 5}));
}

TEST_F(FastCdcTest, AnInsertionOnlyChangesTheChunksAroundIt) {
  const absl::Span<const uint8_t> original(data_.data(), 4 << 20);
  std::vector<uint8_t> edited(original.begin(), original.end());
  const std::vector<uint8_t> inserted = internal::RandomBytes(37, 99);
  edited.insert(edited.begin() + 5000, inserted.begin(), inserted.end());

  const std::vector<size_t> before_lengths = CutWhole(*chunker_, original);
  const std::vector<size_t> after_lengths = CutWhole(*chunker_, edited);
  const std::vector<ChunkId> before = Ids(original, before_lengths);
  const std::vector<ChunkId> after = Ids(edited, after_lengths);
  std::map<ChunkId, int> known;
  for (const ChunkId& id : before) ++known[id];
  size_t kept = 0;
  for (const ChunkId& id : after) kept += known.count(id);
  // Only the chunk(s) holding offset 5000 change; everything after realigns.
  EXPECT_GE(kept + 3, after.size()) << "kept " << kept << " of " << after.size();
  EXPECT_LT(kept, after.size()) << "the edited chunk must change";
  // The chunks after the edit are the same chunks, shifted by the insertion.
  EXPECT_EQ(std::vector<ChunkId>(before.end() - 100, before.end()),
            std::vector<ChunkId>(after.end() - 100, after.end()));
}

TEST_F(FastCdcTest, SmallSpecsWork) {
  const std::unique_ptr<Chunker> small = MakeChunker(ParseOrDie("cdc:64:128:256"));
  ASSERT_NE(small, nullptr);
  const absl::Span<const uint8_t> head(data_.data(), 1 << 20);
  const std::vector<size_t> lengths = CutWhole(*small, head);
  for (size_t i = 0; i + 1 < lengths.size(); ++i) {
    ASSERT_GE(lengths[i], 64u);
    ASSERT_LE(lengths[i], 256u);
  }
  const double average = static_cast<double>(head.size()) / static_cast<double>(lengths.size());
  EXPECT_GT(average, 100.0);
  EXPECT_LT(average, 200.0);
  EXPECT_EQ(CutStreaming(*small, head, {300, 1, 77}), lengths);
}

// Boundaries are part of the store format (dedupe across versions depends on them): pin the
// cuts of a fixed stream so that any change to the gear table, masks or loop is noticed.
TEST_F(FastCdcTest, KnownAnswer) {
  const std::vector<size_t> lengths =
      CutWhole(*chunker_, absl::Span<const uint8_t>(data_.data(), 1 << 20));
  std::vector<size_t> first(lengths.begin(), lengths.begin() + 8);
  EXPECT_EQ(first, (std::vector<size_t>{12109, 2410, 9287, 8946, 11711, 8307, 10112, 15539}));
  EXPECT_EQ(lengths.size(), 112u);
}

}  // namespace
}  // namespace chunkferry::codec
