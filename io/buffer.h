// Page-aligned heap buffers, usable for O_DIRECT and for registration with io_uring.
#ifndef CHUNKFERRY_IO_BUFFER_H_
#define CHUNKFERRY_IO_BUFFER_H_

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"

namespace chunkferry::io {

inline constexpr size_t kDirectAlignment = 4096;

// Owns `size` bytes aligned to kDirectAlignment (size is rounded up to the alignment).
// Contents are uninitialised. Move-only; not thread-safe.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size);
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  absl::Span<uint8_t> span() { return {data_, size_}; }
  absl::Span<const uint8_t> span() const { return {data_, size_}; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Rounds `n` up to a multiple of `align` (a power of two).
constexpr uint64_t AlignUp(uint64_t n, uint64_t align) { return (n + align - 1) & ~(align - 1); }

}  // namespace chunkferry::io

#endif  // CHUNKFERRY_IO_BUFFER_H_
