#include "control/caller.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "control/access_key.h"
#include "control/session_validator.h"

namespace chunkferry::control {
namespace {

constexpr absl::string_view kOAuth = "OAuth";
constexpr absl::string_view kZStack = "ZStack";
// The platform's details for ID.1001 (SRV.Session checkSessionExpired).
constexpr char kSessionExpired[] = "Session expired";

// `value` begins with `scheme` as a word: "OAuth x", "OAuth" alone.
bool HasScheme(absl::string_view value, absl::string_view scheme) {
  return absl::StartsWithIgnoreCase(value, scheme) &&
         (value.size() == scheme.size() ||
          absl::ascii_isspace(static_cast<unsigned char>(value[scheme.size()])));
}

Caller Answer(int status, std::string text) {
  Caller c;
  c.http_status = status;
  c.http_text = std::move(text);
  return c;
}

Caller Refused(ApiError error) {
  Caller c;
  c.refusal = std::move(error);
  return c;
}

Caller Session(const Registry& registry, const std::string& session) {
  Caller accepted;
  accepted.principal = session;
  if (registry.HasSession(session)) return accepted;
  if (registry.management_node == nullptr) {
    return Refused(MakeError(kIdInvalidSession, kSessionExpired));
  }
  absl::StatusOr<bool> valid = registry.management_node->Validate(session);
  if (!valid.ok()) {
    // Never taken for a valid session: the call fails, and says why.
    return Refused(
        MakeError(absl::IsDeadlineExceeded(valid.status()) ? kSysTimeout : kSysOperationFailed,
                  absl::StrCat("cannot check the session: ", valid.status().message())));
  }
  if (!*valid) return Refused(MakeError(kIdInvalidSession, kSessionExpired));
  return accepted;
}

}  // namespace

Caller IdentifyCaller(const Registry& registry, absl::string_view method, absl::string_view path,
                      const std::string* authorization, const std::string* date, absl::Time now) {
  // The platform's texts: its SDK hands them to the caller as the details of sdk.1000.
  if (authorization == nullptr) return Answer(400, "missing header 'Authorization'");
  const absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  if (HasScheme(value, kOAuth)) {
    // Whatever follows is the session, "null" and nonsense included: the platform passes it on,
    // and the call fails with ID.1001.
    return Session(registry, std::string(absl::StripAsciiWhitespace(value.substr(kOAuth.size()))));
  }
  if (HasScheme(value, kZStack)) {
    const AccessKeyAnswer a =
        CheckAccessKey(registry.access_keys, method, path,
                       absl::StripAsciiWhitespace(value.substr(kZStack.size())), date, now);
    if (a.status != 0) return Answer(a.status, a.text);
    Caller accepted;
    accepted.principal = absl::StrCat("accesskey:", a.key_id);
    return accepted;
  }
  return Answer(400, "Authorization type must be 'OAuth'");
}

}  // namespace chunkferry::control
