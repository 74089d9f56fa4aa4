#include "control/platform_time.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace chunkferry::control {
namespace {

// Java's ZoneId.SHORT_IDS: what the platform's server accepts for these three-letter texts.
struct ShortId {
  const char* id;
  const char* zone;  // an IANA name, or a fixed offset "+HH:MM" / "-HH:MM"
};
constexpr ShortId kShortIds[] = {
    {"ACT", "Australia/Darwin"},
    {"AET", "Australia/Sydney"},
    {"AGT", "America/Argentina/Buenos_Aires"},
    {"ART", "Africa/Cairo"},
    {"AST", "America/Anchorage"},
    {"BET", "America/Sao_Paulo"},
    {"BST", "Asia/Dhaka"},
    {"CAT", "Africa/Harare"},
    {"CNT", "America/St_Johns"},
    {"CST", "America/Chicago"},
    {"CTT", "Asia/Shanghai"},
    {"EAT", "Africa/Addis_Ababa"},
    {"ECT", "Europe/Paris"},
    {"EST", "-05:00"},
    {"HST", "-10:00"},
    {"IET", "America/Indiana/Indianapolis"},
    {"IST", "Asia/Kolkata"},
    {"JST", "Asia/Tokyo"},
    {"MIT", "Pacific/Apia"},
    {"MST", "-07:00"},
    {"NET", "Asia/Yerevan"},
    {"NST", "Pacific/Auckland"},
    {"PLT", "Asia/Karachi"},
    {"PNT", "America/Phoenix"},
    {"PRT", "America/Puerto_Rico"},
    {"PST", "America/Los_Angeles"},
    {"SST", "Pacific/Guadalcanal"},
    {"VST", "Asia/Ho_Chi_Minh"},
};

constexpr const char* kDays[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr const char* kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                   "jul", "aug", "sep", "oct", "nov", "dec"};

// Lower-case IANA name -> the name as the zone database spells it, read once from the
// database's folder (TZDIR, as Abseil reads it, else /usr/share/zoneinfo).
const std::unordered_map<std::string, std::string>& ZoneNames() {
  static const auto* names = [] {
    auto* m = new std::unordered_map<std::string, std::string>();
    const char* env = std::getenv("TZDIR");
    const std::filesystem::path root = env != nullptr && *env != '\0' ? env : "/usr/share/zoneinfo";
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      const std::string rel = std::filesystem::relative(it->path(), root, ec).string();
      // posix/ and right/ repeat the database with other leap-second rules.
      if (it->is_directory(ec) && (rel == "posix" || rel == "right")) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec)) m->emplace(absl::AsciiStrToLower(rel), rel);
    }
    return m;
  }();
  return *names;
}

bool AllDigits(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return !s.empty();
}

int IndexOf(absl::string_view word, const char* const* list, int n) {
  const std::string lower = absl::AsciiStrToLower(word);
  for (int i = 0; i < n; ++i) {
    if (lower == list[i]) return i;
  }
  return -1;
}

}  // namespace

absl::StatusOr<absl::TimeZone> ZoneById(absl::string_view id) {
  const std::string upper = absl::AsciiStrToUpper(id);
  if (upper == "GMT" || upper == "UTC" || upper == "UT" || upper == "Z") {
    return absl::UTCTimeZone();
  }
  for (const ShortId& s : kShortIds) {
    if (upper != s.id) continue;
    const absl::string_view zone = s.zone;
    if (zone[0] == '+' || zone[0] == '-') {
      int hours = 0, minutes = 0;
      (void)absl::SimpleAtoi(zone.substr(1, 2), &hours);
      (void)absl::SimpleAtoi(zone.substr(4, 2), &minutes);
      const int seconds = (hours * 60 + minutes) * 60;
      return absl::FixedTimeZone(zone[0] == '-' ? -seconds : seconds);
    }
    absl::TimeZone tz;
    if (absl::LoadTimeZone(s.zone, &tz)) return tz;
    return absl::NotFoundError(absl::StrCat("time zone ", s.zone, " is not in the zone database"));
  }
  // A region ID: letters first, then letters, digits, '/', '_', '-', '+' (Etc/GMT+8). Never a
  // bare offset, and never a path out of the database's folder.
  bool plausible = !id.empty() && absl::ascii_isalpha(static_cast<unsigned char>(id[0])) &&
                   id.find("..") == absl::string_view::npos;
  for (char c : id) {
    plausible = plausible && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '/' ||
                              c == '_' || c == '-' || c == '+');
  }
  if (plausible) {
    const auto& names = ZoneNames();
    auto it = names.find(absl::AsciiStrToLower(id));
    absl::TimeZone tz;
    if (it != names.end() && absl::LoadTimeZone(it->second, &tz)) return tz;
  }
  return absl::NotFoundError(absl::StrCat("unknown time zone ID \"", id, "\""));
}

absl::StatusOr<RequestDate> ParseRequestDate(absl::string_view text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("not a date of the form 'EEE, dd MMM yyyy ", "HH:mm:ss z': \"", text, "\""));
  };
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ' ');
  if (parts.size() != 6) return bad();
  const absl::string_view day_name = parts[0], dd = parts[1], month = parts[2], yyyy = parts[3],
                          clock = parts[4], zone_id = parts[5];
  if (day_name.size() != 4 || day_name.back() != ',' || dd.size() != 2 || !AllDigits(dd) ||
      month.size() != 3 || yyyy.size() != 4 || !AllDigits(yyyy) || clock.size() != 8 ||
      clock[2] != ':' || clock[5] != ':' || !AllDigits(clock.substr(0, 2)) ||
      !AllDigits(clock.substr(3, 2)) || !AllDigits(clock.substr(6, 2))) {
    return bad();
  }
  const int weekday = IndexOf(day_name.substr(0, 3), kDays, 7);
  const int month_index = IndexOf(month, kMonths, 12);
  if (weekday < 0 || month_index < 0) return bad();
  int day = 0, year = 0, hour = 0, minute = 0, second = 0;
  (void)absl::SimpleAtoi(dd, &day);
  (void)absl::SimpleAtoi(yyyy, &year);
  (void)absl::SimpleAtoi(clock.substr(0, 2), &hour);
  (void)absl::SimpleAtoi(clock.substr(3, 2), &minute);
  (void)absl::SimpleAtoi(clock.substr(6, 2), &second);
  const absl::CivilDay civil_day(year, month_index + 1, day);
  // CivilDay normalizes (Feb 30 becomes Mar 2): a date that moved was not a date.
  if (civil_day.day() != day || civil_day.month() != month_index + 1 || hour > 23 || minute > 59 ||
      second > 59) {
    return bad();
  }
  static constexpr absl::Weekday kWeekdays[] = {absl::Weekday::monday,    absl::Weekday::tuesday,
                                                absl::Weekday::wednesday, absl::Weekday::thursday,
                                                absl::Weekday::friday,    absl::Weekday::saturday,
                                                absl::Weekday::sunday};
  if (absl::GetWeekday(civil_day) != kWeekdays[weekday]) return bad();
  absl::StatusOr<absl::TimeZone> zone = ZoneById(zone_id);
  if (!zone.ok()) return bad();
  return RequestDate{absl::CivilSecond(year, month_index + 1, day, hour, minute, second), *zone};
}

absl::StatusOr<absl::TimeZone> ServerZone(const std::string& id) {
  if (id.empty()) return absl::LocalTimeZone();
  return ZoneById(id);
}

}  // namespace chunkferry::control
