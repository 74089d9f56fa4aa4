// zstd compression with contexts reused across calls. One Compressor/Decompressor per thread.
#ifndef CHUNKFERRY_CODEC_COMPRESSOR_H_
#define CHUNKFERRY_CODEC_COMPRESSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::codec {

// How a record's payload is encoded.
enum class Codec : uint8_t {
  kRaw = 0,   // payload is the raw bytes
  kZstd = 1,  // payload is one zstd frame of the raw bytes
};

// Largest compressed size of `raw_length` bytes (ZSTD_compressBound).
size_t CompressBound(size_t raw_length);

// Compresses with one reused ZSTD_CCtx. Not thread-safe: one per thread.
class Compressor {
 public:
  // `level` is a zstd level (negative levels allowed, 1..19 typical); out-of-range levels are
  // clamped by zstd itself.
  explicit Compressor(int level = 1);
  ~Compressor();
  Compressor(Compressor&&) noexcept;
  Compressor& operator=(Compressor&&) noexcept;

  // Compresses the concatenation of `inputs` as one zstd frame into `out` and returns the frame
  // size. With capacity of at least CompressBound of the total the frame always fits; with less,
  // a frame that would not fit is ResourceExhausted (EncodeRecord uses this to stop as soon as
  // compression does not pay). Other errors are Internal with zstd's message. Inputs that are
  // adjacent in memory are compressed in place, without a copy through zstd's stream buffers.
  [[nodiscard]] absl::StatusOr<size_t> Compress(absl::Span<const absl::Span<const uint8_t>> inputs,
                                                absl::Span<uint8_t> out);
  int level() const { return level_; }

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  int level_;
};

// Decompresses with one reused ZSTD_DCtx. Not thread-safe: one per thread.
class Decompressor {
 public:
  Decompressor();
  ~Decompressor();
  Decompressor(Decompressor&&) noexcept;
  Decompressor& operator=(Decompressor&&) noexcept;

  // Decompresses one zstd frame into `out`, which must be exactly the expected raw size: a frame
  // that is damaged, or decodes to more or fewer bytes, is DataLoss.
  [[nodiscard]] absl::Status Decompress(absl::Span<const uint8_t> frame, absl::Span<uint8_t> out);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace chunkferry::codec

#endif  // CHUNKFERRY_CODEC_COMPRESSOR_H_
