// Who a request comes from: static sessions, live sessions checked with a fake management node
// on 127.0.0.1 (valid, invalid, slow, down, answering nonsense; answers cached both ways, for
// their period only), access keys, and the schemes the platform refuses with its own texts.
#include "control/caller.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "control/access_key.h"
#include "control/fake_management_node.h"
#include "control/session_validator.h"
#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

using ::chunkferry::testing::FakeManagementNode;

constexpr char kValid[] = "0123456789abcdef0123456789abcdef";
constexpr char kInvalid[] = "fedcba9876543210fedcba9876543210";
constexpr char kStatic[] = "11111111111111111111111111111111";

class CallerTest : public ::testing::Test {
 protected:
  void UseManagementNode(const std::string& url, int64_t timeout_ms = 2000) {
    ManagementNode node;
    node.url = url;
    node.timeout_ms = timeout_ms;
    node.cache_seconds = 10;
    registry_.management_node = std::make_shared<SessionValidator>(
        node, [this] { return std::chrono::steady_clock::time_point(now_); });
  }
  Caller Call(const std::string& authorization, const std::string* date = nullptr) {
    return IdentifyCaller(registry_, "PUT", "/zstack/v1/vm-backups/x/actions", &authorization, date,
                          absl::Now());
  }

  Registry registry_;
  std::chrono::steady_clock::duration now_{};
};

TEST_F(CallerTest, StaticSessionsAloneWithoutAManagementNode) {
  registry_.sessions = {kStatic};
  const Caller ok = Call(absl::StrCat("OAuth ", kStatic));
  EXPECT_TRUE(ok.accepted());
  EXPECT_EQ(ok.principal, kStatic);
  const Caller no = Call(absl::StrCat("OAuth ", kValid));
  ASSERT_TRUE(no.refusal.has_value());
  EXPECT_EQ(no.refusal->code, kIdInvalidSession);
  EXPECT_EQ(no.refusal->details, "Session expired");
}

TEST_F(CallerTest, LiveSessionsAreAskedOnceAPeriodValidOrNot) {
  FakeManagementNode mn({kValid});
  registry_.sessions = {kStatic};
  UseManagementNode(mn.url());
  EXPECT_TRUE(Call(absl::StrCat("OAuth ", kStatic)).accepted());
  EXPECT_EQ(mn.calls(), 0) << "a static session was sent to the management node";

  EXPECT_TRUE(Call(absl::StrCat("OAuth ", kValid)).accepted());
  const Caller no = Call(absl::StrCat("OAuth ", kInvalid));
  ASSERT_TRUE(no.refusal.has_value());
  EXPECT_EQ(no.refusal->code, kIdInvalidSession);
  EXPECT_EQ(mn.calls(), 2);
  // Within the cache period neither is asked again, the invalid one included.
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(Call(absl::StrCat("OAuth ", kValid)).accepted());
    EXPECT_FALSE(Call(absl::StrCat("OAuth ", kInvalid)).accepted());
  }
  EXPECT_EQ(mn.calls(), 2);
  now_ += std::chrono::seconds(11);
  EXPECT_TRUE(Call(absl::StrCat("OAuth ", kValid)).accepted());
  EXPECT_EQ(mn.calls(), 3);
  // Not a platform session (not 32 lowercase hex): invalid without asking.
  for (const char* odd : {"null", "", "../../admin", "0123456789ABCDEF0123456789ABCDEF"}) {
    EXPECT_FALSE(Call(absl::StrCat("OAuth ", odd)).accepted()) << odd;
  }
  EXPECT_EQ(mn.calls(), 3);
}

TEST_F(CallerTest, AManagementNodeThatCannotSayIsNeverAValidSession) {
  FakeManagementNode mn({kValid});
  UseManagementNode(mn.url(), /*timeout_ms=*/300);
  mn.set_mode(FakeManagementNode::Mode::kSlow);
  const Caller slow = Call(absl::StrCat("OAuth ", kValid));
  ASSERT_TRUE(slow.refusal.has_value());
  EXPECT_EQ(slow.refusal->code, kSysTimeout) << slow.refusal->details;
  mn.set_mode(FakeManagementNode::Mode::kError);
  const Caller error = Call(absl::StrCat("OAuth ", kValid));
  ASSERT_TRUE(error.refusal.has_value());
  EXPECT_EQ(error.refusal->code, kSysOperationFailed);
  EXPECT_NE(error.refusal->details.find("HTTP 500"), std::string::npos) << error.refusal->details;
  mn.set_mode(FakeManagementNode::Mode::kNonsense);
  EXPECT_EQ(Call(absl::StrCat("OAuth ", kValid)).refusal->code, kSysOperationFailed);
  // Failures are not remembered: once the node answers again, the session is valid.
  mn.set_mode(FakeManagementNode::Mode::kNormal);
  EXPECT_TRUE(Call(absl::StrCat("OAuth ", kValid)).accepted());

  UseManagementNode("http://127.0.0.1:1", 300);  // nothing listens there
  const Caller down = Call(absl::StrCat("OAuth ", kInvalid));
  ASSERT_TRUE(down.refusal.has_value());
  EXPECT_NE(down.refusal->code, kIdInvalidSession);
  EXPECT_NE(down.refusal->details.find("127.0.0.1:1"), std::string::npos);
}

TEST_F(CallerTest, AccessKeysAndTheSchemesThePlatformRefuses) {
  registry_.access_keys.keys = {{"AKIDEXAMPLE", "secret-example", true}};
  const absl::Time now = absl::Now();
  const std::string date = absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", now, absl::UTCTimeZone());
  const std::string sig =
      AccessKeySignature("secret-example", "PUT", date, "/v1/vm-backups/x/actions");
  const Caller ok = Call(absl::StrCat("ZStack AKIDEXAMPLE:", sig), &date);
  EXPECT_TRUE(ok.accepted()) << ok.http_text;
  EXPECT_EQ(ok.principal, "accesskey:AKIDEXAMPLE");
  const Caller bad = Call("ZStack AKIDEXAMPLE:AAAA", &date);
  EXPECT_EQ(bad.http_status, 403);
  EXPECT_EQ(bad.http_text, "wrong accessKey signature");
  EXPECT_EQ(Call("Bearer abc").http_text, "Authorization type must be 'OAuth'");
  EXPECT_EQ(Call("Bearer abc").http_status, 400);
  const Caller none =
      IdentifyCaller(registry_, "PUT", "/zstack/v1/x", nullptr, nullptr, absl::Now());
  EXPECT_EQ(none.http_status, 400);
  EXPECT_EQ(none.http_text, "missing header 'Authorization'");
}

}  // namespace
}  // namespace chunkferry::control
