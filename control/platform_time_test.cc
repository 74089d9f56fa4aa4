// The Date header as the platform's clients write it and its server reads it: the zone IDs it
// accepts (region IDs in any case, GMT/UTC/Z, Java's short IDs) and refuses (numeric offsets,
// nonsense), and strict parsing of the rest (day name matching the date, two-digit fields).
#include "control/platform_time.h"

#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

int64_t OffsetAt(const absl::TimeZone& tz, absl::CivilSecond when) {
  return tz.At(absl::FromCivil(when, absl::UTCTimeZone())).offset;
}

TEST(PlatformTimeTest, ZoneIdsAsThePlatformAcceptsThem) {
  const absl::CivilSecond noon(2026, 12, 2, 12, 0, 0);
  for (const char* utc : {"GMT", "UTC", "Etc/UTC", "Z", "gmt", "utc", "etc/utc", "z", "UT"}) {
    auto tz = ZoneById(utc);
    ASSERT_TRUE(tz.ok()) << utc << ": " << tz.status();
    EXPECT_EQ(OffsetAt(*tz, noon), 0) << utc;
  }
  for (const char* shanghai : {"Asia/Shanghai", "asia/shanghai", "ASIA/SHANGHAI", "CTT"}) {
    auto tz = ZoneById(shanghai);
    ASSERT_TRUE(tz.ok()) << shanghai << ": " << tz.status();
    EXPECT_EQ(OffsetAt(*tz, noon), 8 * 3600) << shanghai;
  }
  auto chicago = ZoneById("CST");  // Java's short ID, as the platform's server reads it
  ASSERT_TRUE(chicago.ok());
  EXPECT_EQ(OffsetAt(*chicago, noon), -6 * 3600);
  auto est = ZoneById("EST");
  ASSERT_TRUE(est.ok());
  EXPECT_EQ(OffsetAt(*est, absl::CivilSecond(2026, 7, 1, 12, 0, 0)), -5 * 3600);  // fixed
  for (const char* bad : {"+0000", "+08:00", "-0500", "", "Mars/Olympus", "../../etc/passwd",
                          "Asia/Shanghai ", "Asia//Shanghai", "0800"}) {
    EXPECT_FALSE(ZoneById(bad).ok()) << bad;
  }
}

TEST(PlatformTimeTest, DatesParseAsTheSdkWritesThem) {
  auto d = ParseRequestDate("Wed, 02 Dec 2026 15:15:49 Asia/Shanghai");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->wall, absl::CivilSecond(2026, 12, 2, 15, 15, 49));
  EXPECT_EQ(absl::FromCivil(d->wall, d->zone),
            absl::FromCivil(absl::CivilSecond(2026, 12, 2, 7, 15, 49), absl::UTCTimeZone()));
  for (const char* ok : {"Wed, 02 Dec 2026 07:15:50 UTC", "Wed, 02 Dec 2026 07:15:47 GMT",
                         "wed, 02 dec 2026 07:15:47 gmt", "WED, 02 DEC 2026 07:15:47 Z",
                         "Tue, 29 Feb 2028 23:59:59 Etc/UTC"}) {
    EXPECT_TRUE(ParseRequestDate(ok).ok()) << ok;
  }
  for (const char* bad : {"Thu, 02 Dec 2026 07:00:00 GMT",  // the day name does not match the date
                          "Wed, 02 Dec 2026 07:00:00 +0000",  // numeric offsets are refused
                          "Wed, 2 Dec 2026 07:00:00 GMT",     // one-digit day
                          "Wed,  02 Dec 2026 07:00:00 GMT",   // two spaces
                          "Wed 02 Dec 2026 07:00:00 GMT",     // no comma
                          "Wed, 02 Dec 26 07:00:00 GMT",      // two-digit year
                          "Wed, 02 Dec 2026 7:00:00 GMT",     // one-digit hour
                          "Wed, 02 Dec 2026 24:00:00 GMT",    // no such hour
                          "Sat, 30 Feb 2027 07:00:00 GMT",    // no such day
                          "Wed, 02 Dez 2026 07:00:00 GMT",    // English only
                          "Wed, 02 Dec 2026 07:00:00",        // no zone
                          "2026-12-02T07:00:00Z", ""}) {
    EXPECT_FALSE(ParseRequestDate(bad).ok()) << bad;
  }
}

TEST(PlatformTimeTest, ServerZoneIsTheHostsUnlessNamed) {
  auto named = ServerZone("Asia/Shanghai");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->name(), "Asia/Shanghai");
  auto host = ServerZone("");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->name(), absl::LocalTimeZone().name());
  EXPECT_FALSE(ServerZone("+08:00").ok());
}

}  // namespace
}  // namespace chunkferry::control
