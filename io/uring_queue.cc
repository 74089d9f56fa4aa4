// The io_uring backend of io::Queue: one ring per Queue, requests batched into the submission
// queue and handed to the kernel in Reap() / ReapFor(), short transfers and EAGAIN resubmitted
// internally.
#include <errno.h>
#include <liburing.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/fd.h"
#include "io/internal/backends.h"
#include "io/queue.h"
#include "io/status_macros.h"

// liburing 2.3 knows these; older headers may not, and the kernel decides anyway.
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

namespace chunkferry::io::internal {
namespace {

// user_data of the cancel issued at shutdown; slot numbers are below kMaxDepth, and liburing
// uses UINT64_MAX for its own timeouts.
constexpr uint64_t kCancelUserData = UINT64_MAX - 1;

// How long the destructor waits without any completion before it cancels what is left.
constexpr long long kShutdownGraceSeconds = 1;

// Ring setups to try, best first. SINGLE_ISSUER | DEFER_TASKRUN (6.1+) runs completions only
// when we ask for them, on our thread, with no interrupts. R_DISABLED delays binding the ring
// to a thread until its first submission, so a queue may be made on one thread and used on
// another. SUBMIT_ALL keeps a batch going past a request that fails at submission.
constexpr unsigned kPreferredFlags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                     IORING_SETUP_R_DISABLED | IORING_SETUP_SUBMIT_ALL;
// A queue that threads take turns at cannot be bound to one of them.
constexpr unsigned kSharedFlags = IORING_SETUP_SUBMIT_ALL;
constexpr unsigned kPlainFlags = 0;

// Enables a ring set up with IORING_SETUP_R_DISABLED. liburing 2.3 declares
// io_uring_enable_rings() but its shared library does not export it, so make the syscall.
int EnableRings(const io_uring& ring) {
  const long ret =
      ::syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  return ret < 0 ? -errno : 0;
}

bool DisabledByEnvironment() {
  const char* value = std::getenv("CHUNKFERRY_DISABLE_URING");
  return value != nullptr && value[0] != '\0' && std::strcmp(value, "0") != 0;
}

// Errors from io_uring_enter that only mean "try again after reaping": a signal, or the kernel
// wanting the completion queue drained first.
bool IsTransientEnterError(int ret) {
  return ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

// io::Queue on one io_uring instance.
//
// Each request occupies a slot (its index is the SQE's user_data) from Submit() until Reap()
// hands its completion back, so the ring never holds more than depth() requests and the
// submission queue (depth rounded up to a power of two) never overflows. Nothing is allocated
// per request.
//
// Thread-safety: none; one thread at a time. With SINGLE_ISSUER the kernel binds the ring to the
// first thread that submits on it; calls from another thread then fail with FailedPrecondition.
// Destroying a queue with requests in flight must happen on that thread too, because only it
// can wait for them; elsewhere the destructor aborts rather than free memory the kernel may
// still write.
class UringQueue final : public Queue {
 public:
  static absl::StatusOr<std::unique_ptr<Queue>> Make(const QueueOptions& options);

  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;
  ~UringQueue() override;

  absl::Status Submit(const Request& request) override;
  absl::StatusOr<size_t> Reap(absl::Span<Completion> out, size_t min_complete) override;
  absl::StatusOr<size_t> ReapFor(absl::Span<Completion> out, size_t min_complete,
                                 int64_t timeout_ms) override;
  absl::Status RegisterBuffers(absl::Span<const iovec> buffers) override;
  size_t in_flight() const override { return in_flight_; }
  size_t depth() const override { return depth_; }
  Backend backend() const override { return Backend::kUring; }

 private:
  // A request and how much of it is done; `done` grows as short transfers are resubmitted.
  struct Slot {
    Request request;
    uint32_t done = 0;
    int retries = 0;  // consecutive EAGAIN/EINTR results
  };

  using Clock = std::chrono::steady_clock;

  explicit UringQueue(unsigned depth);

  // Reap() and ReapFor(): waits until `min_complete` completions are ready or, when given,
  // `deadline` has passed.
  absl::StatusOr<size_t> ReapUntil(absl::Span<Completion> out, size_t min_complete,
                                   std::optional<Clock::time_point> deadline);

  // Enables a ring set up with R_DISABLED, binding it to the calling thread. Returns -errno.
  int EnsureEnabled();
  // Returns a free SQE, submitting queued ones to make room if needed; nullptr and *err on error.
  io_uring_sqe* GetSqe(int* err);
  // Queues an SQE for what remains of the slot's request. Returns 0 or -errno.
  int Prep(uint32_t slot);
  // Handles every CQE in the completion ring.
  void DrainCqes();
  void HandleCqe(uint64_t user_data, int res);
  // Moves a finished request to the ready list and frees its slot.
  void Finish(uint32_t slot, int64_t result);
  absl::Status RingError(int err, std::string_view op) const;

  io_uring ring_{};
  bool ring_initialized_ = false;
  bool enabled_ = false;
  bool defer_taskrun_ = false;
  bool shutting_down_ = false;
  bool buffers_registered_ = false;
  size_t registered_buffers_ = 0;
  const unsigned depth_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  // Finished requests not yet reaped: a FIFO ring of capacity depth_.
  std::vector<Completion> ready_;
  size_t ready_head_ = 0;
  size_t ready_count_ = 0;
  size_t in_flight_ = 0;       // submitted and not yet reaped
  size_t kernel_pending_ = 0;  // of those, not finished yet (queued SQE or in the kernel)
};

UringQueue::UringQueue(unsigned depth)
    : depth_(depth), slots_(depth), free_slots_(depth), ready_(depth) {
  // Hand out low slot numbers first; the order does not matter otherwise.
  for (unsigned i = 0; i < depth; ++i) free_slots_[i] = depth - 1 - i;
}

absl::StatusOr<std::unique_ptr<Queue>> UringQueue::Make(const QueueOptions& options) {
  if (DisabledByEnvironment()) {
    return absl::UnavailableError(
        "io_uring unavailable: disabled by the environment (CHUNKFERRY_DISABLE_URING=1)");
  }
  const unsigned entries = std::bit_ceil(options.depth);
  std::unique_ptr<UringQueue> queue(new UringQueue(options.depth));
  int ret = -EINVAL;
  const unsigned preferred = options.single_thread ? kPreferredFlags : kSharedFlags;
  for (unsigned flags : {preferred, kPlainFlags}) {
    io_uring_params params;
    std::memset(&params, 0, sizeof(params));
    params.flags = flags;
    ret = io_uring_queue_init_params(entries, &queue->ring_, &params);
    if (ret == 0) {
      queue->ring_initialized_ = true;
      queue->enabled_ = (flags & IORING_SETUP_R_DISABLED) == 0;
      queue->defer_taskrun_ = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
      return std::unique_ptr<Queue>(std::move(queue));
    }
    // EINVAL: this kernel does not know a flag; anything else (ENOSYS, EPERM, ENOMEM) will not
    // get better with fewer flags.
    if (ret != -EINVAL) break;
  }
  return absl::UnavailableError(absl::StrCat(
      "io_uring unavailable: ",
      ErrnoStatus(-ret, "io_uring_queue_init_params", absl::StrCat("(", entries, " entries)"))
          .message()));
}

UringQueue::~UringQueue() {
  if (!ring_initialized_) return;
  if (kernel_pending_ > 0 && EnsureEnabled() == 0) {
    // The kernel may still write into the callers' buffers, so everything must finish before
    // the memory can be freed. File I/O finishes on its own (and an abandoned write still
    // lands, as on the threads backend); what makes no progress for a while, such as a read on
    // an idle pipe, is cancelled so that the destructor cannot hang on it.
    shutting_down_ = true;
    bool cancelled = false;
    while (kernel_pending_ > 0) {
      int ret;
      if (cancelled) {
        ret = io_uring_submit_and_wait(&ring_, 1);
      } else {
        __kernel_timespec grace{kShutdownGraceSeconds, 0};
        io_uring_cqe* cqe = nullptr;
        ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &grace, nullptr);
        if (ret == -ETIME) {
          int err = 0;
          if (io_uring_sqe* sqe = GetSqe(&err); sqe != nullptr) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, kCancelUserData);
          }
          cancelled = true;
          continue;
        }
      }
      if (ret < 0 && !IsTransientEnterError(ret)) {
        std::fprintf(
            stderr,
            "chunkferry::io::Queue: cannot wait for %zu in-flight io_uring requests "
            "(%s%s); aborting rather than freeing memory the kernel may still write\n",
            kernel_pending_, std::strerror(-ret),
            ret == -EEXIST ? ": queue destroyed on another thread than it was used on" : "");
        std::abort();
      }
      DrainCqes();
    }
  }
  io_uring_queue_exit(&ring_);
}

