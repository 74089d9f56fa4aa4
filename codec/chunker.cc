#include "codec/chunker.h"

#include <algorithm>
#include <array>
#include <bit>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "codec/internal/strings.h"

namespace chunkferry::codec {
namespace {

constexpr uint32_t kFixedMinSize = 4u << 10;
constexpr uint32_t kMaxChunkSize = 4u << 20;
constexpr uint32_t kCdcMinSize = 64;

constexpr char kSyntax[] =
    "expected \"fixed:<size>\" or \"cdc:<min>:<avg>:<max>\", where a size is a decimal byte "
    "count with an optional k (KiB) or m (MiB) suffix";

// Parses a size field: decimal digits and an optional k/K or m/M suffix. Values above
// kMaxChunkSize are returned as kMaxChunkSize + 1 (the range check reports them).
absl::StatusOr<uint64_t> ParseSize(absl::string_view field) {
  uint64_t multiplier = 1;
  if (!field.empty()) {
    const char suffix = field.back();
    if (suffix == 'k' || suffix == 'K') multiplier = 1u << 10;
    if (suffix == 'm' || suffix == 'M') multiplier = 1u << 20;
    if (multiplier != 1) field.remove_suffix(1);
  }
  if (field.empty()) return absl::InvalidArgumentError("empty size");
  uint64_t value = 0;
  for (const char c : field) {
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected character '", std::string(1, c), "' in size"));
    }
    value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > kMaxChunkSize) value = kMaxChunkSize + 1;  // saturate: no overflow
  }
  return std::min<uint64_t>(value * multiplier, kMaxChunkSize + 1);
}

// A mask of `bits` one-bits spread over the top 48 bits of the gear hash. Bit k of the gear
// hash depends only on the last k+1 bytes, so high, spread bits make the cut decision depend on
// a window of up to 64 bytes rather than a few (the FastCDC paper's "zero padding").
constexpr uint64_t SpreadMask(int bits) {
  uint64_t mask = 0;
  for (int k = 0; k < bits; ++k) mask |= uint64_t{1} << (63 - (k * 48) / bits);
  return mask;
}

// The gear table: 256 pseudo-random 64-bit constants from splitmix64 with a fixed seed. It is
// part of the chunk format: changing it moves every content-defined boundary.
constexpr std::array<uint64_t, 256> MakeGearTable() {
  std::array<uint64_t, 256> table{};
  uint64_t state = 0x6368756e6b666572;  // "chunkfer"
  for (uint64_t& entry : table) {
    state += 0x9e3779b97f4a7c15;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    entry = z ^ (z >> 31);
  }
  return table;
}

constexpr std::array<uint64_t, 256> kGear = MakeGearTable();
static_assert(kGear[0] != kGear[1]);

class FixedChunker final : public Chunker {
 public:
  explicit FixedChunker(const ChunkerSpec& spec) : spec_(spec) {}

  size_t FindBoundary(absl::Span<const uint8_t> data, bool last) const override {
    if (data.size() >= spec_.max_size) return spec_.max_size;
    return last ? data.size() : 0;
  }
  uint32_t max_size() const override { return spec_.max_size; }
  const ChunkerSpec& spec() const override { return spec_; }

 private:
  ChunkerSpec spec_;
};

// FastCDC (Xia et al., USENIX ATC 2016): gear rolling hash, cut-point skipping up to min_size,
// and normalized chunking (level 2): a stricter mask (avg bits + 2) before avg_size and a looser
// one (avg bits - 2) after it, which pulls chunk sizes towards avg_size.
//
// The cut after byte i depends only on bytes [min_size - 1, i], which is what makes boundaries
// independent of how the stream is split into calls: a shorter buffer sees a prefix of the
// positions a longer one does, with the same hash and the same masks.
class FastCdcChunker final : public Chunker {
 public:
  explicit FastCdcChunker(const ChunkerSpec& spec)
      : spec_(spec),
        mask_s_(SpreadMask(std::countr_zero(spec.avg_size) + 2)),
        mask_l_(SpreadMask(std::countr_zero(spec.avg_size) - 2)) {}

  size_t FindBoundary(absl::Span<const uint8_t> data, bool last) const override {
    const size_t n = data.size();
    const size_t min_size = spec_.min_size;
    if (n <= min_size) return last ? n : 0;
    const size_t limit = std::min<size_t>(n, spec_.max_size);
    const size_t normal = std::min<size_t>(spec_.avg_size, limit);
    const uint8_t* p = data.data();
    uint64_t fp = 0;
    // The smallest chunk is min_size bytes: its cut is decided by byte min_size - 1.
    size_t i = min_size - 1;
    for (; i < normal; ++i) {
      fp = (fp << 1) + kGear[p[i]];
      if ((fp & mask_s_) == 0) return i + 1;
    }
    for (; i < limit; ++i) {
      fp = (fp << 1) + kGear[p[i]];
      if ((fp & mask_l_) == 0) return i + 1;
    }
    if (limit == spec_.max_size) return limit;  // forced cut at max_size
    return last ? n : 0;  // the chunk may continue past the data we were shown
  }
  uint32_t max_size() const override { return spec_.max_size; }
  const ChunkerSpec& spec() const override { return spec_; }

