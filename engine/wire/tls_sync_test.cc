// Sync over TLS against an in-process daemon on 127.0.0.1: a group pushed and pulled back over
// TLS restores byte-identical (several connections, many frames); a daemon whose certificate
// the client does not trust (CA or fingerprint) is refused before any key proof; mutual TLS
// refuses a client without a certificate; a plain-text client and a TLS daemon (and the other
// way round) refuse each other cleanly.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/store/worker_pool.h"
#include "engine/wire/remote_store.h"
#include "engine/wire/store_server.h"
#include "engine/wire/tls.h"
#include "gtest/gtest.h"
#include "io/net.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;
using ::chunkferry::testing::TlsIdentity;

constexpr size_t kMiB = 1 << 20;

AuthKey KeyOf(uint8_t seed) {
  AuthKey key;
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = static_cast<uint8_t>(seed + i);
  return key;
}

class TlsSyncTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    ASSERT_TRUE(ca_.Make(tmp_.path(), "ca", true, nullptr).ok());
    ASSERT_TRUE(other_ca_.Make(tmp_.path(), "other-ca", true, nullptr).ok());
    ASSERT_TRUE(server_id_.Make(tmp_.path(), "server", false, &ca_).ok());
    ASSERT_TRUE(client_id_.Make(tmp_.path(), "client", false, &ca_).ok());
    for (const char* name : {"a", "b", "c"}) testing::InitStore(tmp_.Sub(name));
    a_ = OpenOk("a");
    b_ = OpenOk("b");
    c_ = OpenOk("c");
    vols_ = testing::ImportSampleGroup(*a_, pool_, tmp_, group_, 5, {4 * kMiB, 3 * kMiB, kMiB});
    ASSERT_TRUE(a_->Flush().ok());
  }
  void TearDown() override {
    server_.reset();
    for (auto* s : {&a_, &b_, &c_}) {
      if (*s) {
        EXPECT_TRUE((*s)->Close().ok());
      }
    }
    if (HasFailure()) std::printf("daemon log:\n%s", log_.c_str());
  }

  std::unique_ptr<LocalStore> OpenOk(const std::string& name) {
    auto s = testing::OpenStore(tmp_.Sub(name), GetParam(), true, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // Serves store B, over TLS unless `tls` is empty.
  void StartServer(const TlsOptions* tls) {
    ServerOptions o;
    o.listen = io::Endpoint{"127.0.0.1", 0};
    o.key = KeyOf(1);
    o.backend = GetParam();
    if (tls != nullptr) {
      auto ctx = TlsContext::Make(*tls, TlsRole::kServer);
      ASSERT_TRUE(ctx.ok()) << ctx.status();
      o.tls = *ctx;
    }
    o.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_ += line + "\n";
    };
    server_ = std::make_unique<StoreServer>(b_.get(), std::move(o));
    ASSERT_TRUE(server_->Start().ok());
  }
  TlsOptions ServerTls() {
    TlsOptions t;
    t.cert_file = server_id_.cert_file();
    t.key_file = server_id_.key_file();
    return t;
  }

  absl::StatusOr<std::unique_ptr<RemoteStore>> Connect(const TlsOptions* tls,
                                                       size_t connections = 1) {
    RemoteOptions o;
    o.endpoint = io::Endpoint{"127.0.0.1", server_->port()};
    o.key = KeyOf(1);
    o.connections = connections;
    o.backend = GetParam();
    o.busy_wait_ms = 0;
    o.append_frame_bytes = 1 * kMiB;
    if (tls != nullptr) {
      auto ctx = TlsContext::Make(*tls, TlsRole::kClient);
      if (!ctx.ok()) return ctx.status();
      o.tls = *ctx;
    }
    return RemoteStore::Connect(o);
  }
  TlsOptions TrustingCa() {
    TlsOptions t;
    t.ca_file = ca_.cert_file();
    t.server_name = "127.0.0.1";
    return t;
  }

  bool Logged(const std::string& text) {
    for (int i = 0; i < 300; ++i) {
      {
        std::lock_guard<std::mutex> lock(log_mu_);
        if (absl::StrContains(log_, text)) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  WorkerPool pool_{1};
  TempDir tmp_;
  TlsIdentity ca_, other_ca_, server_id_, client_id_;
  std::unique_ptr<LocalStore> a_, b_, c_;
  std::unique_ptr<StoreServer> server_;
  std::mutex log_mu_;
  std::string log_;
  std::string group_ = NewUuid();
  std::vector<testing::ImportedVolume> vols_;
};

TEST_P(TlsSyncTest, PushAndPullOverTlsRestoreIdentically) {
  const TlsOptions server_tls = ServerTls();
  StartServer(&server_tls);
  const TlsOptions client_tls = TrustingCa();
  auto remote = Connect(&client_tls, 3);
  ASSERT_TRUE(remote.ok()) << remote.status();
  CopyStats push;
  absl::Status st = CopyGroup(*a_, **remote, group_, CopyOptions(), &push);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_GT(push.bytes_sent, 2 * kMiB);
  // What crossed the wire: the records, encrypted (a few bytes per 16 KiB record more).
  EXPECT_GE((*remote)->wire_bytes_sent(), push.bytes_sent);
  EXPECT_LT((*remote)->wire_bytes_sent(), push.bytes_sent + 2 * kMiB);
  EXPECT_TRUE(Logged("over TLSv1.3 TLS_"));

  CopyStats again;
  ASSERT_TRUE(CopyGroup(*a_, **remote, group_, CopyOptions(), &again).ok());
  EXPECT_EQ(again.bytes_sent, 0u);

  CopyStats pull;
  st = CopyGroup(**remote, *c_, group_, CopyOptions(), &pull);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(pull.bytes_sent, push.bytes_sent);
  for (size_t i = 0; i < vols_.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*c_, pool_, vols_[i].meta.uuid, vols_[i].image,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
}

TEST_P(TlsSyncTest, ADaemonTheClientDoesNotTrustIsRefused) {
  const TlsOptions server_tls = ServerTls();
  StartServer(&server_tls);
  TlsOptions other = TrustingCa();
  other.ca_file = other_ca_.cert_file();
  auto refused = Connect(&other);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated) << refused.status();
  TlsOptions pinned;
  pinned.peer_sha256 = *CertificateSha256(client_id_.cert_file());  // not the daemon's
  EXPECT_EQ(Connect(&pinned).status().code(), absl::StatusCode::kUnauthenticated);
  pinned.peer_sha256 = *CertificateSha256(server_id_.cert_file());
  auto ok = Connect(&pinned);
  EXPECT_TRUE(ok.ok()) << ok.status();
  TlsOptions wrong_name = TrustingCa();
  wrong_name.server_name = "store-c.example";
  EXPECT_EQ(Connect(&wrong_name).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_P(TlsSyncTest, MutualTlsRefusesAClientWithoutACertificate) {
  TlsOptions server_tls = ServerTls();
  server_tls.ca_file = ca_.cert_file();
  StartServer(&server_tls);
  TlsOptions anonymous = TrustingCa();
  EXPECT_FALSE(Connect(&anonymous).ok());
  EXPECT_TRUE(Logged("refused: TLS handshake failed"));
  TlsOptions with_cert = TrustingCa();
  with_cert.cert_file = client_id_.cert_file();
  with_cert.key_file = client_id_.key_file();
  auto remote = Connect(&with_cert);
  ASSERT_TRUE(remote.ok()) << remote.status();
  CopyStats push;
  EXPECT_TRUE(CopyGroup(*a_, **remote, group_, CopyOptions(), &push).ok());
}

TEST_P(TlsSyncTest, PlainTextAndTlsRefuseEachOtherCleanly) {
  const TlsOptions server_tls = ServerTls();
  StartServer(&server_tls);
  auto plain = Connect(nullptr);
  ASSERT_FALSE(plain.ok());
  EXPECT_TRUE(absl::StrContains(plain.status().message(), "speaks TLS only")) << plain.status();
  EXPECT_TRUE(Logged("refused: a plain-text client (TLS is required)"));
  // The daemon goes on serving TLS clients.
  const TlsOptions client_tls = TrustingCa();
  EXPECT_TRUE(Connect(&client_tls).ok());

  server_.reset();
  StartServer(nullptr);
  auto tls_to_plain = Connect(&client_tls);
  ASSERT_FALSE(tls_to_plain.ok());
  EXPECT_TRUE(absl::StrContains(tls_to_plain.status().message(), "TLS")) << tls_to_plain.status();
}

INSTANTIATE_TEST_SUITE_P(Backends, TlsSyncTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry::engine
