#include "engine/pipeline/image_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/buffer.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// Writes all of `data` to a stream (a pipe or terminal), in order.
absl::Status WriteAll(int fd, absl::Span<const uint8_t> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::ErrnoStatus(errno, "write", "standard output");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ImageWriter>> ImageWriter::Open(const std::string& output,
                                                               uint64_t size, bool overwrite,
                                                               bool try_direct,
                                                               io::Backend backend) {
  auto w = std::unique_ptr<ImageWriter>(new ImageWriter);
  w->output_ = output;
  if (output == "-") {
    w->stream_ = true;
    w->fd_ = STDOUT_FILENO;
    return w;
  }
  struct stat st;
  if (!overwrite && ::stat(output.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(output, " exists; pass --force to replace it"));
  }
  w->partial_ = output + ".partial";
  CF_ASSIGN_OR_RETURN(w->out_fd_,
                      io::OpenFile(w->partial_, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC));
  w->fd_ = w->out_fd_.get();
  if (try_direct) {
    bool direct = false;
    auto dfd = io::OpenMaybeDirect(w->partial_, O_WRONLY | O_CLOEXEC, &direct);
    if (dfd.ok() && direct) w->direct_fd_ = *std::move(dfd);
  }
  if (::ftruncate(w->fd_, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    ::unlink(w->partial_.c_str());
    return io::ErrnoStatus(err, "ftruncate", w->partial_);
  }
  io::QueueOptions qo;
  qo.backend = backend;
  qo.depth = 32;
  auto queue = io::MakeQueue(qo);
  if (!queue.ok()) {
    ::unlink(w->partial_.c_str());
    return queue.status();
  }
  w->queue_ = *std::move(queue);
  return w;
}

ImageWriter::~ImageWriter() {
  if (queue_ != nullptr) (void)ReapWrites(writes_in_flight_);
}

absl::Status ImageWriter::ReapWrites(size_t min) {
  io::Completion done[16];
  min = std::min(min, writes_in_flight_);
  // At least one pass: with min == 0 it hands the queued writes to the kernel (Submit only
  // queues them) and collects those already done, without waiting.
  do {
    CF_ASSIGN_OR_RETURN(size_t n, queue_->Reap(absl::MakeSpan(done), std::min<size_t>(min, 16)));
    for (size_t i = 0; i < n; ++i) {
      const int group = static_cast<int>(done[i].tag >> 32);
      const int64_t want = static_cast<int64_t>(done[i].tag & 0xffffffffu);
      --in_flight_[group];
      --writes_in_flight_;
      if (done[i].result == -EINVAL && direct_fd_.valid() && write_error_.ok()) {
        write_error_ =
            absl::InternalError(absl::StrCat("direct write to ", output_, " refused (EINVAL)"));
      }
      if (done[i].result != want && write_error_.ok()) {
        write_error_ = done[i].result < 0
                           ? io::ErrnoStatus(static_cast<int>(-done[i].result), "write", output_)
                           : absl::InternalError(absl::StrCat("short write to ", output_));
      }
    }
    min -= std::min(min, n);
  } while (min > 0);
  return write_error_;
}

absl::Status ImageWriter::Write(int group, absl::Span<const uint8_t> data, uint64_t offset) {
  // Direct I/O takes whole aligned blocks: data that starts aligned goes out direct up to its
  // last whole block, and only what is left (the short last chunk of a volume) is written
  // through the page cache here. Rare: not worth a second queue.
  uint64_t direct_len = data.size();
  if (direct_fd_.valid()) {
    const bool start_aligned =
        ((offset | reinterpret_cast<uintptr_t>(data.data())) & (io::kDirectAlignment - 1)) == 0;
    direct_len = start_aligned ? data.size() & ~uint64_t{io::kDirectAlignment - 1} : 0;
  }
  if (direct_len < data.size()) {
    CF_RETURN_IF_ERROR(io::PwriteFull(fd_, data.subspan(direct_len), offset + direct_len));
  }
  if (direct_len > 0) {
    if (queue_->in_flight() >= queue_->depth()) CF_RETURN_IF_ERROR(ReapWrites(1));
    io::Request r;
    r.op = io::Request::Op::kWrite;
    r.fd = direct_fd_.valid() ? direct_fd_.get() : fd_;
    r.buf = const_cast<uint8_t*>(data.data());
    r.len = static_cast<uint32_t>(direct_len);
    r.offset = offset;
    r.tag = (static_cast<uint64_t>(group) << 32) | direct_len;
    CF_RETURN_IF_ERROR(queue_->Submit(r));
    ++in_flight_[group];
    ++writes_in_flight_;
  }
  return absl::OkStatus();
}

absl::Status ImageWriter::WaitGroup(int group) {
  while (in_flight_[group] > 0) CF_RETURN_IF_ERROR(ReapWrites(1));
  return write_error_;
}

absl::Status ImageWriter::Append(absl::Span<const uint8_t> data) { return WriteAll(fd_, data); }

absl::Status ImageWriter::AppendZeros(uint64_t length) {
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  for (uint64_t left = length; left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, zeros.size()));
    CF_RETURN_IF_ERROR(WriteAll(fd_, absl::MakeConstSpan(zeros.data(), n)));
    left -= n;
  }
  return absl::OkStatus();
}

absl::Status ImageWriter::Commit() {
  if (stream_) return absl::OkStatus();
  CF_RETURN_IF_ERROR(ReapWrites(writes_in_flight_));
  CF_RETURN_IF_ERROR(io::Fsync(fd_, partial_));
  CF_RETURN_IF_ERROR(out_fd_.Close());
  if (::rename(partial_.c_str(), output_.c_str()) != 0) {
    return io::ErrnoStatus(errno, "rename", output_);
  }
  partial_.clear();
  return absl::OkStatus();
}

void ImageWriter::Abandon() {
  if (stream_ || partial_.empty()) return;
  if (queue_ != nullptr) (void)ReapWrites(writes_in_flight_);
  ::unlink(partial_.c_str());
}

}  // namespace chunkferry::engine
