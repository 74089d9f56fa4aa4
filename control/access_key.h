// Access-key authentication as the platform does it (../shared/api/PLATFORM-CLIENT.md, §2):
// `Authorization: ZStack <keyId>:<signature>` and a `Date` header, the signature the Base64 of
// HMAC-SHA1, keyed with the key's secret, over "<METHOD>\n<Date as sent>\n/v1<path>" (the path
// without the /zstack context and without the query string). Checked in the platform's order
// with its answers (plain-text 400s and 403s), in constant time where a secret is involved.
//
// Keys live in a file the registry names (`accessKeys.file`), private to its owner like every
// secret here, one per line:
//
//   # id                    secret                                     state (optional)
//   AKIDEXAMPLE             secret-example                             enabled
//   AKIDOLD                 7f0c…                                      disabled
#ifndef CHUNKFERRY_CONTROL_ACCESS_KEY_H_
#define CHUNKFERRY_CONTROL_ACCESS_KEY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace chunkferry::control {

struct AccessKey {
  std::string id;      // 1-128 of [A-Za-z0-9._-]
  std::string secret;  // 1-256 printable ASCII characters, no spaces
  bool enabled = true;
};

struct AccessKeys {
  std::vector<AccessKey> keys;
  // The platform's rest.checkTimeZone (default false): compare the Date's wall-clock digits with
  // the server's own local time, ignoring the zone written (as the platform does by default), or
  // (true) compare real instants.
  bool check_time_zone = false;
  absl::TimeZone server_zone = absl::UTCTimeZone();  // the registry's time zone

  // nullptr when no key has `id` (compared in constant time per key).
  const AccessKey* Find(absl::string_view id) const;
};

// The platform's skew window, inclusive (REQUEST_DURATION_MINUTES).
inline constexpr absl::Duration kAllowedSkew = absl::Minutes(15);

// Parses an access-key file; InvalidArgument naming `origin`, the line and what is wrong.
[[nodiscard]] absl::StatusOr<std::vector<AccessKey>> ParseAccessKeyFile(absl::string_view text,
                                                                        absl::string_view origin);
// Reads and parses the file at `path`; PermissionDenied when group or others may access it.
[[nodiscard]] absl::StatusOr<std::vector<AccessKey>> LoadAccessKeyFile(const std::string& path);

// The signature a client sends for this request (28 characters of Base64).
std::string AccessKeySignature(absl::string_view secret, absl::string_view method,
                               absl::string_view date, absl::string_view signed_path);

// The outcome of an access-key request's check: status 0 when accepted (key_id says by whom),
// else the HTTP status and plain-text body the platform answers.
struct AccessKeyAnswer {
  int status = 0;
  std::string text;
  std::string key_id;
};
// `credential` is what follows "ZStack " in Authorization; `date` the Date header (nullptr when
// absent); `path` the request's decoded path (with /zstack, without the query).
AccessKeyAnswer CheckAccessKey(const AccessKeys& keys, absl::string_view method,
                               absl::string_view path, absl::string_view credential,
                               const std::string* date, absl::Time now);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_ACCESS_KEY_H_
