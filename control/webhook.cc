#include "control/webhook.h"

#include <httplib.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace chunkferry::control {
namespace {

// "http://" or "https://" and the rest; false for any other scheme.
bool SplitScheme(absl::string_view url, bool& https, absl::string_view& rest) {
  if (absl::StartsWith(url, "https://")) {
    https = true;
    rest = url.substr(8);
    return true;
  }
  if (absl::StartsWith(url, "http://")) {
    https = false;
    rest = url.substr(7);
    return true;
  }
  return false;
}

// A path segment "." or ".." (also percent-encoded), which a receiver resolves to leave the
// allowed prefix.
bool HasDotSegment(absl::string_view path) {
  const absl::string_view no_query = path.substr(0, path.find('?'));
  for (absl::string_view seg : absl::StrSplit(no_query, '/')) {
    std::string lower = absl::AsciiStrToLower(seg);
    absl::StrReplaceAll({{"%2e", "."}}, &lower);
    if (lower == "." || lower == "..") return true;
  }
  return false;
}

absl::Status CheckShape(absl::string_view what, absl::string_view url, bool is_prefix) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", url, "\" ", why));
  };
  if (url.size() > 2048) return absl::InvalidArgumentError(absl::StrCat(what, " is too long"));
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return bad("holds a space or a character that is not printable");
    if (c == '\\' || c == '@' || c == '#') {
      return bad("holds '\\', '@' (user info) or '#' (a fragment)");
    }
    if (is_prefix && c == '?') return bad("holds a query ('?')");
  }
  bool https = false;
  absl::string_view rest;
  if (!SplitScheme(url, https, rest)) return bad("is not an http:// or https:// URL");
  const size_t slash = rest.find('/');
  const absl::string_view authority = rest.substr(0, std::min(slash, rest.find('?')));
  if (authority.empty()) return bad("names no host");
  if (slash == absl::string_view::npos) {
    // A prefix must end its host with "/": "http://10.0.0.5" would allow "http://10.0.0.5.evil/".
    if (is_prefix) return bad("must have a path after the host, at least \"/\"");
  } else if (HasDotSegment(rest.substr(slash))) {
    return bad("holds a \".\" or \"..\" path segment");
  } else if (const std::string lower = absl::AsciiStrToLower(url);
             absl::StrContains(lower, "%2f") || absl::StrContains(lower, "%5c")) {
    // Encoded separators, which some receivers decode before resolving dot segments.
    return bad("holds an encoded '/' or '\\'");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckWebhookPrefix(absl::string_view prefix) {
  return CheckShape("the webhook prefix", prefix, /*is_prefix=*/true);
}

absl::Status CheckWebhookUrl(const WebhookPolicy& policy, absl::string_view url) {
  if (policy.allow.empty()) {
    return absl::InvalidArgumentError(
        "this server sends no webhooks: the registry allows none (\"webhooks\": {\"allow\": "
        "[URL prefixes]}); poll the job's location instead");
  }
  absl::Status shape = CheckShape("X-Web-Hook", url, /*is_prefix=*/false);
  if (!shape.ok()) return shape;
  for (const std::string& prefix : policy.allow) {
    if (absl::StartsWith(url, prefix)) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "X-Web-Hook \"", url, "\" is not under a prefix the registry allows for webhooks"));
}

std::string WebhookOrigin(absl::string_view url) {
  bool https = false;
  absl::string_view rest;
  if (!SplitScheme(url, https, rest)) return "(not a URL)";
  return absl::StrCat(https ? "https://" : "http://", rest.substr(0, rest.find_first_of("/?")));
}

WebhookSender::WebhookSender(WebhookSenderOptions options) : options_(std::move(options)) {
  const size_t n = std::max<size_t>(options_.threads, 1);
  for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { SenderLoop(); });
}

WebhookSender::~WebhookSender() { Shutdown(); }

void WebhookSender::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

