// The API daemon over HTTPS, on 127.0.0.1: requests on kept-alive and pipelined TLS connections
// are each answered; a plain-HTTP client on the HTTPS port is told why and closed, a TLS client
// on a plain port closed at once; a certificate the client cannot check, a wrong pin, and (mutual
// TLS) a client without a certificate are refused; handshakes that stall are closed at the head
// deadline while an honest client is served.
#include <httplib.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/gate_test_util.h"
#include "control/http_api.h"
#include "control/registry.h"
#include "control/sync_service.h"
#include "engine/wire/tls.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/net.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"

namespace chunkferry::control {
namespace {

using Clock = std::chrono::steady_clock;
using ::chunkferry::testing::TempDir;
using ::chunkferry::testing::TlsIdentity;

class HttpsGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string& dir = tmp_.path();
    ASSERT_TRUE(ca_.Make(dir, "ca", true, nullptr).ok());
    ASSERT_TRUE(server_id_.Make(dir, "api", false, &ca_).ok());
    ASSERT_TRUE(client_id_.Make(dir, "client", false, &ca_).ok());
    ASSERT_TRUE(other_ca_.Make(dir, "other-ca", true, nullptr).ok());
    service_ = std::make_unique<SyncService>(Registry{}, ServiceOptions{});
  }
  void TearDown() override { server_.reset(); }

  // `client_ca`: mutual TLS, clients need a certificate this CA signed. `tls` false: plain HTTP.
  void StartServer(ApiServerOptions options, bool tls = true, const std::string& client_ca = "") {
    if (tls) {
      engine::TlsOptions o;
      o.cert_file = server_id_.cert_file();
      o.key_file = server_id_.key_file();
      o.ca_file = client_ca;
      auto made = engine::TlsContext::Make(o, engine::TlsRole::kServer);
      ASSERT_TRUE(made.ok()) << made.status();
      options.tls = *made;
    }
    options.log = [](const std::string&) {};
    server_ = std::make_unique<ApiServer>(*service_, options);
    absl::Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st;
  }

  std::unique_ptr<httplib::SSLClient> Client(const std::string& ca, bool with_cert = false) {
    auto c = with_cert
                 ? std::make_unique<httplib::SSLClient>(
                       "127.0.0.1", server_->port(), client_id_.cert_file(), client_id_.key_file())
                 : std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port());
    c->set_ca_cert_path(ca.c_str());
    c->enable_server_certificate_verification(true);
    c->set_connection_timeout(std::chrono::seconds(10));
    c->set_read_timeout(std::chrono::seconds(10));
    return c;
  }

  io::Fd Connect() { return gate_test::ConnectLocal(server_->port()); }

  // A TLS client on a raw socket, for what httplib's client does not do (pipelining, pins).
  struct RawTls {
    io::Fd fd;
    std::unique_ptr<engine::TlsChannel> tls;

    absl::Status Handshake() {
      for (;;) {
        absl::StatusOr<bool> done = tls->Handshake();
        if (!Flush()) return absl::UnavailableError("send failed");
        if (!done.ok()) return done.status();
        if (*done) return absl::OkStatus();
        char buf[16384];
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0) return absl::DeadlineExceededError("no handshake answer");
        const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
        if (n <= 0) return absl::UnavailableError("closed in the handshake");
        tls->Received(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n)));
      }
    }
    bool Flush() {
      std::string out;
      tls->TakePending(&out);
      return out.empty() || gate_test::SendAll(fd.get(), out);
    }
    bool Send(const std::string& plaintext) {
      for (size_t at = 0; at < plaintext.size();) {
        auto n = tls->Write(absl::MakeConstSpan(
            reinterpret_cast<const uint8_t*>(plaintext.data()) + at, plaintext.size() - at));
        if (!n.ok() || !Flush()) return false;
        at += *n;
      }
      return true;
    }
    // Plaintext the server sends until it closes (close_notify or EOF) or `ms` pass.
    std::string ReceiveAll(int ms) {
      const std::string cipher = gate_test::ReceiveUntilClosed(fd.get(), ms);
      tls->Received(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(cipher.data()), cipher.size()));
      std::string plain;
      char buf[16384];
      for (;;) {
        auto n = tls->Read(absl::MakeSpan(reinterpret_cast<uint8_t*>(buf), sizeof(buf)));
        if (!n.ok() || *n == 0) break;
        plain.append(buf, *n);
      }
      return plain;
    }
  };
  RawTls ConnectTls(engine::TlsOptions options) {
    RawTls raw;
    raw.fd = Connect();
    auto ctx = engine::TlsContext::Make(options, engine::TlsRole::kClient);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    if (ctx.ok()) raw.tls = std::make_unique<engine::TlsChannel>(*ctx);
    return raw;
  }

  TempDir tmp_;
  TlsIdentity ca_, server_id_, client_id_, other_ca_;
  std::unique_ptr<SyncService> service_;
  std::unique_ptr<ApiServer> server_;
};

