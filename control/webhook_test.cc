#include "control/webhook.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/webhook_receiver.h"

namespace chunkferry::control {
namespace {

using std::chrono::milliseconds;
using testing::WebhookReceiver;

constexpr char kJob[] = "5c0e7a4e2b9d4f6a8e1c3b5d7f9a1c2e";

WebhookPolicy Allow(std::vector<std::string> prefixes) {
  WebhookPolicy p;
  p.allow = std::move(prefixes);
  return p;
}

TEST(WebhookUrlTest, NoneAllowedByDefault) {
  const absl::Status st = CheckWebhookUrl(WebhookPolicy{}, "http://10.0.0.5:9000/zs-hook");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("allows none"), std::string::npos) << st;
}

TEST(WebhookUrlTest, OnlyUnderAnAllowedPrefix) {
  const WebhookPolicy p = Allow({"http://10.0.0.5:9000/hooks/", "https://mn.example/"});
  EXPECT_TRUE(CheckWebhookUrl(p, "http://10.0.0.5:9000/hooks/zs").ok());
  EXPECT_TRUE(CheckWebhookUrl(p, "http://10.0.0.5:9000/hooks/zs?token=abc").ok());
  EXPECT_TRUE(CheckWebhookUrl(p, "https://mn.example/anything").ok());
  for (const char* url : {
           "http://10.0.0.5:9000/other",             // outside the path
           "http://10.0.0.5:9001/hooks/zs",          // another port
           "https://10.0.0.5:9000/hooks/zs",         // another scheme
           "http://10.0.0.5:9000/hooks/../admin",    // leaves the prefix when resolved
           "http://10.0.0.5:9000/hooks/%2E%2e/x",    // the same, encoded
           "http://10.0.0.5:9000/hooks/./zs",        // a dot segment
           "http://10.0.0.5:9000/hooks/..%2Fadmin",  // an encoded separator
           "http://10.0.0.5:9000@evil/hooks/zs",     // user info
           "http://10.0.0.5:9000/hooks/zs#x",        // a fragment
           "http://10.0.0.5:9000/hooks/z s",         // a space
           "http://10.0.0.5:9000/hooks/z\\s",        // a backslash
           "http://10.0.0.5:9000/hooks/z\x01",       // a control character
           "ftp://10.0.0.5:9000/hooks/zs",           // not http
           "/hooks/zs",                              // not absolute
           "",
       }) {
    EXPECT_FALSE(CheckWebhookUrl(p, url).ok()) << url;
  }
  EXPECT_FALSE(CheckWebhookUrl(p, "http://10.0.0.5:9000/hooks/" + std::string(3000, 'a')).ok());
}

TEST(WebhookUrlTest, PrefixesMustEndTheirHost) {
  EXPECT_TRUE(CheckWebhookPrefix("http://10.0.0.5:9000/").ok());
  EXPECT_TRUE(CheckWebhookPrefix("https://mn.example/hooks/").ok());
  // Without a path, "http://10.0.0.5" would allow "http://10.0.0.5.evil.example/".
  EXPECT_FALSE(CheckWebhookPrefix("http://10.0.0.5").ok());
  EXPECT_FALSE(CheckWebhookPrefix("http://10.0.0.5:9000").ok());
  EXPECT_FALSE(CheckWebhookPrefix("http:///hooks/").ok());
  EXPECT_FALSE(CheckWebhookPrefix("http://h/hooks?x").ok());
  EXPECT_FALSE(CheckWebhookPrefix("http://user@h/").ok());
  EXPECT_FALSE(CheckWebhookPrefix("http://h/../").ok());
  EXPECT_FALSE(CheckWebhookPrefix("gopher://h/").ok());
}

TEST(WebhookUrlTest, OriginHidesPathAndQuery) {
  EXPECT_EQ(WebhookOrigin("http://10.0.0.5:9000/hooks/zs?token=secret"), "http://10.0.0.5:9000");
  EXPECT_EQ(WebhookOrigin("https://mn.example?x"), "https://mn.example");
}

class WebhookSenderTest : public ::testing::Test {
 protected:
  WebhookSenderOptions Options() {
    WebhookSenderOptions o;
    o.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(mu_);
      log_.push_back(line);
    };
    return o;
  }
  WebhookPolicy Policy(int attempts, int interval_ms) {
    WebhookPolicy p = Allow({receiver_.prefix()});
    p.attempts = attempts;
    p.retry_interval_ms = interval_ms;
    p.timeout_ms = 2000;
    return p;
  }
  // One sender thread, `max_waiting` held, a receiver that takes 300 ms a callback.
  WebhookSenderOptions OneSlowThread(size_t max_waiting) {
    WebhookSenderOptions o = Options();
    o.threads = 1;
    o.max_waiting = max_waiting;
    receiver_.set_delay_ms(300);
    receiver_.Expect(kJob);
    return o;
  }
  // Sends `n` callbacks; how many were taken.
  int SendMany(WebhookSender& sender, int n, bool best_effort) {
    int taken = 0;
    for (int i = 0; i < n; ++i) {
      taken += sender.Send(Policy(1, 10), {receiver_.url(), kJob, true, "{}"}, best_effort);
    }
    return taken;
  }
  std::vector<std::string> Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

