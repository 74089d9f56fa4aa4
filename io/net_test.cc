#include "io/net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/internal/test_util.h"
#include "io/queue.h"

namespace chunkferry::io {

// Names backends in test output (gtest would print the enum's byte).
void PrintTo(Backend backend, std::ostream* os) { *os << BackendName(backend); }

namespace {

using ::chunkferry::io::testing::Pattern;
using Clock = std::chrono::steady_clock;

Request Send(int fd, const uint8_t* buf, uint32_t len, uint64_t tag) {
  // The queue never writes through a send request's buffer.
  Request r;
  r.op = Request::Op::kSend;
  r.fd = fd;
  r.buf = const_cast<uint8_t*>(buf);
  r.len = len;
  r.tag = tag;
  return r;
}

Request Recv(int fd, uint8_t* buf, uint32_t len, uint64_t tag, uint32_t flags = 0) {
  Request r;
  r.op = Request::Op::kRecv;
  r.fd = fd;
  r.buf = buf;
  r.len = len;
  r.tag = tag;
  r.flags = flags;
  return r;
}

int64_t MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// Sends all of `data` with plain syscalls (the test's side of a conversation).
void SendPlain(int fd, const std::vector<uint8_t>& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << "send: errno " << errno;
    done += static_cast<size_t>(n);
  }
}

// Both ends of a loopback TCP connection.
struct Connection {
  Fd client;
  Fd server;
};

// Connects to a fresh listener on 127.0.0.1 and accepts; the connection completes in the
// backlog, so one thread does both.
void MakeConnection(Connection* out) {
  absl::StatusOr<Fd> listener = Listen(Endpoint{"127.0.0.1", 0}, 16);
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<uint16_t> port = LocalPort(listener->get());
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_NE(*port, 0);
  absl::StatusOr<Fd> client = Connect(Endpoint{"127.0.0.1", *port}, 2000);
  ASSERT_TRUE(client.ok()) << client.status();
  std::string peer;
  absl::StatusOr<Fd> server = Accept(listener->get(), 2000, &peer);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<uint16_t> client_port = LocalPort(client->get());
  ASSERT_TRUE(client_port.ok()) << client_port.status();
  EXPECT_EQ(peer, absl::StrCat("127.0.0.1:", *client_port));
  ASSERT_TRUE(TuneSocket(client->get()).ok());
  ASSERT_TRUE(TuneSocket(server->get()).ok());
  out->client = *std::move(client);
  out->server = *std::move(server);
}

// ---- ParseEndpoint ----

TEST(ParseEndpointTest, AcceptsNamesIpv4AndBracketedIpv6) {
  struct Case {
    const char* text;
    Endpoint want;
  };
  for (const Case& c : {
           Case{"localhost:80", {"localhost", 80}},
           Case{"store-1.example.com:7070", {"store-1.example.com", 7070}},
           Case{"1.2.3.4:65535", {"1.2.3.4", 65535}},
           Case{"0.0.0.0:0", {"0.0.0.0", 0}},
           Case{"[::1]:9000", {"::1", 9000}},
           Case{"[::]:1", {"::", 1}},
           Case{"[fe80::1%eth0]:22", {"fe80::1%eth0", 22}},
           Case{"h:007", {"h", 7}},
       }) {
    absl::StatusOr<Endpoint> got = ParseEndpoint(c.text);
    ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
    EXPECT_EQ(got->host, c.want.host) << c.text;
    EXPECT_EQ(got->port, c.want.port) << c.text;
  }
}

TEST(ParseEndpointTest, RejectsMalformedTextSayingWhy) {
  struct Case {
    const char* text;
    const char* why;  // part of the message
  };
  for (const Case& c : {
           Case{"", "empty"},
           Case{"localhost", "no port"},
           Case{"localhost:", "empty port"},
           Case{":80", "empty host"},
           Case{"[]:80", "empty host"},
           Case{"host:http", "not a decimal number"},
           Case{"host:-1", "not a decimal number"},
           Case{"host:+1", "not a decimal number"},
           Case{"host:1x", "not a decimal number"},
           Case{"host:65536", "out of range"},
           Case{"host:99999999999999999999", "out of range"},
           Case{"::1:80", "needs brackets"},
           Case{"[::1]", "no port"},
           Case{"[::1]80", "no port"},
           Case{"[::1:80", "without ']'"},
           Case{"[1.2.3.4]:80", "brackets are for IPv6"},
           Case{"a]b:80", "stray bracket"},
           Case{"host :80", "space"},
           Case{"host:80\n", "space"},
       }) {
    absl::StatusOr<Endpoint> got = ParseEndpoint(c.text);
    ASSERT_FALSE(got.ok()) << "\"" << c.text << "\" parsed as " << got->host << " " << got->port;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
    EXPECT_TRUE(absl::StrContains(got.status().message(), c.why))
        << "\"" << c.text << "\": " << got.status();
    EXPECT_TRUE(absl::StrContains(got.status().message(), absl::StrCat("\"", c.text, "\"")))
        << got.status();
  }
}

TEST(ParseEndpointTest, FormatEndpointRoundTrips) {
  for (const char* text : {"localhost:80", "1.2.3.4:0", "[::1]:9000"}) {
    absl::StatusOr<Endpoint> parsed = ParseEndpoint(text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(FormatEndpoint(*parsed), text);
  }
}

// ---- Setup: listen, accept, connect, tune ----

TEST(NetSetupTest, ConnectToAClosedPortIsUnavailableAndNamesTheAddress) {
  uint16_t port = 0;
  {
    absl::StatusOr<Fd> listener = Listen(Endpoint{"127.0.0.1", 0}, 1);
    ASSERT_TRUE(listener.ok()) << listener.status();
    absl::StatusOr<uint16_t> bound = LocalPort(listener->get());
    ASSERT_TRUE(bound.ok()) << bound.status();
    port = *bound;
  }  // closed: nothing listens there now
  absl::StatusOr<Fd> fd = Connect(Endpoint{"127.0.0.1", port}, 2000);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kUnavailable) << fd.status();
  EXPECT_TRUE(absl::StrContains(fd.status().message(), absl::StrCat("127.0.0.1:", port)))
      << fd.status();
  EXPECT_TRUE(absl::StrContains(fd.status().message(), "refused")) << fd.status();
}

TEST(NetSetupTest, ConnectTriesEveryAddressOfAName) {
  // "localhost" may resolve to ::1 before 127.0.0.1; only the latter listens.
  absl::StatusOr<Fd> listener = Listen(Endpoint{"127.0.0.1", 0}, 1);
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<uint16_t> port = LocalPort(listener->get());
  ASSERT_TRUE(port.ok()) << port.status();
  absl::StatusOr<Fd> client = Connect(Endpoint{"localhost", *port}, 2000);
  if (absl::IsNotFound(client.status())) GTEST_SKIP() << "no localhost here: " << client.status();
  ASSERT_TRUE(client.ok()) << client.status();
  std::string peer;
  absl::StatusOr<Fd> server = Accept(listener->get(), 2000, &peer);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(absl::StartsWith(peer, "127.0.0.1:")) << peer;
}

TEST(NetSetupTest, ConnectToPortZeroIsInvalidArgument) {
  EXPECT_EQ(Connect(Endpoint{"127.0.0.1", 0}, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NetSetupTest, AcceptTimesOutWithDeadlineExceeded) {
  absl::StatusOr<Fd> listener = Listen(Endpoint{"127.0.0.1", 0}, 1);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const Clock::time_point start = Clock::now();
  std::string peer = "untouched";
  absl::StatusOr<Fd> fd = Accept(listener->get(), 50, &peer);
  const int64_t elapsed = MillisSince(start);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kDeadlineExceeded) << fd.status();
  EXPECT_GE(elapsed, 50);
  EXPECT_LT(elapsed, 1000);
  EXPECT_EQ(peer, "untouched");
}

TEST(NetSetupTest, ListenOnAPortInUseIsAlreadyExists) {
  absl::StatusOr<Fd> first = Listen(Endpoint{"127.0.0.1", 0}, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<uint16_t> port = LocalPort(first->get());
  ASSERT_TRUE(port.ok()) << port.status();
  absl::StatusOr<Fd> second = Listen(Endpoint{"127.0.0.1", *port}, 1);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), absl::StrCat("127.0.0.1:", *port)))
      << second.status();
}