 private:
  ChunkerSpec spec_;
  uint64_t mask_s_;
  uint64_t mask_l_;
};

}  // namespace

absl::Status ChunkerSpec::Validate() const {
  switch (kind) {
    case Kind::kFixed:
      if (min_size != avg_size || avg_size != max_size) {
        return absl::InvalidArgumentError(absl::StrCat("fixed chunker needs min = avg = max, got ",
                                                       min_size, ":", avg_size, ":", max_size));
      }
      if (avg_size < kFixedMinSize || avg_size > kMaxChunkSize || !std::has_single_bit(avg_size)) {
        return absl::InvalidArgumentError(
            absl::StrCat("fixed chunk size ", avg_size, " must be a power of two from ",
                         kFixedMinSize, " (4k) to ", kMaxChunkSize, " (4m)"));
      }
      return absl::OkStatus();
    case Kind::kFastCdc:
      if (min_size < kCdcMinSize) {
        return absl::InvalidArgumentError(
            absl::StrCat("cdc min size ", min_size, " must be at least ", kCdcMinSize));
      }
      if (max_size > kMaxChunkSize) {
        return absl::InvalidArgumentError(
            absl::StrCat("cdc max size ", max_size, " must be at most ", kMaxChunkSize, " (4m)"));
      }
      if (!(min_size < avg_size && avg_size < max_size)) {
        return absl::InvalidArgumentError(
            absl::StrCat("cdc sizes must satisfy min < avg < max, got ", min_size, ":", avg_size,
                         ":", max_size));
      }
      if (!std::has_single_bit(avg_size)) {
        return absl::InvalidArgumentError(
            absl::StrCat("cdc avg size ", avg_size, " must be a power of two"));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown chunker kind ", static_cast<int>(kind)));
}

absl::StatusOr<ChunkerSpec> ChunkerSpec::Parse(std::string_view std_text) {
  const absl::string_view text = internal::ToAbsl(std_text);
  auto error = [text](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("chunker spec \"", text, "\": ", what));
  };
  const std::vector<absl::string_view> fields = absl::StrSplit(text, ':');
  ChunkerSpec spec;
  size_t expected_fields = 0;
  if (fields[0] == "fixed") {
    spec.kind = Kind::kFixed;
    expected_fields = 2;
  } else if (fields[0] == "cdc") {
    spec.kind = Kind::kFastCdc;
    expected_fields = 4;
  } else {
    return error(absl::StrCat("unknown kind \"", fields[0], "\"; ", kSyntax));
  }
  if (fields.size() != expected_fields) {
    return error(absl::StrCat("has ", fields.size() - 1, " size field(s), ", fields[0], " takes ",
                              expected_fields - 1, "; ", kSyntax));
  }
  uint32_t sizes[3];
  for (size_t i = 1; i < fields.size(); ++i) {
    absl::StatusOr<uint64_t> size = ParseSize(fields[i]);
    if (!size.ok()) {
      return error(
          absl::StrCat("bad size \"", fields[i], "\" (", size.status().message(), "); ", kSyntax));
    }
    if (*size > kMaxChunkSize) {
      return error(absl::StrCat("size \"", fields[i], "\" is larger than the maximum ",
                                kMaxChunkSize, " (4m)"));
    }
    sizes[i - 1] = static_cast<uint32_t>(*size);
  }
  if (spec.kind == Kind::kFixed) {
    spec.min_size = spec.avg_size = spec.max_size = sizes[0];
  } else {
    spec.min_size = sizes[0];
    spec.avg_size = sizes[1];
    spec.max_size = sizes[2];
  }
  if (absl::Status status = spec.Validate(); !status.ok()) return error(status.message());
  return spec;
}

std::string ChunkerSpec::ToString() const {
  if (kind == Kind::kFixed) return absl::StrCat("fixed:", max_size);
  return absl::StrCat("cdc:", min_size, ":", avg_size, ":", max_size);
}

std::unique_ptr<Chunker> MakeChunker(const ChunkerSpec& spec) {
  if (!spec.Validate().ok()) return nullptr;
  if (spec.kind == ChunkerSpec::Kind::kFixed) return std::make_unique<FixedChunker>(spec);
  return std::make_unique<FastCdcChunker>(spec);
}

}  // namespace chunkferry::codec