  WebhookReceiver receiver_;
  std::mutex mu_;
  std::vector<std::string> log_;
};

TEST_F(WebhookSenderTest, PostsThePlatformsHeadersAndBody) {
  receiver_.Expect(kJob);
  WebhookSender sender(Options());
  ASSERT_TRUE(sender.Send(
      Policy(3, 10), {receiver_.url("/hooks/zs?token=t1"), kJob, true, R"({"inventories":[]})"}));
  const auto calls = receiver_.WaitFor(1, milliseconds(10'000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].path, "/hooks/zs?token=t1");
  EXPECT_EQ(calls[0].job_uuid, kJob);
  EXPECT_EQ(calls[0].success, "true");
  EXPECT_EQ(calls[0].content_type, "application/json; charset=utf-8");
  EXPECT_EQ(calls[0].body, R"({"inventories":[]})");
  EXPECT_EQ(calls[0].status, 200);
  sender.Shutdown();
  EXPECT_EQ(sender.delivered(), 1u);
  EXPECT_EQ(sender.given_up(), 0u);
  // Logs name the receiver's origin, never its path or query (a token may be there).
  for (const std::string& line : Log()) EXPECT_EQ(line.find("token"), std::string::npos) << line;
}

TEST_F(WebhookSenderTest, FailureIsSentAsFalse) {
  receiver_.Expect(kJob);
  WebhookSender sender(Options());
  ASSERT_TRUE(sender.Send(Policy(3, 10), {receiver_.url(), kJob, false, R"({"error":{}})"}));
  const auto calls = receiver_.WaitFor(1, milliseconds(10'000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].success, "false");
}

TEST_F(WebhookSenderTest, RetriesUntilTheReceiverTakesIt) {
  receiver_.Expect(kJob);
  receiver_.FailNext(2);
  WebhookSender sender(Options());
  ASSERT_TRUE(sender.Send(Policy(5, 100), {receiver_.url(), kJob, true, "{}"}));
  const auto calls = receiver_.WaitFor(3, milliseconds(10'000));
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].status, 500);
  EXPECT_EQ(calls[1].status, 500);
  EXPECT_EQ(calls[2].status, 200);
  // The interval is waited between tries.
  EXPECT_GE(calls[1].at - calls[0].at, milliseconds(100));
  EXPECT_GE(calls[2].at - calls[1].at, milliseconds(100));
  sender.Shutdown();
  EXPECT_EQ(sender.delivered(), 1u);
  EXPECT_EQ(receiver_.calls().size(), 3u);  // nothing after the 2xx
}

TEST_F(WebhookSenderTest, GivesUpAfterItsAttempts) {
  // The SDK's receiver answers 404 for a job it no longer waits for: retried, then given up.
  WebhookSender sender(Options());
  ASSERT_TRUE(sender.Send(Policy(3, 10), {receiver_.url(), kJob, true, "{}"}));
  receiver_.WaitFor(3, milliseconds(10'000));
  for (int i = 0; i < 200 && sender.given_up() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(sender.given_up(), 1u);
  std::this_thread::sleep_for(milliseconds(100));
  const auto calls = receiver_.calls();
  ASSERT_EQ(calls.size(), 3u);
  for (const auto& c : calls) EXPECT_EQ(c.status, 404);
  bool logged = false;
  for (const std::string& line : Log()) {
    logged = logged || line.find("given up after 3 tries: answered 404") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

TEST_F(WebhookSenderTest, ASlowReceiverCountsAsAFailure) {
  receiver_.Expect(kJob);
  receiver_.set_delay_ms(1500);
  WebhookSender sender(Options());
  WebhookPolicy p = Policy(1, 10);
  p.timeout_ms = 200;
  ASSERT_TRUE(sender.Send(p, {receiver_.url(), kJob, true, "{}"}));
  for (int i = 0; i < 500 && sender.given_up() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(sender.given_up(), 1u);
  EXPECT_EQ(sender.delivered(), 0u);
}

TEST_F(WebhookSenderTest, AReceiverThatIsDownIsRetriedThenGivenUp) {
  WebhookPolicy p = Allow({"http://127.0.0.1:1/"});
  p.attempts = 2;
  p.retry_interval_ms = 10;
  WebhookSender sender(Options());
  ASSERT_TRUE(sender.Send(p, {"http://127.0.0.1:1/hook", kJob, true, "{}"}));
  for (int i = 0; i < 500 && sender.given_up() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(sender.given_up(), 1u);
}

TEST_F(WebhookSenderTest, TheQueueIsBounded) {
  WebhookSender sender(OneSlowThread(2));
  const int taken = SendMany(sender, 10, false);
  // One in its thread at most, two waiting: the rest refused at once.
  EXPECT_GE(taken, 2);
  EXPECT_LE(taken, 3);
  sender.Shutdown();
  EXPECT_FALSE(sender.Send(Policy(1, 10), {receiver_.url(), kJob, true, "{}"}));
  EXPECT_EQ(sender.delivered() + sender.given_up(), static_cast<uint64_t>(taken));
}

// The platform's SDK misses a callback that comes before its 202: a job that ends first waits.
TEST_F(WebhookSenderTest, AJobThatEndsBeforeItsAnswerWaitsForIt) {
  receiver_.Expect(kJob);
  WebhookSender sender(Options());
  PendingWebhook pending(sender, Policy(1, 10), false);
  pending.Finished({receiver_.url(), kJob, true, "{}"});
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(receiver_.calls().empty()) << "sent before the answer was written";
  pending.Answered();
  EXPECT_EQ(receiver_.WaitFor(1, milliseconds(10'000)).size(), 1u);
}

TEST_F(WebhookSenderTest, AJobThatEndsAfterItsAnswerIsSentAtOnce) {
  receiver_.Expect(kJob);
  WebhookSender sender(Options());
  PendingWebhook pending(sender, Policy(1, 10), false);
  pending.Answered();
  EXPECT_TRUE(receiver_.calls().empty());
  pending.Finished({receiver_.url(), kJob, false, "{}"});
  const auto calls = receiver_.WaitFor(1, milliseconds(10'000));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].success, "false");
}

TEST_F(WebhookSenderTest, BestEffortCallsKeepHalfTheQueueFree) {
  WebhookSender sender(OneSlowThread(4));
  const int best_effort = SendMany(sender, 10, true);
  EXPECT_LE(best_effort, 3);  // two waiting, one perhaps taken by the thread
  // The others still find room.
  EXPECT_TRUE(sender.Send(Policy(1, 10), {receiver_.url(), kJob, true, "{}"}));
  EXPECT_TRUE(sender.Send(Policy(1, 10), {receiver_.url(), kJob, true, "{}"}));
}

}  // namespace
}  // namespace chunkferry::control