TEST(NetSetupTest, Ipv6LoopbackWorksWhereConfigured) {
  absl::StatusOr<Fd> listener = Listen(Endpoint{"::1", 0}, 1);
  if (!listener.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << listener.status();
  absl::StatusOr<uint16_t> port = LocalPort(listener->get());
  ASSERT_TRUE(port.ok()) << port.status();
  absl::StatusOr<Fd> client = Connect(Endpoint{"::1", *port}, 2000);
  ASSERT_TRUE(client.ok()) << client.status();
  std::string peer;
  absl::StatusOr<Fd> server = Accept(listener->get(), 2000, &peer);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(absl::StartsWith(peer, "[::1]:")) << peer;
}

TEST(NetSetupTest, TuneSocketSetsNoDelayAndRefusesNonSockets) {
  Connection conn;
  ASSERT_NO_FATAL_FAILURE(MakeConnection(&conn));  // tunes both ends
  int nodelay = 0;
  socklen_t len = sizeof(nodelay);
  ASSERT_EQ(::getsockopt(conn.client.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  EXPECT_NE(nodelay, 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);
  EXPECT_FALSE(TuneSocket(reader.get()).ok());
}

TEST(NetSetupTest, SocketErrorStatusCodesPeerFailuresUnavailable) {
  absl::Status status = SocketErrorStatus(ECONNRESET, "recv", "fd 7");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(status.message(), "recv fd 7")) << status;
  EXPECT_EQ(SocketErrorStatus(EPIPE, "send", "fd 7").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(SocketErrorStatus(EMFILE, "accept", "fd 3").code(),
            absl::StatusCode::kResourceExhausted);
}

// ---- Sending and receiving through the queue, on both backends ----

class NetQueueTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Queue>> queue = NewQueue();
    if (!queue.ok() && GetParam() == Backend::kUring) {
      GTEST_SKIP() << "io_uring unavailable here: " << queue.status();
    }
    ASSERT_TRUE(queue.ok()) << queue.status();
    queue_ = *std::move(queue);
    ASSERT_NO_FATAL_FAILURE(MakeConnection(&conn_));
  }

  absl::StatusOr<std::unique_ptr<Queue>> NewQueue() {
    return MakeQueue(QueueOptions{GetParam(), 16, 4});
  }

  // Reaps one completion, failing (not hanging) when none comes within a few seconds.
  Completion ReapOne(Queue& queue) {
    Completion c{~uint64_t{0}, 0};
    absl::StatusOr<size_t> got = queue.ReapFor(absl::MakeSpan(&c, 1), 1, 5000);
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got.value_or(0), 1u) << "no completion within 5 s";
    return c;
  }

  Connection conn_;
  std::unique_ptr<Queue> queue_;
};

