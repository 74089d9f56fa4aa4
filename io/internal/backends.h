// The two Queue implementations behind MakeQueue, and what they share. Not API: only io/ may
// include this.
#ifndef CHUNKFERRY_IO_INTERNAL_BACKENDS_H_
#define CHUNKFERRY_IO_INTERNAL_BACKENDS_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/queue.h"

namespace chunkferry::io::internal {

// The io_uring limit on submission queue entries (IORING_MAX_ENTRIES); both backends use it as
// the largest depth so that a program behaves the same on either.
inline constexpr unsigned kMaxDepth = 32768;

// How many times in a row a transfer is retried after EAGAIN/EINTR without progress before the
// error is reported; bounds the spin on a descriptor that will never be ready.
inline constexpr int kMaxRetries = 1000;

// ReapFor timeouts from this many milliseconds up (about 35 years) wait without limit, like a
// negative one, so that adding them to a clock cannot overflow.
inline constexpr int64_t kUnboundedTimeoutMs = int64_t{1} << 40;

// Makes an io_uring queue. Returns Unavailable when io_uring cannot be set up (old kernel,
// seccomp, kernel.io_uring_disabled, CHUNKFERRY_DISABLE_URING=1) so that kAuto can fall back.
// `options` has been validated by MakeQueue.
absl::StatusOr<std::unique_ptr<Queue>> MakeUringQueue(const QueueOptions& options);

// Makes a queue served by options.threads worker threads (at most options.depth are started).
absl::StatusOr<std::unique_ptr<Queue>> MakeThreadQueue(const QueueOptions& options);

// Checks what both backends require of a request before it is queued: a known op, flags that
// op accepts, a buffer for transfers, and a buf_index below `registered_buffers` (or -1).
absl::Status ValidateRequest(const Request& request, size_t registered_buffers);

}  // namespace chunkferry::io::internal

#endif  // CHUNKFERRY_IO_INTERNAL_BACKENDS_H_
