// Access keys as the platform checks them, from its documented facts alone: the worked signature
// example byte for byte, every refusal in the platform's order with its status and text, the
// skew window at its edges in both time-zone modes, and the key file's parsing and mode.
#include "control/access_key.h"

#include <sys/stat.h>

#include <string>

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::control {
namespace {

constexpr char kDate[] = "Wed, 02 Dec 2026 07:00:00 GMT";
constexpr char kUuid[] = "9b0c2f6d3e7a4b1c8d5e6f708192a3b4";

absl::Time At(int h, int m, int s, const absl::TimeZone& tz = absl::UTCTimeZone()) {
  return absl::FromCivil(absl::CivilSecond(2026, 12, 2, h, m, s), tz);
}

class AccessKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_.keys = {{"AKIDEXAMPLE", "secret-example", true}, {"AKIDOLD", "old-secret", false}};
    keys_.server_zone = absl::UTCTimeZone();
  }
  std::string Path() const { return std::string("/zstack/v1/vm-backups/") + kUuid + "/actions"; }
  AccessKeyAnswer Check(const std::string& credential, const std::string* date, absl::Time now) {
    return CheckAccessKey(keys_, "PUT", Path(), credential, date, now);
  }
  AccessKeys keys_;
};

TEST_F(AccessKeyTest, TheWorkedExampleSignsByteForByte) {
  EXPECT_EQ(AccessKeySignature("secret-example", "PUT", kDate, "/v1/vm-backups/<uuid>/actions"),
            "ma/dtDrMUi0NWKIjUwQv7dCy4t0=");
  EXPECT_EQ(AccessKeySignature("secret-example", "PUT", kDate,
                               std::string("/v1/vm-backups/") + kUuid + "/actions"),
            "Pw/j0CHiUhs6GZWL5a3Ut/Y0oMQ=");
  const std::string date = kDate;
  const AccessKeyAnswer ok = Check("AKIDEXAMPLE:Pw/j0CHiUhs6GZWL5a3Ut/Y0oMQ=", &date, At(7, 0, 0));
  EXPECT_EQ(ok.status, 0) << ok.text;
  EXPECT_EQ(ok.key_id, "AKIDEXAMPLE");
  // Signing the context path too is what a wrong client does: refused.
  const AccessKeyAnswer wrong =
      Check("AKIDEXAMPLE:i2811V6wLAZfL5Iogsobt4iY8iQ=", &date, At(7, 0, 0));
  EXPECT_EQ(wrong.status, 403);
  EXPECT_EQ(wrong.text, "wrong accessKey signature");
}

TEST_F(AccessKeyTest, RefusalsComeInThePlatformsOrderWithItsTexts) {
  const std::string good_sig = "Pw/j0CHiUhs6GZWL5a3Ut/Y0oMQ=";
  const std::string date = kDate;
  const absl::Time now = At(7, 0, 0);
  struct Case {
    std::string credential;
    const std::string* date;
    absl::Time now;
    int status;
    std::string text;
  };
  const std::string unparseable = "Wed, 02 Dec 2026 07:00:00 +0000";
  const Case cases[] = {
      // The date is looked at first, even before a malformed credential.
      {"nonsense", nullptr, now, 400, "'Date' must be incuded in request header"},
      {"nonsense", &unparseable, now, 400,
       "'Date' format error, correct format is 'EEE, dd MMM yyyy HH:mm:ss z'"},
      {"nonsense", &date, At(7, 15, 1), 403, "requestTimeTooSkewed"},
      {"nonsense", &date, At(6, 44, 59), 403, "requestTimeTooSkewed"},
      {"nonsense", &date, now, 400, "accessKey format is 'ZStack AccessKeyId:Signature'"},
      {"AKIDEXAMPLE:" + good_sig + ":x", &date, now, 400,
       "accessKey format is 'ZStack AccessKeyId:Signature'"},
      {"AKIDNOBODY:" + good_sig, &date, now, 403,
       "access key id: AKIDNOBODY does not existed or disabled"},
      {"AKIDOLD:" + AccessKeySignature("old-secret", "PUT", kDate, Path().substr(7)), &date, now,
       403, "access key id: AKIDOLD does not existed or disabled"},
      {"AKIDEXAMPLE:" + good_sig.substr(1), &date, now, 403, "wrong accessKey signature"},
      {"AKIDEXAMPLE:", &date, now, 403, "wrong accessKey signature"},
  };
  for (const Case& c : cases) {
    const AccessKeyAnswer a = Check(c.credential, c.date, c.now);
    EXPECT_EQ(a.status, c.status) << c.credential << " / " << c.text;
    EXPECT_EQ(a.text, c.text) << c.credential;
    EXPECT_TRUE(a.key_id.empty());
  }
  // The window is inclusive: 15 minutes either way still passes.
  for (const absl::Time edge : {At(7, 15, 0), At(6, 45, 0)}) {
    EXPECT_EQ(Check("AKIDEXAMPLE:" + good_sig, &date, edge).status, 0);
  }
}

