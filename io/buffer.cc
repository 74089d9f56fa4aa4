#include "io/buffer.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace chunkferry::io {

AlignedBuffer::AlignedBuffer(size_t size) : size_(AlignUp(size, kDirectAlignment)) {
  if (size_ == 0) return;
  data_ = static_cast<uint8_t*>(std::aligned_alloc(kDirectAlignment, size_));
  if (data_ == nullptr) {
    // Like operator new, running out of memory is not a recoverable error here; the data path
    // has no exceptions to throw, so stop with a message instead of handing out a null buffer.
    std::fprintf(stderr, "chunkferry::io::AlignedBuffer: cannot allocate %zu bytes\n", size_);
    std::abort();
  }
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

}  // namespace chunkferry::io
