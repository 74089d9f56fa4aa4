// Live sessions: asks the platform's management node whether an OAuth session is valid, with its
// own ValidateSession call (`GET /zstack/v1/accounts/sessions/{uuid}/valid`, no Authorization,
// always 200 {"valid": true|false}; ../shared/api/PLATFORM-CLIENT.md §3), and remembers each
// answer for a few seconds, valid and invalid alike, so that a caller's polls and a flood of
// made-up sessions cost the management node one question per session per period.
//
// A management node that does not answer, or answers anything else, is an error — never a valid
// session. Questions in flight at once are bounded; a session that is not a platform session uuid
// (32 lowercase hex) is invalid without asking.
#ifndef CHUNKFERRY_CONTROL_SESSION_VALIDATOR_H_
#define CHUNKFERRY_CONTROL_SESSION_VALIDATOR_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"

namespace chunkferry::control {

struct ManagementNode {
  std::string url;  // "http://HOST:PORT" or "https://HOST:PORT" (the platform's REST base)
  int64_t timeout_ms = 5'000;  // connect, send and receive, each
  int64_t cache_seconds = 10;  // how long an answer is reused
  std::string tls_ca;          // https: CA file to check the node by; empty: the system's
};

class SessionValidator {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  static constexpr size_t kMaxCached = 4096;
  static constexpr size_t kMaxInFlight = 8;

  // `clock`: for the cache's expiry (tests); empty: steady_clock.
  explicit SessionValidator(ManagementNode node, Clock clock = nullptr);

  // true or false, as the management node said (now, or within cache_seconds); DeadlineExceeded
  // when it did not answer in time (or too many questions were waiting), Unavailable when it
  // could not be reached or answered something else.
  [[nodiscard]] absl::StatusOr<bool> Validate(const std::string& session);

  const ManagementNode& node() const { return node_; }
  // Questions asked of the management node so far (tests).
  uint64_t asked() const;

 private:
  struct Cached {
    bool valid;
    std::chrono::steady_clock::time_point expires;
  };
  absl::StatusOr<bool> Ask(const std::string& session) const;
  void Remember(const std::string& session, bool valid);

  const ManagementNode node_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::condition_variable slot_free_;
  size_t in_flight_ = 0;
  uint64_t asked_ = 0;
  std::unordered_map<std::string, Cached> cache_;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_SESSION_VALIDATOR_H_