int UringQueue::EnsureEnabled() {
  if (enabled_) return 0;
  const int ret = EnableRings(ring_);
  if (ret < 0) return ret;
  enabled_ = true;
  return 0;
}

io_uring_sqe* UringQueue::GetSqe(int* err) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe != nullptr) return sqe;
  // Only the shutdown cancel can find the submission queue full (it holds >= depth_ entries);
  // make room by handing the queued entries to the kernel.
  int ret = EnsureEnabled();
  if (ret == 0) ret = io_uring_submit(&ring_);
  if (ret < 0) {
    *err = ret;
    return nullptr;
  }
  sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) *err = -EBUSY;
  return sqe;
}

int UringQueue::Prep(uint32_t slot) {
  int err = 0;
  io_uring_sqe* sqe = GetSqe(&err);
  if (sqe == nullptr) return err;
  const Slot& s = slots_[slot];
  const Request& r = s.request;
  uint8_t* buf = r.buf + s.done;
  const unsigned len = r.len - s.done;
  const uint64_t offset = r.offset + s.done;
  switch (r.op) {
    case Request::Op::kRead:
      if (r.buf_index >= 0) {
        io_uring_prep_read_fixed(sqe, r.fd, buf, len, offset, r.buf_index);
      } else {
        io_uring_prep_read(sqe, r.fd, buf, len, offset);
      }
      break;
    case Request::Op::kWrite:
      if (r.buf_index >= 0) {
        io_uring_prep_write_fixed(sqe, r.fd, buf, len, offset, r.buf_index);
      } else {
        io_uring_prep_write(sqe, r.fd, buf, len, offset);
      }
      break;
    case Request::Op::kFsync:
      io_uring_prep_fsync(sqe, r.fd, 0);
      break;
    // MSG_WAITALL makes io_uring itself carry on after a short transfer on a stream socket
    // instead of completing (it still completes early at end of stream, on shutdown or on an
    // error, with what it has: HandleCqe goes on from there). MSG_NOSIGNAL: EPIPE, not SIGPIPE.
    case Request::Op::kSend:
      io_uring_prep_send(sqe, r.fd, buf, len, MSG_NOSIGNAL | MSG_WAITALL);
      break;
    case Request::Op::kRecv:
      io_uring_prep_recv(sqe, r.fd, buf, len, (r.flags & Request::kRecvAll) != 0 ? MSG_WAITALL : 0);
      break;
  }
  io_uring_sqe_set_data64(sqe, slot);
  return 0;
}

