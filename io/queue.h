// Asynchronous I/O: a queue of in-flight reads, writes and fsyncs on files and sends and
// receives on connected stream sockets, driven either by io_uring (liburing) or by a portable
// backend of plain syscalls on a few threads. The rest of the project keeps its disk and network
// I/O deep by submitting many requests and reaping completions.
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

// One asynchronous operation. The buffer must stay valid and untouched until the request's
// completion has been reaped.
//
// kRead / kWrite / kFsync work on files (and pipes) at `offset`. kSend / kRecv work on a connected
// stream socket (io/net.h); `offset` is unused for them:
//  - kSend sends all `len` bytes (MSG_NOSIGNAL: a closed peer is -EPIPE, never SIGPIPE). A short
//    send is resubmitted for the remainder, like a short write.
//  - kRecv receives up to `len` bytes: it completes as soon as some arrived. With kRecvAll in
//    `flags` it is resubmitted until `len` bytes arrived, so a result below `len` means the peer
//    closed (end of stream) first.
// Keep at most one kSend and one kRecv in flight per socket: requests run concurrently (threads)
// or are resumed independently after a short transfer (io_uring), so two sends on one socket
// could interleave their bytes on the wire. Registered buffers bring nothing to sockets:
// buf_index is checked like for files but unused.
struct Request {
  enum class Op : uint8_t { kRead, kWrite, kFsync, kSend, kRecv };
  // Bits of `flags`.
  static constexpr uint32_t kRecvAll = 1u << 0;  // kRecv only: wait for all `len` bytes

  Op op = Op::kRead;
  int fd = -1;
  uint8_t* buf = nullptr;  // unused for kFsync
  uint32_t len = 0;        // unused for kFsync
  uint64_t offset = 0;     // unused for kFsync, kSend and kRecv
  uint64_t tag = 0;        // handed back in the completion
  int buf_index = -1;      // index of a registered buffer containing `buf`, or -1
  uint32_t flags = 0;      // kRecvAll, or 0
};

struct Completion {
  uint64_t tag = 0;
  // Bytes transferred, or -errno.
  //  - kRead: fewer than `len` bytes only at end of file.
  //  - kWrite, kSend: always `len` unless it failed (kSend to a peer that went away: -EPIPE or
  //    -ECONNRESET).
  //  - kFsync: 0.
  //  - kRecv: 1..len bytes, or 0 when the peer closed (or the socket was shut down for reading)
  //    with nothing received; with kRecvAll, `len` or, at end of stream, what came before it.
  //    An error after part of the data arrived is reported as the error: the stream is broken.
  int64_t result = 0;
};

// A queue of in-flight I/O operations. One Queue per thread: not thread-safe. The io_uring
// backend binds to the first thread that hands it work to the kernel (Reap); Reap from another
// thread then fails with FailedPrecondition, and a queue with requests in flight must be
// destroyed on that thread (an idle one anywhere). Requests complete in any order. Short reads,
// writes and sends (and receives with kRecvAll) are resubmitted internally for the remainder,
// so callers never see them (except a read that reaches end of file or a receive that reaches
// end of stream).
//
// Sockets: a receive waits for the peer for as long as it takes. To bound the wait, reap with
// ReapFor(); when a peer stalls, ::shutdown(fd, SHUT_RDWR) on the socket makes its pending
// kRecv complete (0, or the bytes so far with kRecvAll) and its pending kSend fail (-EPIPE) on
// both backends, so the queue can be drained before the fd is closed. Never close an fd with
// requests in flight on it: the threads backend would keep using the number.
//
// The destructor waits for every request in flight, since the kernel may write into their
// buffers until then. On io_uring, requests that make no progress for a second (a read on an
// idle pipe or socket) are cancelled instead of waited for; the threads backend cannot cancel a
// blocked syscall, so shut down sockets with requests in flight before destroying the queue.
// The threads backend runs at most QueueOptions::threads requests at once, so on it a receive
// that waits for data occupies a worker: do not keep more requests waiting on peers than there
// are workers if a later request must run for those peers to make progress. On io_uring (with
// single_thread) a request that had to wait for its socket is carried on only while its thread
// is inside Reap()/ReapFor() of that queue: a thread must not block on one of its queues while
// it needs another of its queues to make progress (give each side its own thread).
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

  // Like Reap(), but waits at most `timeout_ms` milliseconds for `min_complete` completions and
  // then returns what has arrived, possibly fewer (0 included): a timeout is not an error. The
  // requests still in flight stay in flight. A negative timeout waits without limit (Reap);
  // 0 collects what is done without waiting. This is how a stalled peer is noticed.
  [[nodiscard]] virtual absl::StatusOr<size_t> ReapFor(absl::Span<Completion> out,
                                                       size_t min_complete, int64_t timeout_ms) = 0;

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
