#include "engine/pipeline/window_reader.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kReadBlock = 1 << 20;
constexpr uint64_t kMergeHoleBelow = 256 << 10;

}  // namespace

absl::StatusOr<std::unique_ptr<WindowReader>> WindowReader::Open(const std::string& source,
                                                                 io::Backend backend, size_t gap,
                                                                 size_t window) {
  auto reader = std::unique_ptr<WindowReader>(new WindowReader);
  reader->source_ = source;
  Input& in = reader->input_;
  if (source == "-") {
    in.fd = STDIN_FILENO;
  } else {
    CF_ASSIGN_OR_RETURN(in.owned, io::OpenMaybeDirect(source, O_RDONLY | O_CLOEXEC, &in.direct));
    in.fd = in.owned.get();
  }
  struct stat st;
  if (::fstat(in.fd, &st) != 0) return io::ErrnoStatus(errno, "stat", source);
  if (S_ISREG(st.st_mode)) {
    in.seekable = in.regular = true;
    in.size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    in.seekable = true;
    if (::ioctl(in.fd, BLKGETSIZE64, &in.size) != 0) {
      return io::ErrnoStatus(errno, "BLKGETSIZE64", source);
    }
  } else if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(source, " is a directory, not an image"));
  }
  io::QueueOptions qo;
  qo.backend = backend;
  qo.depth = 32;
  CF_ASSIGN_OR_RETURN(reader->queue_, io::MakeQueue(qo));
  reader->gap_ = gap;
  reader->window_ = std::max<size_t>(io::AlignUp(window, kReadBlock), kReadBlock);
  for (auto& b : reader->bufs_) b = io::AlignedBuffer(gap + reader->window_);
  return reader;
}

absl::Status WindowReader::SubmitWindowReads(int which, uint64_t file_offset) {
  got_[which] = 0;
  if (!input_.seekable) {
    CF_ASSIGN_OR_RETURN(
        got_[which], io::ReadFully(input_.fd, absl::MakeSpan(bufs_[which].data() + gap_, window_)));
    return absl::OkStatus();
  }
  const uint64_t end = file_offset + std::min<uint64_t>(window_, input_.size - file_offset);
  got_[which] = end - file_offset;
  uint8_t* base = bufs_[which].data() + gap_ - file_offset;
  for (uint64_t pos = file_offset; pos < end;) {
    // Sparse images: holes are zeros without reading them (SEEK_DATA/SEEK_HOLE).
    uint64_t data_begin = pos, data_end = end;
    if (probe_holes_) {
      const off_t d = ::lseek(input_.fd, static_cast<off_t>(pos), SEEK_DATA);
      const bool no_data = d < 0 && errno == ENXIO;  // before fstat below can touch errno
      // ENXIO: no data from pos to the end, a hole to the end; or a file cut shorter since it
      // was opened, which must not pass as zeros.
      if (no_data) CF_RETURN_IF_ERROR(CheckSizeUnchanged());
      if (d >= 0 || no_data) {
        data_begin = d < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(d), end);
        // Extents separated by small holes are read as one: a few KiB of zeros cost less
        // than another request.
        for (uint64_t from = data_begin; from < end;) {
          const off_t h = ::lseek(input_.fd, static_cast<off_t>(from), SEEK_HOLE);
          data_end = h < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(h), end);
          const off_t next =
              data_end < end ? ::lseek(input_.fd, static_cast<off_t>(data_end), SEEK_DATA) : -1;
          if (next < 0 || static_cast<uint64_t>(next) >= end ||
              static_cast<uint64_t>(next) - data_end > kMergeHoleBelow) {
            break;
          }
          from = static_cast<uint64_t>(next);
        }
        // Keep direct reads aligned; the extra bytes are zeros of the hole anyway.
        data_begin = std::max(pos, data_begin & ~(io::kDirectAlignment - 1));
        data_end = std::min(end, io::AlignUp(data_end, io::kDirectAlignment));
      } else {
        probe_holes_ = false;  // not supported here (some block devices, old file systems)
      }
    }
    std::memset(base + pos, 0, data_begin - pos);
    for (uint64_t off = data_begin; off < data_end; off += kReadBlock) {
      const uint64_t len = std::min<uint64_t>(kReadBlock, data_end - off);
      io::Request r;
      r.op = io::Request::Op::kRead;
      r.fd = input_.fd;
      r.buf = base + off;
      // O_DIRECT lengths must be aligned; the file simply ends earlier.
      r.len = static_cast<uint32_t>(io::AlignUp(len, io::kDirectAlignment));
      r.offset = off;
      r.tag = (static_cast<uint64_t>(which) << 32) | len;
      if (queue_->in_flight() >= queue_->depth()) CF_RETURN_IF_ERROR(ReapReads(1));
      CF_RETURN_IF_ERROR(queue_->Submit(r));
      ++pending_[which];
    }
    pos = data_end;
  }
  return absl::OkStatus();
}

absl::Status WindowReader::ReapReads(size_t min_complete) {
  io::Completion done[16];
  CF_ASSIGN_OR_RETURN(size_t n, queue_->Reap(absl::MakeSpan(done), min_complete));
  for (size_t i = 0; i < n; ++i) {
    const int w = static_cast<int>(done[i].tag >> 32);
    const uint64_t expect = done[i].tag & 0xffffffffu;
    --pending_[w];
    if (done[i].result < 0) {
      if (read_error_.ok()) {
        read_error_ = io::ErrnoStatus(static_cast<int>(-done[i].result), "read", source_);
      }
    } else if (static_cast<uint64_t>(done[i].result) < expect && read_error_.ok()) {
      read_error_ =
          absl::DataLossError(absl::StrCat(source_, " got shorter while it was being imported"));
    }
  }
  return read_error_;
}

absl::Status WindowReader::ReadAhead() {
  if (submitted_end_) return absl::OkStatus();
  const int which = static_cast<int>(submitted_ % kBuffers);
  CF_RETURN_IF_ERROR(SubmitWindowReads(which, submit_offset_));
  ++submitted_;
  submit_offset_ += got_[which];
  // A stream ends with its first short window (possibly empty); a file at its size.
  submitted_end_ = input_.seekable ? submit_offset_ >= input_.size : got_[which] < window_;
  return absl::OkStatus();
}

absl::StatusOr<size_t> WindowReader::Wait(size_t number) {
  const int which = static_cast<int>(number % kBuffers);
  while (pending_[which] > 0) CF_RETURN_IF_ERROR(ReapReads(1));
  CF_RETURN_IF_ERROR(read_error_);
  // Once the last window is in, the file must still be as long as it was: what was read as a
  // hole or up to the end is then what the file holds.
  if (submitted_end_ && number + 1 == submitted_) CF_RETURN_IF_ERROR(CheckSizeUnchanged());
  return got_[which];
}

absl::Status WindowReader::CheckSizeUnchanged() {
  if (!input_.regular) return absl::OkStatus();
  struct stat st;
  if (::fstat(input_.fd, &st) != 0) return io::ErrnoStatus(errno, "stat", source_);
  if (static_cast<uint64_t>(st.st_size) != input_.size) {
    read_error_ =
        absl::DataLossError(absl::StrCat(source_, " changed size from ", input_.size, " to ",
                                         st.st_size, " bytes while it was being imported"));
  }
  return read_error_;
}

}  // namespace chunkferry::engine
