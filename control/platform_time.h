// Time as the platform's clients write it and its management node reads it
// (../shared/api/PLATFORM-CLIENT.md, §2 "The Date value"): the `Date` header of an access-key
// request, "EEE, dd MMM yyyy HH:mm:ss z" in English with the zone written as an ID
// ("Wed, 02 Dec 2026 15:15:49 Asia/Shanghai", "… 07:15:50 UTC", "… GMT"), and the zones those IDs
// name.
#ifndef CHUNKFERRY_CONTROL_PLATFORM_TIME_H_
#define CHUNKFERRY_CONTROL_PLATFORM_TIME_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace chunkferry::control {

// The zone an ID names, as the platform's Java server parses a zone text: an IANA region ID in
// any letter case ("Asia/Shanghai", "asia/shanghai", "Etc/UTC"), "GMT", "UTC", "UT" or "Z", or one
// of Java's short IDs ("CST" is America/Chicago, "CTT" Asia/Shanghai). Numeric offsets ("+0800")
// are not zone IDs there and are refused here too. NotFound for anything else.
[[nodiscard]] absl::StatusOr<absl::TimeZone> ZoneById(absl::string_view id);

// A parsed `Date` header: the wall-clock time as written, and the zone written after it.
struct RequestDate {
  absl::CivilSecond wall;
  absl::TimeZone zone;
};
// Parses "EEE, dd MMM yyyy HH:mm:ss z" case-insensitively, strictly otherwise: two-digit day,
// hours, minutes and seconds, a four-digit year, single spaces, a real date whose day name
// matches it. InvalidArgument for anything else.
[[nodiscard]] absl::StatusOr<RequestDate> ParseRequestDate(absl::string_view text);

// The server's own zone: `id` when given (ZoneById), else the host's local zone (TZ, then
// /etc/localtime), as the platform's management node writes and compares times in its own.
[[nodiscard]] absl::StatusOr<absl::TimeZone> ServerZone(const std::string& id);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_PLATFORM_TIME_H_
