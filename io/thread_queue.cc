// The portable backend of io::Queue: plain pread/pwrite/fsync/send/recv on a few worker threads,
// for kernels and sandboxes where io_uring cannot be set up, and for tests.
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/internal/backends.h"
#include "io/queue.h"
#include "io/status_macros.h"

namespace chunkferry::io::internal {
namespace {

// A FIFO of fixed capacity; it never allocates after construction. Not thread-safe.
template <typename T>
class FixedFifo {
 public:
  explicit FixedFifo(size_t capacity) : items_(capacity) {}
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The caller keeps size() below the capacity (the queue depth bounds it).
  void Push(const T& item) {
    items_[(head_ + count_) % items_.size()] = item;
    ++count_;
  }
  T Pop() {
    T item = items_[head_];
    head_ = (head_ + 1) % items_.size();
    --count_;
    return item;
  }

 private:
  std::vector<T> items_;
  size_t head_ = 0;
  size_t count_ = 0;
};

// Runs a read or write to the end: retries short transfers, EINTR and (a bounded number of
// times) EAGAIN. Pipes and sockets, where pread/pwrite fail with ESPIPE, are served by
// read/write so that both backends accept the same descriptors. Returns bytes or -errno.
int64_t Transfer(const Request& r) {
  const bool is_read = r.op == Request::Op::kRead;
  bool stream = false;
  uint32_t done = 0;
  int retries = 0;
  while (done < r.len) {
    uint8_t* buf = r.buf + done;
    const size_t len = r.len - done;
    const auto offset = static_cast<off_t>(r.offset + done);
    ssize_t n;
    if (stream) {
      n = is_read ? ::read(r.fd, buf, len) : ::write(r.fd, buf, len);
    } else {
      n = is_read ? ::pread(r.fd, buf, len, offset) : ::pwrite(r.fd, buf, len, offset);
    }
    if (n < 0) {
      const int err = errno;
      if (err == ESPIPE && !stream) {
        stream = true;
        continue;
      }
      if ((err == EINTR || err == EAGAIN) && retries < kMaxRetries) {
        ++retries;
        continue;
      }
      // A direct read that stopped short at end of file leaves an unaligned remainder, which
      // O_DIRECT refuses with EINVAL: that is end of file too.
      if (is_read && done > 0 && err == EINVAL) break;
      return -err;
    }
    if (n == 0) {
      if (is_read) break;  // end of file
      return -EIO;         // a write that makes no progress would loop forever
    }
    done += static_cast<uint32_t>(n);
    retries = 0;
  }
  return done;
}

// Sends all of a kSend request, retrying short sends, EINTR and (a bounded number of times)
// EAGAIN. MSG_NOSIGNAL: a peer that went away is -EPIPE, not a SIGPIPE that kills the process.
// Returns bytes or -errno.
int64_t SendAll(const Request& r) {
  uint32_t done = 0;
  int retries = 0;
  while (done < r.len) {
    const ssize_t n = ::send(r.fd, r.buf + done, r.len - done, MSG_NOSIGNAL);
    if (n < 0) {
      const int err = errno;
      if ((err == EINTR || err == EAGAIN) && retries < kMaxRetries) {
        ++retries;
        continue;
      }
      return -err;
    }
    if (n == 0) return -EIO;  // no progress would loop forever
    done += static_cast<uint32_t>(n);
    retries = 0;
  }
  return done;
}

// Receives a kRecv request: what one recv(2) returns, or with kRecvAll everything up to `len`
// or end of stream (MSG_WAITALL saves most of the loop; it still returns early on a signal or
// shutdown). Returns bytes (0: end of stream) or -errno.
int64_t Receive(const Request& r) {
  const bool all = (r.flags & Request::kRecvAll) != 0;
  uint32_t done = 0;
  int retries = 0;
  while (done < r.len) {
    const ssize_t n = ::recv(r.fd, r.buf + done, r.len - done, all ? MSG_WAITALL : 0);
    if (n < 0) {
      const int err = errno;
      if ((err == EINTR || err == EAGAIN) && retries < kMaxRetries) {
        ++retries;
        continue;
      }
      return -err;
    }
    if (n == 0) break;  // end of stream
    done += static_cast<uint32_t>(n);
    retries = 0;
    if (!all) break;
  }
  return done;
}

int64_t Execute(const Request& r) {
  switch (r.op) {
    case Request::Op::kRead:
    case Request::Op::kWrite:
      return Transfer(r);
    case Request::Op::kSend:
      return SendAll(r);
    case Request::Op::kRecv:
      return Receive(r);
    case Request::Op::kFsync:
      break;
  }
  int rc;
  do {
    rc = ::fsync(r.fd);
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : -errno;
}

// io::Queue served by worker threads. Submit() hands requests to the workers at once; Reap()
// blocks on a condition variable until enough have finished (ReapFor() for a bounded time).
//
// Thread-safety: Submit, Reap and the accessors are for one thread at a time (like every
// Queue); the workers share only the two FIFOs, under mu_. The destructor lets the workers
// finish every submitted request (blocking calls included), then joins them.
class ThreadQueue final : public Queue {
 public:
  ThreadQueue(unsigned depth, unsigned threads) : depth_(depth), pending_(depth), done_(depth) {
    const unsigned n = std::max(1u, std::min(threads, depth));
    workers_.reserve(n);
    for (unsigned i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }
  ThreadQueue(const ThreadQueue&) = delete;
  ThreadQueue& operator=(const ThreadQueue&) = delete;

  ~ThreadQueue() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  absl::Status Submit(const Request& request) override {
    if (in_flight_ >= depth_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "io queue full: ", in_flight_, " requests in flight (depth ", depth_, "); reap first"));
    }
    CF_RETURN_IF_ERROR(ValidateRequest(request, registered_buffers_));
    {
      std::lock_guard lock(mu_);
      pending_.Push(request);
    }
    work_cv_.notify_one();
    ++in_flight_;
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> Reap(absl::Span<Completion> out, size_t min_complete) override {
    return ReapFor(out, min_complete, -1);
  }

  absl::StatusOr<size_t> ReapFor(absl::Span<Completion> out, size_t min_complete,
                                 int64_t timeout_ms) override {
    const size_t want = std::min({min_complete, in_flight_, out.size()});
    std::unique_lock lock(mu_);
    const auto enough = [&] { return done_.size() >= want; };
    if (timeout_ms < 0 || timeout_ms >= kUnboundedTimeoutMs) {
      done_cv_.wait(lock, enough);
    } else {
      done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), enough);
    }
    const size_t n = std::min(done_.size(), out.size());
    for (size_t i = 0; i < n; ++i) out[i] = done_.Pop();
    in_flight_ -= n;
    return n;
  }

