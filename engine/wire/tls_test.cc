// TlsChannel between two in-memory ends: certificates made here (a CA, a server and a client
// certificate, and a stranger's), ciphertext carried by hand. Covers a CA-checked handshake and
// data both ways, a pinned fingerprint, a wrong CA or name or pin refused, mutual TLS, a
// plain-text peer refused cleanly, and an altered record caught.
#include "engine/wire/tls.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"
#include "tests/tls_pipe.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;
using ::chunkferry::testing::TlsIdentity;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ca_.Make(tmp_.path(), "ca", true, nullptr).ok());
    ASSERT_TRUE(other_ca_.Make(tmp_.path(), "other-ca", true, nullptr).ok());
    ASSERT_TRUE(server_.Make(tmp_.path(), "server", false, &ca_).ok());
    ASSERT_TRUE(client_.Make(tmp_.path(), "client", false, &ca_).ok());
    ASSERT_TRUE(stranger_.Make(tmp_.path(), "stranger", false, &other_ca_).ok());
  }

  std::shared_ptr<TlsContext> Context(const TlsOptions& o, TlsRole role) {
    auto c = TlsContext::Make(o, role);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }
  TlsOptions ServerOptions(const TlsIdentity& id) {
    TlsOptions o;
    o.cert_file = id.cert_file();
    o.key_file = id.key_file();
    return o;
  }

  // Runs both handshakes, carrying the ciphertext between them, until both end or one fails.
  // Returns the client's and the server's outcome.
  static std::pair<absl::Status, absl::Status> Handshake(TlsChannel& client, TlsChannel& server) {
    absl::Status c, s;
    bool c_done = false, s_done = false;
    for (int round = 0; round < 20 && !(c_done && s_done) && c.ok() && s.ok(); ++round) {
      if (!c_done) {
        auto r = client.Handshake();
        if (!r.ok()) c = r.status();
        c_done = r.ok() && *r;
      }
      Carry(client, server);
      if (!s_done) {
        auto r = server.Handshake();
        if (!r.ok()) s = r.status();
        s_done = r.ok() && *r;
      }
      Carry(server, client);
    }
    // One side may end while the other learns of the failure only from the alert.
    if (c.ok() && !c_done) {
      auto r = client.Handshake();
      if (!r.ok()) c = r.status();
    }
    if (s.ok() && !s_done) {
      auto r = server.Handshake();
      if (!r.ok()) s = r.status();
    }
    return {c, s};
  }
  static void Carry(TlsChannel& from, TlsChannel& to) { testing::CarryCiphertext(from, to); }
  // Sends `data` from `a` to `b` and reads it back whole: larger than the rings, it goes in
  // turns (encrypt what fits, carry, decrypt).
  static std::vector<uint8_t> RoundTrip(TlsChannel& a, TlsChannel& b,
                                        const std::vector<uint8_t>& data) {
    std::vector<uint8_t> got(data.size() + 100);
    size_t sent = 0, have = 0;
    for (bool progress = true; progress;) {
      auto w = a.Write(absl::MakeConstSpan(data).subspan(sent));
      EXPECT_TRUE(w.ok()) << w.status();
      if (!w.ok()) break;
      sent += *w;
      Carry(a, b);
      progress = *w > 0;
      for (;;) {
        auto n =
            b.Read(absl::MakeSpan(got).subspan(have, std::min<size_t>(70000, got.size() - have)));
        EXPECT_TRUE(n.ok()) << n.status();
        if (!n.ok() || *n == 0) break;
        have += *n;
        progress = true;
      }
    }
    got.resize(have);
    return got;
  }

  TempDir tmp_;
  TlsIdentity ca_, other_ca_, server_, client_, stranger_;
};

