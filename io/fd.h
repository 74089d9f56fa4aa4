// Move-only owner of a file descriptor and the plain-syscall file helpers the rest of the
// project uses for metadata-sized I/O (descriptors, manifests, locks). Bulk data goes through
// io::Queue instead.
#ifndef CHUNKFERRY_IO_FD_H_
#define CHUNKFERRY_IO_FD_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::io {

// Owns one file descriptor and closes it in its destructor. Not thread-safe; movable.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int Release();
  // Closes the descriptor (if any); errors from close(2) are ignored here, use Close() to see them.
  void Reset();
  // Closes the descriptor and reports what close(2) said.
  [[nodiscard]] absl::Status Close();

 private:
  int fd_ = -1;
};

// Makes a Status from an errno value: "<op> <path>: <strerror>", with a code that fits the errno
// (ENOENT → NotFound, ENOSPC → ResourceExhausted, EACCES → PermissionDenied, else Internal...).
absl::Status ErrnoStatus(int err, std::string_view op, std::string_view what);

// Files and directories chunkferry creates are private to the user that runs it: backups and
// secrets are nobody else's business on a shared node (the umask can only take bits away).
inline constexpr int kPrivateFileMode = 0600;
inline constexpr int kPrivateDirMode = 0700;

// Opens `path` with open(2) flags and mode, adding O_CLOEXEC; the error names the path.
[[nodiscard]] absl::StatusOr<Fd> OpenFile(const std::string& path, int flags,
                                          int mode = kPrivateFileMode);

// Opens `path` with O_DIRECT added to `flags` when it is a regular file or block device on a
// file system that supports it (tmpfs does not), else without (FIFOs, character devices); *direct
// tells which. Direct I/O needs buffers, offsets and lengths aligned to kDirectAlignment
// (io/buffer.h), except a read that ends at end of file.
[[nodiscard]] absl::StatusOr<Fd> OpenMaybeDirect(const std::string& path, int flags, bool* direct,
                                                 int mode = kPrivateFileMode);

// Reads exactly `out.size()` bytes at `offset`, retrying short reads and EINTR. Returns
// OutOfRange when the file ends first (the bytes before EOF are in `out`), the errno as a
// Status on other failures.
[[nodiscard]] absl::Status PreadFull(int fd, absl::Span<uint8_t> out, uint64_t offset);
// Writes all of `data` at `offset`, retrying short writes.
[[nodiscard]] absl::Status PwriteFull(int fd, absl::Span<const uint8_t> data, uint64_t offset);
// Reads up to out.size() bytes from the current position (pipes, stdin), retrying until the
// buffer is full or EOF. Returns the number of bytes read; fewer than out.size() means EOF.
[[nodiscard]] absl::StatusOr<size_t> ReadFully(int fd, absl::Span<uint8_t> out);

// Reads a whole (small) file into a string.
[[nodiscard]] absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// PermissionDenied, naming the mode and the fix (chmod 600), when the open file `fd` (a secret:
// `what`, at `path`) is not a regular file private to its owner: group or others have any access.
[[nodiscard]] absl::Status CheckPrivateFile(int fd, std::string_view what, std::string_view path);
// Reads `fd` from its position to EOF; InvalidArgument once more than `max_bytes` came (a wrong
// path to a disk image fails fast). `what` and `path` name the file in errors.
[[nodiscard]] absl::StatusOr<std::string> ReadBounded(int fd, size_t max_bytes,
                                                      std::string_view what, std::string_view path);
// ReadFileToString of a secret: refused as CheckPrivateFile says; a FIFO does not hang the open.
[[nodiscard]] absl::StatusOr<std::string> ReadPrivateFile(const std::string& path,
                                                          std::string_view what);
// Replaces `path` durably and atomically: write `path.tmp.<pid>` (kPrivateFileMode), fsync, rename
// over `path`, fsync the directory. Readers see either the old or the new content, never a mix.
// IsAtomicWriteLeftover() recognizes the temporary name a crash may leave behind.
[[nodiscard]] absl::Status WriteFileAtomic(const std::string& path, std::string_view data);
// True for a name of the form `<name>.tmp.<digits>`: the temporary file of WriteFileAtomic or
// WriteFileOnce.
bool IsAtomicWriteLeftover(std::string_view name);
// Publishes the finished, fsynced file `tmp_path` as `path` unless `path` already exists
// (renameat2 RENAME_NOREPLACE, or link(2) where the file system lacks it, so that of two
// publishers only one can win), then fsyncs the directory. Returns true when `path` is new; false
// when `path` already held the same bytes (publishing again is a no-op). A `path` with other bytes
// is AlreadyExists and stays as it was. `tmp_path` is gone afterwards in every case.
[[nodiscard]] absl::StatusOr<bool> PublishFileOnce(const std::string& tmp_path,
                                                   const std::string& path);
// Writes `data` to a temporary file beside `path`, fsyncs it and publishes it as PublishFileOnce.
[[nodiscard]] absl::StatusOr<bool> WriteFileOnce(const std::string& path, std::string_view data);
// Compares two files byte for byte, streaming (files of any size).
[[nodiscard]] absl::StatusOr<bool> FilesEqual(const std::string& a, const std::string& b);
// Creates directory `path` (mode kPrivateDirMode); one that exists already is fine.
[[nodiscard]] absl::Status MakeDir(const std::string& path);
// Lists the names in `dir` that end in `suffix` (and are longer than it), without the suffix,
// sorted.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir,
                                                               std::string_view suffix);
// fsyncs a directory so that renames and creations inside it are durable.
[[nodiscard]] absl::Status FsyncDir(const std::string& dir);
// fsyncs an open file.
[[nodiscard]] absl::Status Fsync(int fd, std::string_view what);
// Returns the size of an open file.
[[nodiscard]] absl::StatusOr<uint64_t> FileSize(int fd, std::string_view what);

}  // namespace chunkferry::io

#endif  // CHUNKFERRY_IO_FD_H_
