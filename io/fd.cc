#include "io/fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/status_macros.h"

namespace chunkferry::io {
namespace {

// Returns strerror(err) without strerror's shared static buffer (several threads do I/O).
std::string ErrnoText(int err) {
  char buf[128];
  // g++ defines _GNU_SOURCE, so this is the GNU strerror_r that returns the text.
  return strerror_r(err, buf, sizeof(buf));
}

// Abseil here is built with its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0).
absl::string_view View(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string FdName(int fd) { return absl::StrCat("fd ", fd); }

// Returns the directory part of `path` ("." when it has none).
std::string DirName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    Reset();
    fd_ = other.Release();
  }
  return *this;
}

int Fd::Release() { return std::exchange(fd_, -1); }

void Fd::Reset() {
  // close(2) is not retried on EINTR: on Linux the descriptor is gone either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status Fd::Close() {
  if (fd_ < 0) return absl::OkStatus();
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) return ErrnoStatus(errno, "close", FdName(fd));
  return absl::OkStatus();
}

absl::Status ErrnoStatus(int err, std::string_view op, std::string_view what) {
  std::string message = absl::StrCat(View(op), " ", View(what), ": ", ErrnoText(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:  // past a file size limit: as full as a disk, for this file
      return absl::ResourceExhaustedError(message);
    case EINVAL:
      return absl::InvalidArgumentError(message);
    default:
      // EIO and everything else: the operation failed for a reason the caller cannot fix by
      // changing its arguments.
      return absl::InternalError(message);
  }
}

absl::StatusOr<Fd> OpenFile(const std::string& path, int flags, int mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  return Fd(fd);
}

absl::StatusOr<Fd> OpenMaybeDirect(const std::string& path, int flags, bool* direct, int mode) {
  // Only files and block devices take O_DIRECT. On a FIFO it would pair with the writer and
  // then fail, and the fallback's second open would cut that writer off.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    if (direct != nullptr) *direct = false;
    return OpenFile(path, flags & ~O_DIRECT, mode);
  }
  absl::StatusOr<Fd> fd = OpenFile(path, flags | O_DIRECT, mode);
  if (fd.ok() || !absl::IsInvalidArgument(fd.status())) {
    if (direct != nullptr) *direct = fd.ok();
    return fd;
  }
  // EINVAL from open(2) with O_DIRECT means the file system does not do direct I/O.
  if (direct != nullptr) *direct = false;
  return OpenFile(path, flags & ~O_DIRECT, mode);
}

absl::Status PreadFull(int fd, absl::Span<uint8_t> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "pread", absl::StrCat(FdName(fd), " at offset ", offset + done));
    }
    if (n == 0) {
      return absl::OutOfRangeError(absl::StrCat("pread ", FdName(fd), ": end of file at offset ",
                                                offset + done, ", ", out.size() - done, " of ",
                                                out.size(), " bytes missing"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PwriteFull(int fd, absl::Span<const uint8_t> data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "pwrite", absl::StrCat(FdName(fd), " at offset ", offset + done));
    }
    if (n == 0) {
      // No progress and no errno: report it rather than spin.
      return ErrnoStatus(EIO, "pwrite", absl::StrCat(FdName(fd), " at offset ", offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> ReadFully(int fd, absl::Span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", FdName(fd));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  CF_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_RDONLY));
  // Read to EOF rather than trusting st_size, which is 0 for /proc files and may change.
  std::string content;
  struct stat st;
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
    content.reserve(static_cast<size_t>(st.st_size));
  }
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", path);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  return content;
}

bool IsAtomicWriteLeftover(std::string_view name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string_view::npos || at == 0 || at + 5 == name.size()) return false;
  for (char c : name.substr(at + 5)) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

absl::Status CheckPrivateFile(int fd, std::string_view what, std::string_view path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " ", std::string(path), " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s %s has mode %04o: group or others may access it, and it is a secret; run chmod 600 %s",
        what, path, st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadBounded(int fd, size_t max_bytes, std::string_view what,
                                        std::string_view path) {
  std::string content;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", path);
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(what), " ", std::string(path),
                                                     " is over ", max_bytes, " bytes"));
    }
  }
  return content;
}

absl::StatusOr<std::string> ReadPrivateFile(const std::string& path, std::string_view what) {
  CF_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_RDONLY | O_NONBLOCK));
  CF_RETURN_IF_ERROR(CheckPrivateFile(fd.get(), what, path));
  return ReadBounded(fd.get(), 1u << 20, what, path);
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view data) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  absl::Status status = [&]() -> absl::Status {
    CF_ASSIGN_OR_RETURN(Fd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC));
    absl::Status written =
        PwriteFull(fd.get(), {reinterpret_cast<const uint8_t*>(data.data()), data.size()}, 0);
    if (!written.ok()) {
      return absl::Status(written.code(), absl::StrCat("write ", tmp, ": ", written.message()));
    }
    CF_RETURN_IF_ERROR(Fsync(fd.get(), tmp));
    CF_RETURN_IF_ERROR(fd.Close());
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return ErrnoStatus(errno, "rename", absl::StrCat(tmp, " to ", path));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    // Leave nothing behind; the original `path`, if any, is untouched.
    ::unlink(tmp.c_str());
    return status;
  }
  // The new content is in place; make the rename itself durable.
  return FsyncDir(DirName(path));
}

