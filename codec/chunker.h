// Chunkers cut a volume's byte stream into chunks: fixed-size (a power of two from 4 KiB to
// 4 MiB) or content-defined (FastCDC with min/avg/max). A chunker is a pure function of the bytes
// it is shown, so the same stream always gives the same chunks.
#ifndef CHUNKFERRY_CODEC_CHUNKER_H_
#define CHUNKFERRY_CODEC_CHUNKER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::codec {

// What a store records about how its volumes are cut. Text form: "fixed:4096" or
// "cdc:2048:8192:65536" (min:avg:max, powers of two for avg; sizes accept k/m suffixes when
// parsed, e.g. "fixed:4k", "cdc:2k:8k:64k").
struct ChunkerSpec {
  enum class Kind : uint8_t { kFixed, kFastCdc };
  Kind kind = Kind::kFixed;
  uint32_t min_size = 4096;  // fixed: equals avg and max
  uint32_t avg_size = 4096;
  uint32_t max_size = 4096;

  // Parses the text form; rejects sizes out of range (fixed: power of two in [4 KiB, 4 MiB];
  // cdc: 64 B ≤ min < avg < max ≤ 4 MiB, avg a power of two) with a precise message.
  static absl::StatusOr<ChunkerSpec> Parse(std::string_view text);
  // Checks the ranges above for a spec built in code (Parse already does); InvalidArgument
  // saying which bound is violated.
  absl::Status Validate() const;
  // Canonical text form with plain byte counts ("fixed:4096").
  std::string ToString() const;
};

// Finds chunk boundaries. Stateless between calls; safe to share between threads.
class Chunker {
 public:
  virtual ~Chunker() = default;
  // Returns the length of the first chunk of `data`. When `last` is false and the data may end
  // before the chunk does (data.size() < max_size()), returns 0 to ask for more bytes. When
  // `last` is true, returns at most data.size() (and 0 only for empty data).
  virtual size_t FindBoundary(absl::Span<const uint8_t> data, bool last) const = 0;
  virtual uint32_t max_size() const = 0;
  virtual const ChunkerSpec& spec() const = 0;
};

// Makes the chunker for `spec`; returns nullptr when spec.Validate() fails (specs from Parse
// never do).
std::unique_ptr<Chunker> MakeChunker(const ChunkerSpec& spec);

}  // namespace chunkferry::codec

#endif  // CHUNKFERRY_CODEC_CHUNKER_H_