TEST_P(NetQueueTest, EightMiBOverFourConnectionsWithSendsInFlight) {
  constexpr int kConns = 4;
  constexpr uint32_t kPerConn = 2 << 20;  // 8 MiB in all
  constexpr uint32_t kChunk = 256 << 10;
  std::vector<Connection> conns(kConns);
  std::vector<std::vector<uint8_t>> data;
  for (int c = 0; c < kConns; ++c) {
    ASSERT_NO_FATAL_FAILURE(MakeConnection(&conns[c]));
    data.push_back(Pattern(kPerConn, 100 + c));
  }

  // The sender has its own queue on its own thread: an io_uring queue only makes progress while
  // its thread reaps it, so one thread blocked on the receiving queue would stall the sends.
  std::thread sender([&] {
    absl::StatusOr<std::unique_ptr<Queue>> queue = NewQueue();
    ASSERT_TRUE(queue.ok()) << queue.status();
    std::vector<uint32_t> sent(kConns, 0);
    std::vector<uint32_t> in_flight(kConns, 0);  // length of the send in flight, or 0
    int finished = 0;
    std::vector<Completion> batch(kConns);
    while (finished < kConns) {
      for (int c = 0; c < kConns; ++c) {
        if (in_flight[c] != 0 || sent[c] == kPerConn) continue;
        // Varying lengths so that chunks do not line up with the receiver's.
        const uint32_t len = std::min(kPerConn - sent[c], kChunk - 4096 * c - 1);
        ASSERT_TRUE(
            (*queue)->Submit(Send(conns[c].client.get(), data[c].data() + sent[c], len, c)).ok());
        in_flight[c] = len;
      }
      absl::StatusOr<size_t> got = (*queue)->ReapFor(absl::MakeSpan(batch), 1, 5000);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_GT(*got, 0u) << "sends stalled";
      for (size_t i = 0; i < *got; ++i) {
        const auto c = static_cast<int>(batch[i].tag);
        ASSERT_EQ(batch[i].result, in_flight[c]) << "connection " << c;
        sent[c] += in_flight[c];
        in_flight[c] = 0;
        if (sent[c] == kPerConn) {
          ++finished;
          // End of stream for the receiver, which checks that nothing follows.
          ASSERT_EQ(::shutdown(conns[c].client.get(), SHUT_WR), 0);
        }
      }
    }
  });

  std::vector<std::vector<uint8_t>> back(kConns, std::vector<uint8_t>(kPerConn + 1, 0));
  std::vector<uint32_t> received(kConns, 0);
  std::vector<bool> eof(kConns, false);
  std::vector<bool> busy(kConns, false);
  int done = 0;
  int receives = 0;
  std::vector<Completion> batch(kConns);
  bool failed = false;
  while (done < kConns && !failed) {
    for (int c = 0; c < kConns; ++c) {
      if (busy[c] || eof[c]) continue;
      // Once all has come, one more receive must see end of stream.
      const uint32_t len = received[c] == kPerConn ? 1 : std::min(kPerConn - received[c], kChunk);
      ASSERT_TRUE(
          queue_->Submit(Recv(conns[c].server.get(), back[c].data() + received[c], len, c)).ok());
      busy[c] = true;
    }
    absl::StatusOr<size_t> got = queue_->ReapFor(absl::MakeSpan(batch), 1, 5000);
    ASSERT_TRUE(got.ok()) << got.status();
    if (*got == 0) {
      ADD_FAILURE() << "receives stalled";
      failed = true;
    }
    for (size_t i = 0; i < *got; ++i) {
      const auto c = static_cast<int>(batch[i].tag);
      busy[c] = false;
      ++receives;
      if (received[c] == kPerConn) {
        EXPECT_EQ(batch[i].result, 0) << "bytes after the end, connection " << c;
        eof[c] = true;
        ++done;
        continue;
      }
      if (batch[i].result <= 0) {
        ADD_FAILURE() << "connection " << c << ": receive returned " << batch[i].result << " after "
                      << received[c] << " bytes";
        failed = true;
        continue;
      }
      received[c] += static_cast<uint32_t>(batch[i].result);
    }
  }
  if (failed) {
    // Unblock the sender and drain before the buffers go away.
    for (Connection& conn : conns) ::shutdown(conn.server.get(), SHUT_RDWR);
    while (queue_->in_flight() > 0) ReapOne(*queue_);
  }
  sender.join();
  for (int c = 0; c < kConns; ++c) {
    EXPECT_EQ(received[c], kPerConn) << "connection " << c;
    EXPECT_TRUE(std::equal(data[c].begin(), data[c].end(), back[c].begin())) << "connection " << c;
  }
  EXPECT_GT(receives, 2 * kConns);  // more than one chunk each, as intended
}

