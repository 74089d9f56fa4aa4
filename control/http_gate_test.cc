// The API daemon's connection handling under attack, on 127.0.0.1: a thousand idle connections
// and clients dribbling their headers leave an honest request answered; a head that never ends
// is closed at its deadline however slowly it trickles; an oversized head is answered 431;
// pipelined requests on one connection are each answered.
#include "control/http_gate.h"

#include <httplib.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/gate_test_util.h"
#include "control/http_api.h"
#include "control/registry.h"
#include "control/sync_service.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/net.h"

namespace chunkferry::control {
namespace {

using Clock = std::chrono::steady_clock;

class HttpGateTest : public ::testing::Test {
 protected:
  void SetUp() override { service_ = std::make_unique<SyncService>(Registry{}, ServiceOptions{}); }
  void TearDown() override {
    conns_.clear();
    server_.reset();
  }

  void StartServer(ApiServerOptions options) {
    options.log = [](const std::string&) {};
    server_ = std::make_unique<ApiServer>(*service_, options);
    absl::Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st;
  }

  io::Fd Connect() { return gate_test::ConnectLocal(server_->port()); }
  // True when the server closed `fd` within `ms` (reads give EOF or a reset).
  static bool ClosedWithin(int fd, int ms) {
    bool closed = false;
    gate_test::ReceiveUntilClosed(fd, ms, &closed);
    return closed;
  }

  std::unique_ptr<SyncService> service_;
  std::unique_ptr<ApiServer> server_;
  std::vector<io::Fd> conns_;
};

TEST_F(HttpGateTest, IdleAndSlowClientsLeaveAnHonestRequestAnswered) {
  // A thousand connections on each side of the loopback need room for descriptors.
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_cur < 2600) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  if (lim.rlim_cur < 2600) GTEST_SKIP() << "RLIMIT_NOFILE too low for 1000 connections";
  ApiServerOptions options;
  options.http_threads = 4;
  StartServer(options);
  for (int i = 0; i < 1000; ++i) conns_.push_back(Connect());
  // And slowloris: heads begun and never finished.
  for (int i = 0; i < 32; ++i) {
    conns_.push_back(Connect());
    ASSERT_TRUE(gate_test::SendAll(conns_.back().get(), "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  const auto start = Clock::now();
  auto answered = std::async(std::launch::async, [this] {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_connection_timeout(std::chrono::seconds(30));
    c.set_read_timeout(std::chrono::seconds(30));
    auto r = c.Get("/zstack/v1/no-such-thing");
    return r ? r->status : -1;
  });
  // Generous (the target is 1 s, measured in bench/api_bench.py): httplib alone held a thread
  // per idle connection for 5 s, so this request waited minutes.
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(15)), std::future_status::ready)
      << "an honest request waited behind idle connections";
  EXPECT_EQ(answered.get(), 404);
  std::printf(
      "honest request answered in %lld ms next to 1032 idle or slow connections\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()));
}

TEST_F(HttpGateTest, AHeadThatTricklesIsClosedAtItsDeadline) {
  ApiServerOptions options;
  options.head_timeout_ms = 500;
  StartServer(options);
  io::Fd fd = Connect();
  const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  // One byte every 100 ms: each recv() alone is quick, the whole head never ends.
  bool closed = false;
  for (size_t i = 0; i < head.size() && !closed; ++i) {
    if (::send(fd.get(), &head[i], 1, MSG_NOSIGNAL) != 1) {
      closed = true;
      break;
    }
    closed = ClosedWithin(fd.get(), 100);
  }
  EXPECT_TRUE(closed) << "a head trickling for " << head.size() / 10.0 << " s was never closed";
}

TEST_F(HttpGateTest, AnOversizedHeadIsAnswered431) {
  StartServer({});
  io::Fd fd = Connect();
  const std::string head = absl::StrCat("GET / HTTP/1.1\r\nX-Big: ", std::string(70 << 10, 'a'));
  (void)gate_test::SendAll(fd.get(), head);
  EXPECT_TRUE(absl::StartsWith(gate_test::ReceiveUntilClosed(fd.get(), 5000), "HTTP/1.1 431"));
}

TEST_F(HttpGateTest, PipelinedRequestsOnOneConnectionAreEachAnswered) {
  StartServer({});
  io::Fd fd = Connect();
  const std::string one = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string last = "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_TRUE(gate_test::SendAll(fd.get(), one + one + last));
  const std::string got = gate_test::ReceiveUntilClosed(fd.get(), 5000);
  EXPECT_EQ(gate_test::Count(got, "HTTP/1.1 404"), 3u) << got;
}

}  // namespace
}  // namespace chunkferry::control
