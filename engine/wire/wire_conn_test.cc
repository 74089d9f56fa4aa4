#include "engine/wire/wire_conn.h"

#include <sys/socket.h>

#include <thread>

#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

AuthKey KeyOf(uint8_t fill) {
  AuthKey k;
  k.bytes.fill(fill);
  return k;
}

Welcome TestWelcome() {
  Welcome w;
  w.info.uuid = "0123456789abcdef0123456789abcdef";
  return w;
}

class WireConnTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    auto a = WireConn::Make(io::Fd(fds[0]), "client-side", GetParam());
    auto b = WireConn::Make(io::Fd(fds[1]), "server-side", GetParam());
    if (!a.ok() && GetParam() == io::Backend::kUring) GTEST_SKIP() << a.status();
    ASSERT_TRUE(a.ok() && b.ok());
    client_ = std::move(*a);
    server_ = std::move(*b);
  }
  std::unique_ptr<WireConn> client_, server_;
};

TEST_P(WireConnTest, HandshakeWithTheSameKeySetsLimits) {
  // One thread per side: a connection's queue belongs to the thread that uses it.
  absl::Status server_status;
  std::thread t([&] {
    server_status = ServerHandshake(*server_, KeyOf(7), TestWelcome());
    if (!server_status.ok()) return;
    auto f = server_->Recv();
    if (!f.ok()) {
      server_status = f.status();
      return;
    }
    std::string copy(reinterpret_cast<const char*>(f->payload.data()), f->payload.size());
    server_status = server_->Send(MsgType::kOk, copy);
  });
  auto welcome = ClientHandshake(*client_, KeyOf(7), "");
  ASSERT_TRUE(welcome.ok()) << welcome.status();
  EXPECT_EQ(welcome->info.uuid, TestWelcome().info.uuid);
  EXPECT_EQ(client_->max_recv_frame(), kDefaultMaxFrame);
  FrameBuffer fb;
  fb.Append(std::string(3 << 20, 'x'));
  ASSERT_TRUE(client_->Send(MsgType::kFlush, fb).ok());
  auto back = client_->Expect(MsgType::kOk);
  t.join();
  ASSERT_TRUE(server_status.ok()) << server_status;
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), size_t{3} << 20);
  EXPECT_EQ(server_->max_recv_frame(), kDefaultMaxFrame);
}

TEST_P(WireConnTest, WrongKeyIsRefusedOnBothSides) {
  absl::Status server_status;
  std::thread t([&] { server_status = ServerHandshake(*server_, KeyOf(7), TestWelcome()); });
  auto welcome = ClientHandshake(*client_, KeyOf(8), "");
  t.join();
  EXPECT_EQ(welcome.status().code(), absl::StatusCode::kUnauthenticated) << welcome.status();
  // The client found out first (the daemon's proof did not match) and never proved anything.
  EXPECT_FALSE(server_status.ok());
}

TEST_P(WireConnTest, ExpectedUuidMismatchIsRefused) {
  std::thread t([&] { (void)ServerHandshake(*server_, KeyOf(7), TestWelcome()); });
  auto welcome = ClientHandshake(*client_, KeyOf(7), "ffffffffffffffffffffffffffffffff");
  t.join();
  EXPECT_EQ(welcome.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(WireConnTest, VersionMismatchIsExplained) {
  absl::Status server_status;
  std::thread t([&] { server_status = ServerHandshake(*server_, KeyOf(7), TestWelcome()); });
  Hello hello;
  hello.min_version = 2;
  hello.max_version = 3;
  ASSERT_TRUE(client_->Send(MsgType::kHello, EncodeHello(hello)).ok());
  auto reply = client_->Expect(MsgType::kChallenge);
  t.join();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(reply.status().message().find("protocol version mismatch"), std::string::npos)
      << reply.status();
  EXPECT_EQ(server_status.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(WireConnTest, GarbageIsNotAPeer) {
  // Not a frame at all.
  const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(client_->fd(), garbage.data(), garbage.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(garbage.size()));
  auto f = server_->Recv(2000);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
}

TEST_P(WireConnTest, OversizedFrameIsRefusedBeforeItsPayload) {
  uint8_t header[kFrameHeaderSize];
  EncodeFrameHeader(static_cast<uint16_t>(MsgType::kAppend), 1u << 30, 0, header);
  ASSERT_EQ(::send(client_->fd(), header, sizeof(header), MSG_NOSIGNAL), 16);
  auto f = server_->Recv(2000);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kResourceExhausted) << f.status();
}

TEST_P(WireConnTest, SilentPeerTimesOutAndIsCutOff) {
  auto f = server_->Recv(150);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDeadlineExceeded) << f.status();
  // The stalled connection is shut down: the peer sees it closed.
  EXPECT_EQ(::send(client_->fd(), "x", 1, MSG_NOSIGNAL), -1);
}

TEST_P(WireConnTest, FrameCutShortByCloseEndsCleanly) {
  // A header announcing 100 bytes, 10 of them sent, then close.
  uint8_t header[kFrameHeaderSize];
  EncodeFrameHeader(static_cast<uint16_t>(MsgType::kHave), 100, 0, header);
  ASSERT_EQ(::send(client_->fd(), header, sizeof(header), MSG_NOSIGNAL), 16);
  ASSERT_EQ(::send(client_->fd(), "0123456789", 10, MSG_NOSIGNAL), 10);
  client_.reset();
  auto g = server_->Recv(2000);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kUnavailable) << g.status();
  EXPECT_NE(g.status().message().find("middle of a frame"), std::string::npos) << g.status();
}

INSTANTIATE_TEST_SUITE_P(Backends, WireConnTest,
                         ::testing::Values(io::Backend::kUring, io::Backend::kThreads),
                         [](const auto& p) { return std::string(io::BackendName(p.param)); });

}  // namespace
}  // namespace chunkferry::engine