bool WebhookSender::Send(const WebhookPolicy& policy, WebhookCall call, bool best_effort) {
  const std::string job = call.job_uuid.substr(0, 8);
  const size_t room = best_effort ? options_.max_waiting / 2 : options_.max_waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && due_.size() < room) {
      due_.emplace(Clock::now(), Delivery{policy, std::move(call), 0});
      cv_.notify_one();
      return true;
    }
  }
  Log(absl::StrCat("webhook job ", job,
                   "... not sent: ", "the queue of callbacks is full or the server is stopping"));
  return false;
}

void WebhookSender::Shutdown() {
  std::vector<std::thread> threads;
  size_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped = due_.size();
    given_up_ += dropped;
    due_.clear();
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
  if (dropped > 0) Log(absl::StrCat("webhook: ", dropped, " callbacks dropped at shutdown"));
}

uint64_t WebhookSender::delivered() const {
  std::lock_guard<std::mutex> lock(mu_);
  return delivered_;
}

uint64_t WebhookSender::given_up() const {
  std::lock_guard<std::mutex> lock(mu_);
  return given_up_;
}

void WebhookSender::SenderLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_) return;
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const Clock::time_point when = due_.begin()->first;
    if (Clock::now() < when) {
      cv_.wait_until(lock, when);
      continue;
    }
    Delivery d = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    lock.unlock();
    ++d.tried;
    const std::string why = Attempt(d);
    const std::string label = absl::StrCat("webhook job ", d.call.job_uuid.substr(0, 8), "... to ",
                                           WebhookOrigin(d.call.url));
    lock.lock();
    if (why.empty()) {
      ++delivered_;
      lock.unlock();
      Log(absl::StrCat(label, " delivered (try ", d.tried, ")"));
      lock.lock();
    } else if (d.tried >= d.policy.attempts || stopping_) {
      ++given_up_;
      lock.unlock();
      Log(absl::StrCat(label, " given up after ", d.tried, " tries: ", why));
      lock.lock();
    } else {
      const auto retry_at = Clock::now() + std::chrono::milliseconds(d.policy.retry_interval_ms);
      due_.emplace(retry_at, std::move(d));
      // Another thread may be waiting for a later deadline than this one.
      cv_.notify_one();
    }
  }
}

void PendingWebhook::Answered() {
  std::optional<WebhookCall> call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    answered_ = true;
    call.swap(call_);
  }
  if (call.has_value()) sender_.Send(policy_, *std::move(call), best_effort_);
}

void PendingWebhook::Finished(WebhookCall call) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!answered_) {
      call_ = std::move(call);
      return;
    }
  }
  sender_.Send(policy_, std::move(call), best_effort_);
}

std::string WebhookSender::Attempt(const Delivery& d) const {
  bool https = false;
  absl::string_view rest;
  if (!SplitScheme(d.call.url, https, rest)) return "not an http(s) URL";
  const size_t slash = rest.find_first_of("/?");
  const std::string origin(absl::StrCat(https ? "https://" : "http://", rest.substr(0, slash)));
  // The path and query as sent; "/" before a bare query ("http://h?x").
  const absl::string_view tail = slash == absl::string_view::npos ? "" : rest.substr(slash);
  const std::string target = absl::StrCat(absl::StartsWith(tail, "/") ? "" : "/", tail);

  httplib::Client client(origin);
  const auto timeout = std::chrono::milliseconds(d.policy.timeout_ms);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  if (https && !d.policy.tls_ca.empty()) client.set_ca_cert_path(d.policy.tls_ca.c_str());
  const httplib::Headers headers = {{"X-Job-UUID", d.call.job_uuid},
                                    {"X-Job-Success", d.call.success ? "true" : "false"}};
  httplib::Result r =
      client.Post(target.c_str(), headers, d.call.body, "application/json; charset=utf-8");
  if (!r) return absl::StrCat("no answer (", httplib::to_string(r.error()), ")");
  if (r->status < 200 || r->status > 299) return absl::StrCat("answered ", r->status);
  return std::string();
}

}  // namespace chunkferry::control
