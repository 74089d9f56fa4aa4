// The restore's output: an image built as "<output>.partial" and renamed into place only when
// complete (so a failure leaves no half image behind), or standard output. Writes to a file go
// through a queue, straight to the disk (O_DIRECT) where they are block-aligned, and are tagged
// with a group (the restorer's arena) whose memory must stay untouched until WaitGroup; what is
// not written stays a hole. Standard output takes bytes in order, holes as zeros.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_IMAGE_WRITER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_IMAGE_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "io/fd.h"
#include "io/queue.h"

namespace chunkferry::engine {

class ImageWriter {
 public:
  // Groups a write may be tagged with: 0 .. kGroups - 1.
  static constexpr int kGroups = 8;

  ~ImageWriter();
  ImageWriter(const ImageWriter&) = delete;
  ImageWriter& operator=(const ImageWriter&) = delete;

  // `output` is a path or "-". A path that exists is AlreadyExists unless `overwrite`. With
  // `try_direct`, block-aligned writes bypass the page cache where the file system allows it.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ImageWriter>> Open(const std::string& output,
                                                                         uint64_t size,
                                                                         bool overwrite,
                                                                         bool try_direct,
                                                                         io::Backend backend);

  bool stream() const { return stream_; }
  // File only: writes `data` at `offset`; the memory stays in use until WaitGroup(group).
  [[nodiscard]] absl::Status Write(int group, absl::Span<const uint8_t> data, uint64_t offset);
  // Hands the queued writes to the kernel now, without waiting.
  [[nodiscard]] absl::Status Kick() { return ReapWrites(0); }
  // Waits until the writes of `group` are done.
  [[nodiscard]] absl::Status WaitGroup(int group);
  // Stream only: the next bytes, or `length` zeros.
  [[nodiscard]] absl::Status Append(absl::Span<const uint8_t> data);
  [[nodiscard]] absl::Status AppendZeros(uint64_t length);
  // Waits for every write, makes the file durable and renames it into place.
  [[nodiscard]] absl::Status Commit();
  // Waits for every write and removes the partial file.
  void Abandon();

 private:
  ImageWriter() = default;
  [[nodiscard]] absl::Status ReapWrites(size_t min);

  std::string output_, partial_;
  io::Fd out_fd_;
  int fd_ = -1;
  io::Fd direct_fd_;     // the output again with O_DIRECT, for block-aligned writes
  bool stream_ = false;  // standard output
  absl::Status write_error_;
  size_t in_flight_[kGroups] = {};
  size_t writes_in_flight_ = 0;
  std::unique_ptr<io::Queue> queue_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_IMAGE_WRITER_H_