absl::Status UringQueue::Submit(const Request& request) {
  if (in_flight_ >= depth_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "io queue full: ", in_flight_, " requests in flight (depth ", depth_, "); reap first"));
  }
  CF_RETURN_IF_ERROR(ValidateRequest(request, registered_buffers_));
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  slots_[slot] = Slot{request, 0, 0};
  if (const int err = Prep(slot); err < 0) {
    free_slots_.push_back(slot);
    return RingError(err, "io_uring_submit");
  }
  ++in_flight_;
  ++kernel_pending_;
  return absl::OkStatus();
}

void UringQueue::Finish(uint32_t slot, int64_t result) {
  ready_[(ready_head_ + ready_count_) % depth_] = Completion{slots_[slot].request.tag, result};
  ++ready_count_;
  --kernel_pending_;
  free_slots_.push_back(slot);
}

void UringQueue::HandleCqe(uint64_t user_data, int res) {
  // Also skips liburing's own timeout entries (kernels without IORING_FEAT_EXT_ARG).
  if (user_data == kCancelUserData || user_data >= depth_) return;
  const auto slot = static_cast<uint32_t>(user_data);
  Slot& s = slots_[slot];
  const Request& r = s.request;

  if (res == -EAGAIN || res == -EINTR) {
    // Nothing was transferred; go again unless we are shutting down or it never ends.
    if (!shutting_down_ && s.retries < kMaxRetries) {
      ++s.retries;
      const int err = Prep(slot);
      if (err == 0) return;
      res = err;
    }
    Finish(slot, res);
    return;
  }
  if (r.op == Request::Op::kFsync) {
    Finish(slot, res);
    return;
  }
  if (res < 0) {
    // A direct read that stopped short at end of file leaves an unaligned remainder, which
    // O_DIRECT refuses with EINVAL: that is end of file too.
    const bool direct_eof = r.op == Request::Op::kRead && s.done > 0 && res == -EINVAL;
    Finish(slot, direct_eof ? int64_t{s.done} : int64_t{res});
    return;
  }
  if (res == 0) {
    // A read or receive of 0 bytes is end of file or stream. A write or send that makes no
    // progress would loop forever.
    const bool ok = r.op == Request::Op::kRead || r.op == Request::Op::kRecv || s.done == r.len;
    Finish(slot, ok ? int64_t{s.done} : int64_t{-EIO});
    return;
  }
  s.done += static_cast<uint32_t>(res);
  s.retries = 0;
  const bool partial_ok = r.op == Request::Op::kRecv && (r.flags & Request::kRecvAll) == 0;
  if (s.done < r.len && !shutting_down_ && !partial_ok) {
    const int err = Prep(slot);
    if (err == 0) return;
    Finish(slot, err);
    return;
  }
  Finish(slot, s.done);
}

