// Who an API request comes from, decided from its Authorization (and Date) headers as the
// platform decides (../shared/api/PLATFORM-CLIENT.md §2, §3): `OAuth <session>` — a session of the
// registry's static list, else one the management node says is valid — or
// `ZStack <keyId>:<signature>` with a Date, an access key of the registry.
//
// Three outcomes, as on the platform: a request the server cannot read (no Authorization, another
// scheme, any access-key refusal) is answered at once with a plain-text 400 or 403; a session the
// platform would not accept lets the call fail with ID.1001 (for a job: 202, then the poll says
// so); an accepted caller runs the call.
#ifndef CHUNKFERRY_CONTROL_CALLER_H_
#define CHUNKFERRY_CONTROL_CALLER_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "control/api_error.h"
#include "control/registry.h"

namespace chunkferry::control {

struct Caller {
  int http_status = 0;  // nonzero: answer this at once, with `http_text` as a plain-text body
  std::string http_text;
  // Who calls, for per-caller job limits and logs: the session, or "accesskey:<id>".
  std::string principal;
  // The call fails with this instead of running: ID.1001 for a session not accepted, SYS.1001 or
  // SYS.1006 when the management node could not say.
  std::optional<ApiError> refusal;

  bool accepted() const { return http_status == 0 && !refusal.has_value(); }
};

// `authorization` and `date` are the headers (nullptr when absent); `path` the decoded request
// path (with /zstack, without the query).
Caller IdentifyCaller(const Registry& registry, absl::string_view method, absl::string_view path,
                      const std::string* authorization, const std::string* date, absl::Time now);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_CALLER_H_
