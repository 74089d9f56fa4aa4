#include "io/buffer.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace chunkferry::io {
namespace {

// Buffers of at least this size are made of transparent huge pages when the kernel allows
// (madvise mode). A direct I/O request carries at most a few hundred memory segments (254 on
// this project's VMs' virtio disks), one per physically contiguous run: from 4 KiB pages a
// 4 MiB write leaves as four or five 1 MiB requests, from 2 MiB pages as one.
constexpr size_t kHugePage = 2 << 20;

}  // namespace

AlignedBuffer::AlignedBuffer(size_t size) : size_(AlignUp(size, kDirectAlignment)) {
  if (size_ == 0) return;
  const bool huge = size_ >= kHugePage;
  if (huge) size_ = AlignUp(size_, kHugePage);
  data_ = static_cast<uint8_t*>(std::aligned_alloc(huge ? kHugePage : kDirectAlignment, size_));
  if (data_ == nullptr) {
    // Like operator new, running out of memory is not a recoverable error here; the data path
    // has no exceptions to throw, so stop with a message instead of handing out a null buffer.
    std::fprintf(stderr, "chunkferry::io::AlignedBuffer: cannot allocate %zu bytes\n", size_);
    std::abort();
  }
  // Best effort: without huge pages the buffer works the same, in smaller requests.
  if (huge) (void)::madvise(data_, size_, MADV_HUGEPAGE);
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