void UringQueue::DrainCqes() {
  io_uring_cqe* cqes[64];
  for (;;) {
    const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, 64);
    if (n == 0) return;
    for (unsigned i = 0; i < n; ++i) HandleCqe(cqes[i]->user_data, cqes[i]->res);
    io_uring_cq_advance(&ring_, n);
  }
}

absl::StatusOr<size_t> UringQueue::Reap(absl::Span<Completion> out, size_t min_complete) {
  return ReapUntil(out, min_complete, std::nullopt);
}

absl::StatusOr<size_t> UringQueue::ReapFor(absl::Span<Completion> out, size_t min_complete,
                                           int64_t timeout_ms) {
  if (timeout_ms < 0 || timeout_ms >= kUnboundedTimeoutMs) {
    return ReapUntil(out, min_complete, std::nullopt);
  }
  return ReapUntil(out, min_complete, Clock::now() + std::chrono::milliseconds(timeout_ms));
}

absl::StatusOr<size_t> UringQueue::ReapUntil(absl::Span<Completion> out, size_t min_complete,
                                             std::optional<Clock::time_point> deadline) {
  const size_t want = std::min({min_complete, in_flight_, out.size()});
  bool first = true;
  for (;;) {
    const bool have_sqes = io_uring_sq_ready(&ring_) > 0;
    // want <= ready + kernel_pending, so this never waits for more than can come.
    auto wait_nr = static_cast<unsigned>(ready_count_ >= want ? 0 : want - ready_count_);
    __kernel_timespec timeout{};
    bool expired = false;
    if (wait_nr > 0 && deadline.has_value()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - Clock::now());
      if (left.count() <= 0) {
        // Out of time: collect what is done without waiting, then return it.
        expired = true;
        wait_nr = 0;
      } else {
        timeout.tv_sec = left.count() / 1'000'000'000;
        timeout.tv_nsec = left.count() % 1'000'000'000;
      }
    }
    // A DEFER_TASKRUN ring posts finished work only when asked to, even when not waiting.
    const bool collect = (first || expired) && defer_taskrun_ && kernel_pending_ > 0;
    first = false;
    if (have_sqes || wait_nr > 0 || collect) {
      if (const int err = EnsureEnabled(); err < 0) return RingError(err, "io_uring_enable_rings");
      int ret;
      if (wait_nr > 0 && deadline.has_value()) {
        // -ETIME when the time is up: the next round sees the deadline passed.
        io_uring_cqe* cqe = nullptr;
        ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_nr, &timeout, nullptr);
      } else if (wait_nr > 0) {
        ret = io_uring_submit_and_wait(&ring_, wait_nr);
      } else if (defer_taskrun_) {
        ret = io_uring_submit_and_get_events(&ring_);
      } else {
        ret = io_uring_submit(&ring_);
      }
      if (ret < 0 && !IsTransientEnterError(ret)) return RingError(ret, "io_uring_enter");
    }
    DrainCqes();
    // Resubmissions made while draining go to the kernel before we return.
    if (io_uring_sq_ready(&ring_) > 0) continue;
    if (ready_count_ >= want || expired) break;
  }
  const size_t n = std::min(ready_count_, out.size());
  for (size_t i = 0; i < n; ++i) {
    out[i] = ready_[ready_head_];
    ready_head_ = (ready_head_ + 1) % depth_;
  }
  ready_count_ -= n;
  in_flight_ -= n;
  return n;
}

absl::Status UringQueue::RegisterBuffers(absl::Span<const iovec> buffers) {
  if (buffers_registered_) {
    return absl::FailedPreconditionError("io_uring buffers are already registered on this queue");
  }
  if (buffers.empty()) return absl::InvalidArgumentError("no buffers to register");
  const int ret =
      io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size()));
  if (ret == -ENOMEM) {
    return absl::ResourceExhaustedError(
        absl::StrCat("io_uring_register_buffers: cannot pin ", buffers.size(),
                     " buffers (out of memory or RLIMIT_MEMLOCK too low)"));
  }
  if (ret < 0) return RingError(ret, "io_uring_register_buffers");
  buffers_registered_ = true;
  registered_buffers_ = buffers.size();
  return absl::OkStatus();
}

absl::Status UringQueue::RingError(int err, std::string_view op) const {
  if (err == -EEXIST) {
    return absl::FailedPreconditionError(absl::StrCat(
        absl::string_view(op.data(), op.size()),
        ": io_uring queue used from a thread other than the one that first submitted on it "
        "(one Queue per thread)"));
  }
  return ErrnoStatus(-err, op, absl::StrCat("io_uring fd ", ring_.ring_fd));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Queue>> MakeUringQueue(const QueueOptions& options) {
  return UringQueue::Make(options);
}

}  // namespace chunkferry::io::internal