TEST_P(NetQueueTest, RecvReturnsWhatHasArrivedAndRecvAllWaitsForTheRest) {
  const std::vector<uint8_t> data = Pattern(3000, 1);
  // Plain kRecv: 1000 bytes are there, so it completes with exactly those.
  ASSERT_NO_FATAL_FAILURE(SendPlain(conn_.client.get(), {data.begin(), data.begin() + 1000}));
  std::vector<uint8_t> buf(3001, 0xee);
  absl::StatusOr<int64_t> n = RunOne(*queue_, Recv(conn_.server.get(), buf.data(), 3000, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 1000);
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 1000, buf.begin()));
  EXPECT_EQ(buf[1000], 0xee);

  // kRecvAll: the rest arrives in pieces, 20 ms apart; the receive completes with all of it.
  std::fill(buf.begin(), buf.end(), 0xee);
  std::thread producer([&] {
    for (int i = 0; i < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const auto begin = data.begin() + 1000 + 500 * i;
      SendPlain(conn_.client.get(), {begin, begin + 500});
    }
  });
  n = RunOne(*queue_, Recv(conn_.server.get(), buf.data(), 2000, 2, Request::kRecvAll));
  producer.join();
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 2000);
  EXPECT_TRUE(std::equal(data.begin() + 1000, data.end(), buf.begin()));
  EXPECT_EQ(buf[2000], 0xee);
}

TEST_P(NetQueueTest, PeerCloseEndsRecvAllShortThenRecvReturnsZero) {
  const std::vector<uint8_t> data = Pattern(500, 2);
  ASSERT_NO_FATAL_FAILURE(SendPlain(conn_.client.get(), data));
  conn_.client.Reset();
  std::vector<uint8_t> buf(1000, 0);
  absl::StatusOr<int64_t> n =
      RunOne(*queue_, Recv(conn_.server.get(), buf.data(), 1000, 1, Request::kRecvAll));
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 500);  // end of stream before 1000 bytes
  EXPECT_TRUE(std::equal(data.begin(), data.end(), buf.begin()));
  n = RunOne(*queue_, Recv(conn_.server.get(), buf.data(), 1000, 2));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
  n = RunOne(*queue_, Recv(conn_.server.get(), buf.data(), 1000, 3, Request::kRecvAll));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
}