absl::StatusOr<bool> FilesEqual(const std::string& a, const std::string& b) {
  CF_ASSIGN_OR_RETURN(Fd fa, OpenFile(a, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(Fd fb, OpenFile(b, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(uint64_t size, FileSize(fa.get(), a));
  CF_ASSIGN_OR_RETURN(uint64_t size_b, FileSize(fb.get(), b));
  if (size != size_b) return false;
  constexpr size_t kStep = 1 << 20;
  std::vector<uint8_t> ba(std::min<uint64_t>(size, kStep)), bb(ba.size());
  for (uint64_t off = 0; off < size; off += kStep) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kStep, size - off));
    CF_RETURN_IF_ERROR(PreadFull(fa.get(), absl::MakeSpan(ba.data(), n), off));
    CF_RETURN_IF_ERROR(PreadFull(fb.get(), absl::MakeSpan(bb.data(), n), off));
    if (std::memcmp(ba.data(), bb.data(), n) != 0) return false;
  }
  return true;
}

absl::StatusOr<bool> PublishFileOnce(const std::string& tmp_path, const std::string& path) {
  int rc = ::renameat2(AT_FDCWD, tmp_path.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
  if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
    // No RENAME_NOREPLACE here: link(2) refuses an existing name just as atomically.
    rc = ::link(tmp_path.c_str(), path.c_str());
    if (rc == 0) ::unlink(tmp_path.c_str());
  }
  if (rc == 0) {
    CF_RETURN_IF_ERROR(FsyncDir(DirName(path)));
    return true;
  }
  const int err = errno;
  absl::StatusOr<bool> same =
      err == EEXIST ? FilesEqual(tmp_path, path) : ErrnoStatus(err, "publish", path);
  ::unlink(tmp_path.c_str());
  if (!same.ok()) return same.status();
  if (!*same) {
    return absl::AlreadyExistsError(absl::StrCat(path, " already exists with other contents"));
  }
  return false;
}

absl::StatusOr<bool> WriteFileOnce(const std::string& path, std::string_view data) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  absl::Status status = [&]() -> absl::Status {
    CF_ASSIGN_OR_RETURN(Fd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC));
    CF_RETURN_IF_ERROR(
        PwriteFull(fd.get(), {reinterpret_cast<const uint8_t*>(data.data()), data.size()}, 0));
    CF_RETURN_IF_ERROR(Fsync(fd.get(), tmp));
    return fd.Close();
  }();
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return PublishFileOnce(tmp, path);
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), kPrivateDirMode) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "mkdir", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir, std::string_view suffix) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, "opendir", dir);
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
      out.emplace_back(name.substr(0, name.size() - suffix.size()));
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status FsyncDir(const std::string& dir) {
  CF_ASSIGN_OR_RETURN(Fd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  CF_RETURN_IF_ERROR(Fsync(fd.get(), dir));
  return fd.Close();
}

absl::Status Fsync(int fd, std::string_view what) {
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return ErrnoStatus(errno, "fsync", what);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FileSize(int fd, std::string_view what) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat", what);
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace chunkferry::io