TEST_F(HttpsGateTest, RequestsOnAKeptAliveConnectionAreEachAnswered) {
  StartServer({});
  auto client = Client(ca_.cert_file());
  client->set_keep_alive(true);
  for (int i = 0; i < 3; ++i) {
    auto r = client->Get("/zstack/v1/no-such-thing");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 404);
  }
}

TEST_F(HttpsGateTest, PipelinedRequestsInOneRecordAreEachAnswered) {
  StartServer({});
  engine::TlsOptions o;
  o.ca_file = ca_.cert_file();
  RawTls raw = ConnectTls(o);
  ASSERT_NE(raw.tls, nullptr);
  ASSERT_TRUE(raw.Handshake().ok());
  const std::string one = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string last = "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  // One TLS record holding three requests: the gate decrypts all of it into the connection, so
  // the second and third must be served from there, not waited for on the socket.
  ASSERT_TRUE(raw.Send(one + one + last));
  const std::string got = raw.ReceiveAll(5000);
  EXPECT_EQ(gate_test::Count(got, "HTTP/1.1 404"), 3u) << got;
}

TEST_F(HttpsGateTest, PlainHttpOnTheHttpsPortIsTold400AndClosed) {
  StartServer({});
  io::Fd fd = Connect();
  ASSERT_TRUE(gate_test::SendAll(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  bool closed = false;
  const std::string got = gate_test::ReceiveUntilClosed(fd.get(), 5000, &closed);
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 400")) << got;
  EXPECT_TRUE(absl::StrContains(got, "HTTPS only")) << got;
  EXPECT_TRUE(closed);
  auto r = Client(ca_.cert_file())->Get("/x");  // and the server goes on
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 404);
}

TEST_F(HttpsGateTest, ATlsClientOnAPlainPortIsClosedAtOnce) {
  ApiServerOptions options;
  options.head_timeout_ms = 60'000;  // so that a close within seconds is the gate's decision
  StartServer(options, /*tls=*/false);
  engine::TlsOptions o;
  o.ca_file = ca_.cert_file();
  RawTls raw = ConnectTls(o);
  ASSERT_NE(raw.tls, nullptr);
  absl::Status st = raw.Handshake();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.code(), absl::StatusCode::kDeadlineExceeded) << st;  // closed, not left waiting
}

TEST_F(HttpsGateTest, ACertificateTheClientCannotCheckIsRefused) {
  StartServer({});
  auto r = Client(other_ca_.cert_file())->Get("/x");
  EXPECT_FALSE(r);
  EXPECT_EQ(r.error(), httplib::Error::SSLServerVerification);

  engine::TlsOptions pinned;
  pinned.peer_sha256 = std::string(64, 'a');
  RawTls raw = ConnectTls(pinned);
  ASSERT_NE(raw.tls, nullptr);
  EXPECT_EQ(raw.Handshake().code(), absl::StatusCode::kUnauthenticated);

  auto pin = engine::CertificateSha256(server_id_.cert_file());
  ASSERT_TRUE(pin.ok());
  pinned.peer_sha256 = *pin;
  RawTls good = ConnectTls(pinned);
  ASSERT_NE(good.tls, nullptr);
  EXPECT_TRUE(good.Handshake().ok());
}

TEST_F(HttpsGateTest, MutualTlsServesOnlyClientsWithACertificate) {
  StartServer({}, /*tls=*/true, ca_.cert_file());
  EXPECT_FALSE(Client(ca_.cert_file())->Get("/x"));
  auto r = Client(ca_.cert_file(), /*with_cert=*/true)->Get("/x");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 404);
}

TEST_F(HttpsGateTest, StalledHandshakesHoldNoThreadAndCloseAtTheHeadDeadline) {
  ApiServerOptions options;
  options.http_threads = 1;
  options.head_timeout_ms = 1500;
  StartServer(options);
  // A TLS record header and nothing more, and connections that say nothing at all.
  std::vector<io::Fd> stalled;
  for (int i = 0; i < 50; ++i) {
    stalled.push_back(Connect());
    if (i % 2 == 0) {
      ASSERT_TRUE(gate_test::SendAll(stalled.back().get(), std::string("\x16\x03\x01\x02", 4)));
    }
  }
  auto answered = std::async(std::launch::async, [this] {
    auto r = Client(ca_.cert_file())->Get("/x");
    return r ? r->status : -1;
  });
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(15)), std::future_status::ready);
  EXPECT_EQ(answered.get(), 404);
  for (io::Fd& fd : stalled) {
    bool closed = false;
    gate_test::ReceiveUntilClosed(fd.get(), 10'000, &closed);
    EXPECT_TRUE(closed) << "a stalled handshake outlived the head deadline";
  }
}

}  // namespace
}  // namespace chunkferry::control
