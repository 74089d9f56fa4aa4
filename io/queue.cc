#include "io/queue.h"

#include <cstdint>
#include <memory>

#include "absl/strings/str_cat.h"
#include "io/internal/backends.h"
#include "io/status_macros.h"

namespace chunkferry::io {

absl::StatusOr<Backend> ParseBackend(std::string_view name) {
  if (name == "auto") return Backend::kAuto;
  if (name == "uring") return Backend::kUring;
  if (name == "threads") return Backend::kThreads;
  return absl::InvalidArgumentError(absl::StrCat("unknown io backend \"",
                                                 absl::string_view(name.data(), name.size()),
                                                 "\" (want auto, uring or threads)"));
}

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kUring:
      return "uring";
    case Backend::kThreads:
      return "threads";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Queue>> MakeQueue(const QueueOptions& options) {
  if (options.depth == 0 || options.depth > internal::kMaxDepth) {
    return absl::InvalidArgumentError(absl::StrCat("io queue depth ", options.depth,
                                                   " out of range [1, ", internal::kMaxDepth, "]"));
  }
  switch (options.backend) {
    case Backend::kUring:
      return internal::MakeUringQueue(options);
    case Backend::kThreads:
      return internal::MakeThreadQueue(options);
    case Backend::kAuto: {
      absl::StatusOr<std::unique_ptr<Queue>> queue = internal::MakeUringQueue(options);
      // Only "io_uring cannot be set up here" falls back; other errors would fail the same way
      // on the threads backend and are worth seeing.
      if (queue.ok() || !absl::IsUnavailable(queue.status())) return queue;
      return internal::MakeThreadQueue(options);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown io backend ", static_cast<int>(options.backend)));
}

absl::StatusOr<int64_t> RunOne(Queue& queue, const Request& request) {
  if (queue.in_flight() != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("RunOne needs an idle queue, ", queue.in_flight(),
                     " requests are in flight and their completions would be lost"));
  }
  CF_RETURN_IF_ERROR(queue.Submit(request));
  Completion completion;
  size_t got = 0;
  while (got == 0) {
    CF_ASSIGN_OR_RETURN(got, queue.Reap(absl::MakeSpan(&completion, 1), 1));
  }
  return completion.result;
}

namespace internal {

absl::Status ValidateRequest(const Request& request, size_t registered_buffers) {
  switch (request.op) {
    case Request::Op::kFsync:
    case Request::Op::kRead:
    case Request::Op::kWrite:
    case Request::Op::kSend:
    case Request::Op::kRecv:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown io request op ", static_cast<int>(request.op)));
  }
  const uint32_t allowed_flags = request.op == Request::Op::kRecv ? Request::kRecvAll : 0;
  if ((request.flags & ~allowed_flags) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("io request (tag ", request.tag, ") has flags 0x", absl::Hex(request.flags),
                     " not valid for op ", static_cast<int>(request.op)));
  }
  if (request.op == Request::Op::kFsync) return absl::OkStatus();
  if (request.buf == nullptr && request.len != 0) {
    return absl::InvalidArgumentError(absl::StrCat("io request (tag ", request.tag,
                                                   ") has no buffer for ", request.len, " bytes"));
  }
  if (request.buf_index < -1 ||
      (request.buf_index >= 0 && static_cast<size_t>(request.buf_index) >= registered_buffers)) {
    return absl::InvalidArgumentError(absl::StrCat("io request (tag ", request.tag,
                                                   ") names registered buffer ", request.buf_index,
                                                   " but ", registered_buffers, " are registered"));
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace chunkferry::io