TEST_P(NetQueueTest, SendToAClosedPeerFailsWithoutSigpipe) {
  conn_.server.Reset();
  const std::vector<uint8_t> data(8 << 20, 0x5a);
  // The first bytes may still be accepted before the peer's reset arrives; the rest cannot.
  int64_t result = 0;
  for (uint64_t i = 0; i < 3 && result >= 0; ++i) {
    absl::StatusOr<int64_t> n = RunOne(*queue_, Send(conn_.client.get(), data.data(), 8 << 20, i));
    ASSERT_TRUE(n.ok()) << n.status();
    result = *n;
  }
  EXPECT_TRUE(result == -EPIPE || result == -ECONNRESET) << result;
  EXPECT_EQ(SocketErrorStatus(static_cast<int>(-result), "send", "x").code(),
            absl::StatusCode::kUnavailable);
}

TEST_P(NetQueueTest, ReapForTimesOutOnAnIdleSocketAndShutdownCompletesTheRecv) {
  uint8_t byte = 0xee;
  ASSERT_TRUE(queue_->Submit(Recv(conn_.server.get(), &byte, 1, 7)).ok());
  Completion c{0, 12345};
  const Clock::time_point start = Clock::now();
  absl::StatusOr<size_t> got = queue_->ReapFor(absl::MakeSpan(&c, 1), 1, 50);
  const int64_t elapsed = MillisSince(start);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 0u);
  EXPECT_GE(elapsed, 45);
  EXPECT_LT(elapsed, 1000);
  EXPECT_EQ(queue_->in_flight(), 1u);
  EXPECT_EQ(c.result, 12345);  // untouched

  // A zero timeout only collects.
  got = queue_->ReapFor(absl::MakeSpan(&c, 1), 1, 0);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 0u);

  ASSERT_EQ(::shutdown(conn_.server.get(), SHUT_RDWR), 0);
  c = ReapOne(*queue_);
  EXPECT_EQ(c.tag, 7u);
  EXPECT_EQ(c.result, 0);
  EXPECT_EQ(byte, 0xee);
  EXPECT_EQ(queue_->in_flight(), 0u);
}

TEST_P(NetQueueTest, ShutdownEndsAPartialRecvAllWithWhatArrived) {
  const std::vector<uint8_t> data = Pattern(100, 4);
  ASSERT_NO_FATAL_FAILURE(SendPlain(conn_.client.get(), data));
  std::vector<uint8_t> buf(1000, 0);
  ASSERT_TRUE(
      queue_->Submit(Recv(conn_.server.get(), buf.data(), 1000, 8, Request::kRecvAll)).ok());
  Completion c;
  absl::StatusOr<size_t> got = queue_->ReapFor(absl::MakeSpan(&c, 1), 1, 50);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(*got, 0u);  // 100 of 1000 bytes: still waiting
  ASSERT_EQ(::shutdown(conn_.server.get(), SHUT_RDWR), 0);
  c = ReapOne(*queue_);
  EXPECT_EQ(c.tag, 8u);
  ASSERT_EQ(c.result, 100);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), buf.begin()));
}

TEST_P(NetQueueTest, ShutdownFailsASendStalledOnAPeerThatDoesNotRead) {
  // Far more than the socket buffers of both ends (8 MiB each at most after TuneSocket) hold
  // while nobody reads.
  const std::vector<uint8_t> data(32 << 20, 0x5a);
  ASSERT_TRUE(queue_->Submit(Send(conn_.client.get(), data.data(), 32 << 20, 9)).ok());
  Completion c;
  absl::StatusOr<size_t> got = queue_->ReapFor(absl::MakeSpan(&c, 1), 1, 100);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(*got, 0u) << "the send finished: result " << c.result;
  ASSERT_EQ(::shutdown(conn_.client.get(), SHUT_RDWR), 0);
  c = ReapOne(*queue_);
  EXPECT_EQ(c.tag, 9u);
  EXPECT_EQ(c.result, -EPIPE);
}

TEST_P(NetQueueTest, BadFlagsAreRefusedAtSubmit) {
  uint8_t byte = 0;
  Request send = Send(conn_.client.get(), &byte, 1, 1);
  send.flags = Request::kRecvAll;
  EXPECT_EQ(queue_->Submit(send).code(), absl::StatusCode::kInvalidArgument);
  Request recv = Recv(conn_.server.get(), &byte, 1, 2, 0x80);
  EXPECT_EQ(queue_->Submit(recv).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(queue_->Submit(Recv(conn_.server.get(), nullptr, 1, 3)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(queue_->in_flight(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, NetQueueTest,
                         ::testing::Values(Backend::kUring, Backend::kThreads),
                         [](const ::testing::TestParamInfo<Backend>& param) {
                           return std::string(BackendName(param.param));
                         });

}  // namespace
}  // namespace chunkferry::io
