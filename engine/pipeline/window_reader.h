// Reads an image a window at a time, through a queue, ahead of its use: the import's input.
// Sparse files skip their holes (SEEK_DATA/SEEK_HOLE) and extents separated by small holes are
// read as one; O_DIRECT where the file system allows it; a pipe or stream ("-") is read in order.
// Each buffer keeps `gap` bytes in front of its window, where the caller moves what the chunker
// left of the window before (so that a chunk never spans two buffers).
#ifndef CHUNKFERRY_ENGINE_PIPELINE_WINDOW_READER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_WINDOW_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/buffer.h"
#include "io/fd.h"
#include "io/queue.h"

namespace chunkferry::engine {

class WindowReader {
 public:
  // Buffers, used round robin by window number: two being read (so the disk always has the next
  // window queued while one is waited for), one being planned, one still being compressed.
  static constexpr int kBuffers = 4;

  // Opens `source` (a file or block device, or "-" for standard input). `window` is rounded up
  // to whole 1 MiB reads.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<WindowReader>> Open(const std::string& source,
                                                                          io::Backend backend,
                                                                          size_t gap,
                                                                          size_t window);

  bool direct() const { return input_.direct; }
  // The image's size; 0 for a stream.
  uint64_t size() const { return input_.size; }
  size_t gap() const { return gap_; }
  size_t window() const { return window_; }
  // Submits the reads of the next window (number submitted()), unless the end was reached.
  [[nodiscard]] absl::Status ReadAhead();
  size_t submitted() const { return submitted_; }
  // The window submitted last reaches the end of the input.
  bool submitted_end() const { return submitted_end_; }
  // Waits for window `number`'s reads; returns its bytes (at buffer(number) + gap()).
  [[nodiscard]] absl::StatusOr<size_t> Wait(size_t number);
  uint8_t* buffer(size_t number) { return bufs_[number % kBuffers].data(); }

 private:
  // The image: a seekable file or device read through the queue, or a stream.
  struct Input {
    io::Fd owned;
    int fd = -1;
    bool seekable = false;
    bool regular = false;  // a file, whose size can change under the import
    bool direct = false;
    uint64_t size = 0;  // when seekable
  };
  WindowReader() = default;
  [[nodiscard]] absl::Status SubmitWindowReads(int which, uint64_t file_offset);
  // Collects at least `min_complete` read completions (of any window).
  [[nodiscard]] absl::Status ReapReads(size_t min_complete);
  // DataLoss (kept as the read error) when a file's size is no longer the one it had at Open.
  [[nodiscard]] absl::Status CheckSizeUnchanged();

  std::string source_;
  Input input_;
  size_t gap_ = 0;
  size_t window_ = 0;
  io::AlignedBuffer bufs_[kBuffers];
  // After the buffers: destroyed first, so reads still in flight finish before they are freed.
  std::unique_ptr<io::Queue> queue_;
  size_t pending_[kBuffers] = {};  // reads in flight per buffer
  size_t got_[kBuffers] = {};      // bytes of image per buffer
  // Windows submitted so far, the file offset of the next one, and whether the one submitted
  // last reaches the end of the input.
  size_t submitted_ = 0;
  uint64_t submit_offset_ = 0;
  bool submitted_end_ = false;
  bool probe_holes_ = true;
  absl::Status read_error_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_WINDOW_READER_H_
