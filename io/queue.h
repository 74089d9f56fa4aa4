// Asynchronous file I/O: a queue of in-flight reads, writes and fsyncs, driven either by
// io_uring (liburing) or by a portable backend of plain syscalls on a few threads. The rest of
// the project keeps its disk I/O deep by submitting many requests and reaping completions.
#ifndef CHUNKFERRY_IO_QUEUE_H_
#define CHUNKFERRY_IO_QUEUE_H_

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::io {

enum class Backend : uint8_t {
  kAuto,     // io_uring when it can be set up (kernel, seccomp), else threads
  kUring,    // io_uring only; MakeQueue fails when it cannot be set up
  kThreads,  // plain pread/pwrite/fsync on a small pool of threads
};

// Parses "auto", "uring" or "threads".
[[nodiscard]] absl::StatusOr<Backend> ParseBackend(std::string_view name);
std::string_view BackendName(Backend backend);

// One asynchronous file operation. The buffer must stay valid and untouched until the
// request's completion has been reaped.
struct Request {
  enum class Op : uint8_t { kRead, kWrite, kFsync };
  Op op = Op::kRead;
  int fd = -1;
  uint8_t* buf = nullptr;  // unused for kFsync
  uint32_t len = 0;        // unused for kFsync
  uint64_t offset = 0;     // unused for kFsync
  uint64_t tag = 0;        // handed back in the completion
  int buf_index = -1;      // index of a registered buffer containing `buf`, or -1
};

struct Completion {
  uint64_t tag = 0;
  // Bytes transferred, or -errno. A read transfers fewer than `len` bytes only at end of file;
  // a write always transfers `len` bytes unless it failed.
  int64_t result = 0;
};

// A queue of in-flight file operations. One Queue per thread: not thread-safe. The io_uring
// backend binds to the first thread that hands it work to the kernel (Reap); Reap from another
// thread then fails with FailedPrecondition, and a queue with requests in flight must be
// destroyed on that thread (an idle one anywhere). Requests complete in any order. Short reads and
// writes are resubmitted internally for the remainder, so callers never see them (except a read
// that reaches end of file). The destructor waits for every request in flight, since the kernel
// may write into their buffers until then; on io_uring, requests that make no progress for a
// second (a read on an idle pipe) are cancelled instead of waited for.
class Queue {
 public:
  virtual ~Queue() = default;

  // Queues a request. Submission to the kernel may be deferred until Reap() so that requests go
  // in batches. Fails with ResourceExhausted when depth() requests are already in flight (a
  // request counts until its completion has been reaped), InvalidArgument for a bad request
  // (no buffer, unregistered buf_index). Errors of the operation itself (bad fd, EIO) come
  // back in its Completion, not here.
  [[nodiscard]] virtual absl::Status Submit(const Request& request) = 0;

  // Submits everything queued, waits until at least `min_complete` completions are ready
  // (clamped to in_flight()), and moves up to out.size() of them into `out`. Returns how many
  // were written. With min_complete == 0 it only collects what is already done.
  [[nodiscard]] virtual absl::StatusOr<size_t> Reap(absl::Span<Completion> out,
                                                    size_t min_complete) = 0;

  // Registers buffers for fixed-buffer I/O (io_uring READ_FIXED / WRITE_FIXED); requests then
  // name them by buf_index. A no-op on the threads backend. At most once per Queue.
  [[nodiscard]] virtual absl::Status RegisterBuffers(absl::Span<const iovec> buffers) = 0;

  // Requests submitted and not yet reaped.
  virtual size_t in_flight() const = 0;
  virtual size_t depth() const = 0;
  virtual Backend backend() const = 0;
};

struct QueueOptions {
  Backend backend = Backend::kAuto;
  unsigned depth = 64;   // maximum requests in flight
  unsigned threads = 4;  // workers of the threads backend
  // Only ever used from the thread that first submits to it: io_uring then binds the ring to
  // that thread (SINGLE_ISSUER | DEFER_TASKRUN) and skips locking. Set false for a queue that
  // several threads use in turn (never at once).
  bool single_thread = true;
};

// Makes a queue. With kAuto, falls back to the threads backend when io_uring cannot be set up;
// with kUring that is an Unavailable error saying why. Setting CHUNKFERRY_DISABLE_URING=1 in the
// environment makes io_uring count as unavailable. InvalidArgument for a depth of 0 or above
// 32768 (the io_uring limit) or zero threads.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Queue>> MakeQueue(const QueueOptions& options);

// Runs one request to completion on `queue` (a convenience for cold paths and tests); returns
// its result (bytes or -errno) or a queue error. The queue must have nothing in flight
// (FailedPrecondition otherwise), since other requests' completions would be lost.
[[nodiscard]] absl::StatusOr<int64_t> RunOne(Queue& queue, const Request& request);

}  // namespace chunkferry::io

#endif  // CHUNKFERRY_IO_QUEUE_H_