  absl::Status RegisterBuffers(absl::Span<const iovec> buffers) override {
    // Nothing to register with plain syscalls; remember the count so that a bad buf_index is
    // refused here as it would be on io_uring.
    if (buffers_registered_) {
      return absl::FailedPreconditionError("io buffers are already registered on this queue");
    }
    if (buffers.empty()) return absl::InvalidArgumentError("no buffers to register");
    buffers_registered_ = true;
    registered_buffers_ = buffers.size();
    return absl::OkStatus();
  }

  size_t in_flight() const override { return in_flight_; }
  size_t depth() const override { return depth_; }
  Backend backend() const override { return Backend::kThreads; }

 private:
  void WorkerLoop() {
    for (;;) {
      Request request;
      {
        std::unique_lock lock(mu_);
        work_cv_.wait(lock, [&] { return !pending_.empty() || stopping_; });
        // Stop only once the submitted work is done: callers' buffers must not be written
        // after the queue is gone.
        if (pending_.empty()) return;
        request = pending_.Pop();
      }
      const Completion completion{request.tag, Execute(request)};
      {
        std::lock_guard lock(mu_);
        done_.Push(completion);
      }
      done_cv_.notify_one();
    }
  }

  const unsigned depth_;
  size_t in_flight_ = 0;  // submitted and not yet reaped; owner thread only
  bool buffers_registered_ = false;
  size_t registered_buffers_ = 0;

  // std::mutex rather than absl::Mutex: Debian's Abseil is not built for ThreadSanitizer, which
  // then cannot see absl::Mutex synchronise; pthread-based locks it understands.
  std::mutex mu_;
  std::condition_variable work_cv_;  // pending_ became non-empty, or stopping_
  std::condition_variable done_cv_;  // done_ grew
  FixedFifo<Request> pending_;       // guarded by mu_
  FixedFifo<Completion> done_;       // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Queue>> MakeThreadQueue(const QueueOptions& options) {
  if (options.threads == 0) {
    return absl::InvalidArgumentError("io queue needs at least one thread");
  }
  return std::unique_ptr<Queue>(new ThreadQueue(options.depth, options.threads));
}

}  // namespace chunkferry::io::internal