TEST_F(TlsTest, ACaCheckedHandshakeCarriesDataBothWays) {
  TlsOptions co;
  co.ca_file = ca_.cert_file();
  co.server_name = "store-b.example";
  TlsChannel client(Context(co, TlsRole::kClient));
  TlsChannel server(Context(ServerOptions(server_), TlsRole::kServer));
  auto [c, s] = Handshake(client, server);
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(absl::StartsWith(client.Description(), "TLSv1.3 TLS_")) << client.Description();
  const std::vector<uint8_t> data = testing::RandomBytes(5 << 20, 7);
  EXPECT_EQ(RoundTrip(client, server, data), data);
  const std::vector<uint8_t> back = testing::RandomBytes(100000, 8);
  EXPECT_EQ(RoundTrip(server, client, back), back);
  // close_notify reads as the end of the stream.
  client.Close();
  Carry(client, server);
  uint8_t buf[16];
  EXPECT_EQ(server.Read(absl::MakeSpan(buf)).status().code(), absl::StatusCode::kUnavailable);
}

// The zero-copy contract the daemon's client relies on: ciphertext handed out by Output() stays
// where it is, unchanged, while more records are written behind it (a send is in flight from it).
TEST_F(TlsTest, OutputStaysPutWhileMoreIsWritten) {
  TlsOptions co;
  co.ca_file = ca_.cert_file();
  TlsChannel client(Context(co, TlsRole::kClient));
  TlsChannel server(Context(ServerOptions(server_), TlsRole::kServer));
  ASSERT_TRUE(Handshake(client, server).first.ok());
  const std::vector<uint8_t> first = testing::RandomBytes(100000, 11);
  const std::vector<uint8_t> second = testing::RandomBytes(100000, 12);
  auto w = client.Write(first);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(*w, first.size());
  const absl::Span<const uint8_t> run = client.Output();
  ASSERT_FALSE(run.empty());
  const std::vector<uint8_t> before(run.begin(), run.end());
  w = client.Write(second);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(*w, second.size());
  EXPECT_EQ(client.Output().data(), run.data());
  EXPECT_EQ(std::vector<uint8_t>(run.begin(), run.end()), before);
  std::vector<uint8_t> both = first;
  both.insert(both.end(), second.begin(), second.end());
  Carry(client, server);
  std::vector<uint8_t> got(both.size() + 100);
  size_t have = 0;
  for (;;) {
    auto n = server.Read(absl::MakeSpan(got).subspan(have));
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    have += *n;
  }
  got.resize(have);
  EXPECT_EQ(got, both);
}

TEST_F(TlsTest, AServerOfAnotherCaOrNameIsRefused) {
  TlsOptions co;
  co.ca_file = other_ca_.cert_file();
  TlsChannel client(Context(co, TlsRole::kClient));
  TlsChannel server(Context(ServerOptions(server_), TlsRole::kServer));
  auto [c, s] = Handshake(client, server);
  EXPECT_EQ(c.code(), absl::StatusCode::kUnauthenticated) << c;
  EXPECT_FALSE(s.ok());

  co.ca_file = ca_.cert_file();
  co.server_name = "store-c.example";
  TlsChannel client2(Context(co, TlsRole::kClient));
  TlsChannel server2(Context(ServerOptions(server_), TlsRole::kServer));
  auto [c2, s2] = Handshake(client2, server2);
  EXPECT_EQ(c2.code(), absl::StatusCode::kUnauthenticated) << c2;
  co.server_name = "127.0.0.1";
  TlsChannel client3(Context(co, TlsRole::kClient));
  TlsChannel server3(Context(ServerOptions(server_), TlsRole::kServer));
  EXPECT_TRUE(Handshake(client3, server3).first.ok());
}