TEST_F(AccessKeyTest, WallClockDigitsOrInstantsAsConfigured) {
  // A server in UTC+8, a client in UTC writing its own wall clock: the same instant.
  keys_.server_zone = absl::FixedTimeZone(8 * 3600);
  const std::string utc_date = kDate;  // 07:00:00 GMT
  const std::string sig = AccessKeySignature("secret-example", "PUT", utc_date, Path().substr(7));
  const absl::Time now = At(7, 0, 0);
  // Default (the platform's rest.checkTimeZone = false): digits against the server's 15:00.
  EXPECT_EQ(Check("AKIDEXAMPLE:" + sig, &utc_date, now).text, "requestTimeTooSkewed");
  keys_.check_time_zone = true;
  EXPECT_EQ(Check("AKIDEXAMPLE:" + sig, &utc_date, now).status, 0);
  // A client in the server's zone passes either way, whatever zone id it writes.
  const std::string local_date = "Wed, 02 Dec 2026 15:00:00 Asia/Shanghai";
  const std::string local_sig =
      AccessKeySignature("secret-example", "PUT", local_date, Path().substr(7));
  EXPECT_EQ(Check("AKIDEXAMPLE:" + local_sig, &local_date, now).status, 0);
  keys_.check_time_zone = false;
  EXPECT_EQ(Check("AKIDEXAMPLE:" + local_sig, &local_date, now).status, 0);
}

TEST(AccessKeyFileTest, ParsesAndRefusesClearly) {
  auto keys = ParseAccessKeyFile(
      "# id secret state\n\nAKIDEXAMPLE secret-example\nAKIDOLD\tx/y+z= disabled # retired\n"
      "ak.2_b-c S3cr3t! enabled\n",
      "keys");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[0].id, "AKIDEXAMPLE");
  EXPECT_TRUE((*keys)[0].enabled);
  EXPECT_EQ((*keys)[1].secret, "x/y+z=");
  EXPECT_FALSE((*keys)[1].enabled);
  EXPECT_EQ((*keys)[2].secret, "S3cr3t!");
  for (const auto& [text, what] : std::initializer_list<std::pair<const char*, const char*>>{
           {"onlyid\n", "keys:1: expected"},
           {"a b c d\n", "keys:1: expected"},
           {"ok s\nok t\n", "keys:2: duplicate id ok"},
           {"bad/id s\n", "keys:1: the id must be"},
           {"id s maybe\n", "keys:1: the state must be enabled or disabled"},
           {"id \x7f\n", "keys:1: the secret must be"}}) {
    auto bad = ParseAccessKeyFile(text, "keys");
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find(what), std::string::npos) << bad.status();
  }
}

TEST(AccessKeyFileTest, ALooseModeIsRefused) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("access-keys");
  const std::string text = "AKIDEXAMPLE secret-example\n";
  testing::WriteFile(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_EQ(LoadAccessKeyFile(path).status().code(), absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto keys = LoadAccessKeyFile(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 1u);
}

}  // namespace
}  // namespace chunkferry::control
