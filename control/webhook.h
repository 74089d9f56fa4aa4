// Webhooks: when a job-mode call named one (`X-Web-Hook: <url>`), the job's result is POSTed to
// that URL once the job ends, as the platform's management node does
// (../shared/api/PLATFORM-CLIENT.md §1): `Content-Type: application/json; charset=utf-8`,
// `X-Job-UUID`, `X-Job-Success: true|false`, the body the job's poll would answer (the result, or
// `{"error": …}`); any 2xx is delivered, anything else is retried after an interval, up to a
// number of attempts, each bounded by a timeout.
//
// A webhook is an outbound request whose destination an API caller chooses, so it is refused
// unless the URL starts with one of the registry's allowed prefixes (none by default): the server
// must not be a way to reach whatever its network can. Deliveries are bounded too: a few sender
// threads, a bounded queue, retries waiting in that queue rather than in a thread.
#ifndef CHUNKFERRY_CONTROL_WEBHOOK_H_
#define CHUNKFERRY_CONTROL_WEBHOOK_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace chunkferry::control {

struct WebhookPolicy {
  // URL prefixes a webhook may start with, each "http[s]://HOST[:PORT]/..." (the path at least
  // "/"); empty: every webhook is refused.
  std::vector<std::string> allow;
  int attempts = 15;                 // the platform's: 15 tries,
  int64_t retry_interval_ms = 2000;  // 2 s apart,
  int64_t timeout_ms = 10'000;       // each with 10 s to connect, send and read (OkHttp's)
  std::string tls_ca;                // https: CA file the receiver is checked by; empty: system's
};

// OK when `url` may be called back: an absolute http(s) URL of printable ASCII without user info
// ('@'), fragment, backslash or dot segments (which would let a URL leave its prefix), starting
// with one of `policy.allow`. InvalidArgument saying why not.
[[nodiscard]] absl::Status CheckWebhookUrl(const WebhookPolicy& policy, absl::string_view url);

// Checks an allowed prefix as the registry reads it: "http[s]://HOST[:PORT]/" then a path
// without '?', '#', '@', spaces or dot segments. InvalidArgument saying why not.
[[nodiscard]] absl::Status CheckWebhookPrefix(absl::string_view prefix);

struct WebhookCall {
  std::string url;       // checked by CheckWebhookUrl
  std::string job_uuid;  // X-Job-UUID
  bool success = false;  // X-Job-Success
  std::string body;      // JSON
};

struct WebhookSenderOptions {
  size_t threads = 4;         // callbacks sent at once
  size_t max_waiting = 1024;  // callbacks held (waiting for a first try or a retry)
  std::function<void(const std::string&)> log = nullptr;  // one line per delivery; empty: none
};

// Thread-safe. Sends callbacks on threads of its own; a callback that fails waits for its retry
// in the queue, not in a thread.
class WebhookSender {
 public:
  explicit WebhookSender(WebhookSenderOptions options);
  ~WebhookSender();  // Shutdown()
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Queues `call` under `policy` (attempts, interval, timeout, CA). False (and logged) when the
  // queue is full or the sender is shutting down: the result stays pollable. `best_effort`
  // calls are refused once the queue is half full, so that they cannot crowd out the others.
  bool Send(const WebhookPolicy& policy, WebhookCall call, bool best_effort = false);

  // Drops the callbacks waiting (logged) and waits for the tries in progress. Idempotent.
  void Shutdown();

  // Counts so far (tests and logs).
  uint64_t delivered() const;
  uint64_t given_up() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Delivery {
    WebhookPolicy policy;
    WebhookCall call;
    int tried = 0;
  };
  void SenderLoop();
  // One POST: empty on a 2xx, else why not.
  std::string Attempt(const Delivery& d) const;
  void Log(const std::string& line) const;

  const WebhookSenderOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::multimap<Clock::time_point, Delivery> due_;  // by when each may be tried
  uint64_t delivered_ = 0;
  uint64_t given_up_ = 0;
  std::vector<std::thread> threads_;
};

// A callback sent once two things happened, in either order: the job's result is known
// (Finished), and the answer that names the job has been written (Answered). The platform's SDK
// misses a callback that arrives before its 202 (it then waits out its whole timeout), so the
// earlier of the two only marks itself done. Thread-safe; each is called once.
class PendingWebhook {
 public:
  PendingWebhook(WebhookSender& sender, WebhookPolicy policy, bool best_effort)
      : sender_(sender), policy_(std::move(policy)), best_effort_(best_effort) {}
  void Answered();
  void Finished(WebhookCall call);

 private:
  WebhookSender& sender_;
  const WebhookPolicy policy_;
  const bool best_effort_;
  std::mutex mu_;
  bool answered_ = false;
  std::optional<WebhookCall> call_;  // finished before the answer was written
};

// Where a URL is sent, for logs: "scheme://host[:port]" without its path or query (which may
// carry a token of the receiver).
std::string WebhookOrigin(absl::string_view url);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_WEBHOOK_H_
