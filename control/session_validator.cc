#include "control/session_validator.h"

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/format/volume_backup.h"

namespace chunkferry::control {

SessionValidator::SessionValidator(ManagementNode node, Clock clock)
    : node_(std::move(node)),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

uint64_t SessionValidator::asked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return asked_;
}

absl::StatusOr<bool> SessionValidator::Validate(const std::string& session) {
  // Only a platform session can be one; anything else would also be a path to inject.
  if (!engine::IsValidUuid(session)) return false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto it = cache_.find(session); it != cache_.end() && it->second.expires > clock_()) {
      return it->second.valid;
    }
    if (!slot_free_.wait_for(lock, std::chrono::milliseconds(node_.timeout_ms),
                             [this] { return in_flight_ < kMaxInFlight; })) {
      return absl::DeadlineExceededError(
          absl::StrCat("too many sessions waiting for the management node at ", node_.url));
    }
    ++in_flight_;
    ++asked_;
  }
  absl::StatusOr<bool> answer = Ask(session);
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
  }
  slot_free_.notify_one();
  if (answer.ok()) Remember(session, *answer);
  return answer;
}

absl::StatusOr<bool> SessionValidator::Ask(const std::string& session) const {
  httplib::Client client(node_.url);
  const auto timeout = std::chrono::milliseconds(node_.timeout_ms);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  if (!node_.tls_ca.empty()) client.set_ca_cert_path(node_.tls_ca.c_str());
  client.enable_server_certificate_verification(true);
  const std::string path = absl::StrCat("/zstack/v1/accounts/sessions/", session, "/valid");
  httplib::Result r = client.Get(path.c_str());
  const std::string where = absl::StrCat("the management node at ", node_.url);
  if (!r) {
    const std::string why = httplib::to_string(r.error());
    if (r.error() == httplib::Error::Read || r.error() == httplib::Error::ConnectionTimeout) {
      return absl::DeadlineExceededError(absl::StrCat(
          where, " did not answer ValidateSession within ", node_.timeout_ms, " ms (", why, ")"));
    }
    return absl::UnavailableError(absl::StrCat("cannot ask ", where, " (", why, ")"));
  }
  if (r->status != 200) {
    return absl::UnavailableError(
        absl::StrCat(where, " answered ValidateSession with HTTP ", r->status));
  }
  const nlohmann::json body = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("valid") || !body["valid"].is_boolean()) {
    return absl::UnavailableError(
        absl::StrCat(where, " answered ValidateSession without a boolean \"valid\""));
  }
  return body["valid"].get<bool>();
}

void SessionValidator::Remember(const std::string& session, bool valid) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = clock_();
  if (cache_.size() >= kMaxCached) {
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second.expires <= now ? cache_.erase(it) : std::next(it);
    }
    if (cache_.size() >= kMaxCached) return;  // a flood: answer it, do not remember it
  }
  cache_[session] = Cached{valid, now + std::chrono::seconds(node_.cache_seconds)};
}

}  // namespace chunkferry::control