TEST_F(TlsTest, APinnedFingerprintAcceptsThatCertificateOnly) {
  auto pin = CertificateSha256(stranger_.cert_file());
  ASSERT_TRUE(pin.ok()) << pin.status();
  TlsOptions co;
  co.peer_sha256 = *pin;  // no CA: the pin alone decides
  {
    TlsChannel client(Context(co, TlsRole::kClient));
    TlsChannel server(Context(ServerOptions(stranger_), TlsRole::kServer));
    auto [c, s] = Handshake(client, server);
    EXPECT_TRUE(c.ok()) << c;
    EXPECT_TRUE(s.ok()) << s;
  }
  {
    TlsChannel client(Context(co, TlsRole::kClient));
    TlsChannel server(Context(ServerOptions(server_), TlsRole::kServer));
    auto [c, s] = Handshake(client, server);
    EXPECT_EQ(c.code(), absl::StatusCode::kUnauthenticated) << c;
  }
  co.peer_sha256 = "12:34";
  EXPECT_EQ(TlsContext::Make(co, TlsRole::kClient).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateTheCaSigned) {
  TlsOptions so = ServerOptions(server_);
  so.ca_file = ca_.cert_file();
  TlsOptions co;
  co.ca_file = ca_.cert_file();
  {
    TlsChannel client(Context(co, TlsRole::kClient));
    TlsChannel server(Context(so, TlsRole::kServer));
    EXPECT_EQ(Handshake(client, server).second.code(), absl::StatusCode::kUnauthenticated);
  }
  {
    TlsOptions stranger = co;
    stranger.cert_file = stranger_.cert_file();
    stranger.key_file = stranger_.key_file();
    TlsChannel client(Context(stranger, TlsRole::kClient));
    TlsChannel server(Context(so, TlsRole::kServer));
    EXPECT_EQ(Handshake(client, server).second.code(), absl::StatusCode::kUnauthenticated);
  }
  co.cert_file = client_.cert_file();
  co.key_file = client_.key_file();
  TlsChannel client(Context(co, TlsRole::kClient));
  TlsChannel server(Context(so, TlsRole::kServer));
  auto [c, s] = Handshake(client, server);
  EXPECT_TRUE(c.ok()) << c;
  EXPECT_TRUE(s.ok()) << s;
  const std::vector<uint8_t> data = testing::RandomBytes(3000, 9);
  EXPECT_EQ(RoundTrip(client, server, data), data);
}

TEST_F(TlsTest, APlainTextPeerIsRefusedCleanly) {
  TlsChannel server(Context(ServerOptions(server_), TlsRole::kServer));
  for (const std::string& plain :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string(40, '\0'),
        std::string("\x01\x00\x24\x00\x00\x00", 6) + std::string(64, 'h')}) {
    TlsChannel fresh(Context(ServerOptions(server_), TlsRole::kServer));
    fresh.Received({reinterpret_cast<const uint8_t*>(plain.data()), plain.size()});
    auto r = fresh.Handshake();
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
}

TEST_F(TlsTest, AnAlteredRecordIsDataLoss) {
  TlsOptions co;
  co.ca_file = ca_.cert_file();
  TlsChannel client(Context(co, TlsRole::kClient));
  TlsChannel server(Context(ServerOptions(server_), TlsRole::kServer));
  ASSERT_TRUE(Handshake(client, server).first.ok());
  const std::vector<uint8_t> data = testing::RandomBytes(1000, 10);
  ASSERT_TRUE(client.Write(data).ok());
  std::string bytes;
  client.TakePending(&bytes);
  bytes[bytes.size() / 2] ^= 1;
  server.Received({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  uint8_t buf[2000];
  EXPECT_EQ(server.Read(absl::MakeSpan(buf)).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(TlsTest, BadFilesAreClearErrors) {
  TlsOptions o = ServerOptions(server_);
  ASSERT_EQ(::chmod(server_.key_file().c_str(), 0644), 0);
  EXPECT_EQ(TlsContext::Make(o, TlsRole::kServer).status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(server_.key_file().c_str(), 0600), 0);
  o.key_file = client_.key_file();  // another certificate's key
  auto mismatch = TlsContext::Make(o, TlsRole::kServer);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(mismatch.status().message(), "does not match"))
      << mismatch.status();
  EXPECT_EQ(TlsContext::Make(TlsOptions{}, TlsRole::kServer).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TlsContext::Make(TlsOptions{}, TlsRole::kClient).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = ServerOptions(server_);
  o.cert_file = tmp_.Sub("absent.crt");
  EXPECT_FALSE(TlsContext::Make(o, TlsRole::kServer).ok());
}

}  // namespace
}  // namespace chunkferry::engine
