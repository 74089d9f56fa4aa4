// X-Web-Hook through the HTTP API: a job-mode sync whose result is POSTed to a receiver that
// answers as the platform's SDK does (control/webhook_receiver.h), with the platform's headers
// and the body its poll answers; refusals of webhooks the registry does not allow; no callback
// for calls answered at once or for a job uuid sent again; a refused session's callback.
#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/http_api_test_fixture.h"
#include "control/webhook_receiver.h"
#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

using std::chrono::milliseconds;
using testing::WebhookReceiver;

class HttpWebhookTest : public HttpApiTest {
 protected:
  // Allows the receiver's prefix, retrying quickly.
  void AllowReceiver() {
    Registry r = *service_->registry();
    r.webhooks.allow = {receiver_.prefix()};
    r.webhooks.retry_interval_ms = 50;
    r.webhooks.timeout_ms = 5000;
    service_->ReplaceRegistry(r);
  }
  httplib::Result PutJob(const std::string& session, const std::string& group,
                         const std::string& job, const std::string& hook) {
    return Put(SyncPath(group), Body(src_uuid_, dst_uuid_),
               {{"Authorization", "OAuth " + session},
                {"X-Job-UUID", job},
                {"X-Web-Hook", hook},
                {"X-JSON-Schema", "true"}});
  }

  WebhookReceiver receiver_;
};

TEST_F(HttpWebhookTest, WebhooksCarryTheJobsResult) {
  AllowReceiver();
  StartServer();
  const std::string job = engine::NewUuid();
  receiver_.Expect(job);
  auto put = PutJob(session_, group_, job, receiver_.url("/hooks/zs?k=1"));
  ASSERT_TRUE(put);
  const std::string job_path = JobPathOf(put, job);
  const auto calls = receiver_.WaitFor(1, milliseconds(120'000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].path, "/hooks/zs?k=1");
  EXPECT_EQ(calls[0].job_uuid, job);
  EXPECT_EQ(calls[0].success, "true");
  EXPECT_EQ(calls[0].content_type, "application/json; charset=utf-8");
  EXPECT_EQ(calls[0].status, 200);
  // The body is what the poll answers: the inventories and their schema, no location.
  const Json body = ParseJson(calls[0].body);
  ExpectInventories(body, dst_uuid_);
  EXPECT_TRUE(body.contains("schema")) << calls[0].body;
  EXPECT_FALSE(body.contains("location"));
  auto poll = Poll(job_path);
  ASSERT_TRUE(poll);
  EXPECT_EQ(poll->status, 200);
  EXPECT_EQ(ParseJson(poll->body), body);
  // Sending the same job again runs nothing and calls back nothing more.
  auto again = PutJob(session_, group_, job, receiver_.url());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 202);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(receiver_.calls().size(), 1u);
}

TEST_F(HttpWebhookTest, AFailedJobIsCalledBackWithItsError) {
  AllowReceiver();
  StartServer();
  const std::string job = engine::NewUuid();
  receiver_.Expect(job);
  receiver_.FailNext(1);  // and retried
  auto put = PutJob(session_, engine::NewUuid(), job, receiver_.url());
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  const auto calls = receiver_.WaitFor(2, milliseconds(60'000));
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].status, 500);
  EXPECT_EQ(calls[1].status, 200);
  EXPECT_EQ(calls[1].success, "false");
  EXPECT_EQ(calls[1].body, calls[0].body);
  const Json body = ParseJson(calls[1].body);
  EXPECT_EQ(body["error"].value("code", ""), kSysNotFound) << calls[1].body;
  EXPECT_EQ(body.size(), 1u) << "only {\"error\": ...}";
}

TEST_F(HttpWebhookTest, ARefusedSessionIsCalledBackOnce) {
  AllowReceiver();
  StartServer();
  const std::string job = engine::NewUuid();
  receiver_.Expect(job);
  auto put = PutJob(engine::NewUuid(), group_, job, receiver_.url());
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  const auto calls = receiver_.WaitFor(1, milliseconds(30'000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].success, "false");
  EXPECT_EQ(ParseJson(calls[0].body)["error"].value("code", ""), kIdInvalidSession);
  // Sent again, the refusal keeps its first answer and is not called back again.
  auto again = PutJob(engine::NewUuid(), group_, job, receiver_.url());
  ASSERT_TRUE(again);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(receiver_.calls().size(), 1u);
}

TEST_F(HttpWebhookTest, WebhooksTheRegistryDoesNotAllowAreRefusedBeforeAnyJob) {
  StartServer();  // the registry allows none
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  const std::string job = engine::NewUuid();
  auto none = PutJob(session_, group_, job, receiver_.url());
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 400);
  EXPECT_EQ(none->get_header_value("Content-Type"), kTextType);
  EXPECT_TRUE(absl::StrContains(none->body, "allows none")) << none->body;
  AllowReceiver();
  for (const std::string& hook :
       {absl::StrCat("http://127.0.0.1:1/hooks/zs"), receiver_.url("/other"),
        receiver_.url("/hooks/../admin"), std::string("file:///etc/passwd")}) {
    auto r = PutJob(session_, group_, job, hook);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << hook;
    EXPECT_TRUE(absl::StrContains(r->body, "X-Web-Hook")) << r->body;
  }
  // Nothing ran: no job of that uuid, the destination unchanged.
  auto poll = Get(absl::StrCat("/zstack/v1/api-jobs/", job));
  ASSERT_TRUE(poll);
  EXPECT_EQ(poll->status, 404);
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
  EXPECT_TRUE(receiver_.calls().empty());
}

TEST_F(HttpWebhookTest, ACallAnsweredAtOnceIsNotCalledBack) {
  AllowReceiver();
  StartServer();
  auto r = PutSync(group_, dst_uuid_, {{"X-Web-Hook", receiver_.url()}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(receiver_.calls().empty());
}

}  // namespace
}  // namespace chunkferry::control
