// The store daemon's named keys, attacked through a real daemon on 127.0.0.1: each key is allowed
// exactly what its rights say (the store's files do not change when it is refused), a reload
// revokes open connections, a key's quota and connection limit hold, and an unknown key name
// looks to the peer exactly like a wrong key.
#include <algorithm>
#include <map>
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
#include "engine/wire/key_ring.h"
#include "engine/wire/remote_store.h"
#include "engine/wire/store_server.h"
#include "gtest/gtest.h"
#include "io/net.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;
constexpr size_t kAppendFrame = 256 << 10;

AuthKey Secret(uint8_t seed, const std::string& name) {
  AuthKey key;
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = static_cast<uint8_t>(seed + i);
  key.name = name;
  return key;
}

std::string Line(const AuthKey& key, const std::string& rights, const std::string& limits = "") {
  std::string hex = FormatKeyFile(AuthKey{key.bytes, ""});
  hex.pop_back();  // "\n"
  return absl::StrCat(key.name, " ", rights, " ", hex, " ", limits, "\n");
}

const AuthKey kReplica = Secret(0x10, "replica");
const AuthKey kRestore = Secret(0x20, "restore");
const AuthKey kJanitor = Secret(0x30, "janitor");
const AuthKey kOps = Secret(0x40, "ops");
const AuthKey kSmall = Secret(0x50, "small");
const AuthKey kSingle = Secret(0x60, "single");

std::string AllKeys() {
  return absl::StrCat(Line(kReplica, "append"), Line(kRestore, "read"), Line(kJanitor, "delete"),
                      Line(kOps, "admin"), Line(kSmall, "append", "quota=1MiB"),
                      Line(kSingle, "read", "connections=1"));
}

KeyRing Ring(const std::string& text) {
  absl::StatusOr<KeyRing> ring = KeyRing::Parse(text);
  EXPECT_TRUE(ring.ok()) << ring.status();
  return ring.ok() ? *std::move(ring) : KeyRing::Single(AuthKey{});
}

class KeyRightsTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    for (const char* name : {"a", "b", "c"}) testing::InitStore(tmp_.Sub(name));
    a_ = OpenOk("a");
    b_ = OpenOk("b");
    c_ = OpenOk("c");
    ServerOptions o;
    o.listen = io::Endpoint{"127.0.0.1", 0};
    o.keys = Ring(AllKeys());
    o.key_usage_file = tmp_.Sub("b-usage");
    o.backend = GetParam();
    o.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_ += line + "\n";
    };
    server_ = std::make_unique<StoreServer>(b_.get(), std::move(o));
    absl::Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st;
    vols_ = testing::ImportSampleGroup(*a_, pool_, tmp_, group_, 3, {3 * kMiB, 2 * kMiB, kMiB});
    ASSERT_TRUE(a_->Flush().ok());
  }

  void TearDown() override {
    if (server_) server_->Stop();
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

  absl::StatusOr<std::unique_ptr<RemoteStore>> Connect(const AuthKey& key, size_t connections = 1) {
    RemoteOptions o;
    o.endpoint = io::Endpoint{"127.0.0.1", server_->port()};
    o.key = key;
    o.connections = connections;
    o.backend = GetParam();
    o.busy_wait_ms = 0;
    o.append_frame_bytes = kAppendFrame;
    return RemoteStore::Connect(o);
  }
  std::unique_ptr<RemoteStore> ConnectOk(const AuthKey& key) {
    auto r = Connect(key);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  // Pushes the group from A with `key`.
  absl::Status Push(const AuthKey& key) {
    auto remote = Connect(key);
    if (!remote.ok()) return remote.status();
    CopyStats stats;
    return CopyGroup(*a_, **remote, group_, CopyOptions(), &stats);
  }

  // The served store's files and their sizes.
  std::map<std::string, uint64_t> ServedFiles() {
    std::map<std::string, uint64_t> files;
    EXPECT_TRUE(server_
                    ->WithStore([&](LocalStore&) {
                      files = testing::ListFiles(tmp_.Sub("b"));
                      return absl::OkStatus();
                    })
                    .ok());
    return files;
  }

  bool ServedHasGroup() {
    bool has = false;
    EXPECT_TRUE(server_
                    ->WithStore([&](LocalStore& s) {
                      has = s.GetGroup(group_).ok();
                      return absl::OkStatus();
                    })
                    .ok());
    return has;
  }

  // True once the daemon logged `text` (its threads may log after the client returned).
  bool Logged(const std::string& text) {
    for (int i = 0; i < 500; ++i) {
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
  std::unique_ptr<LocalStore> a_, b_, c_;
  std::unique_ptr<StoreServer> server_;
  std::mutex log_mu_;
  std::string log_;
  std::string group_ = NewUuid();
  std::vector<testing::ImportedVolume> vols_;
};

// Each refused request ends its connection; the next attempt gets a fresh one.
#define EXPECT_DENIED(expr)                                            \
  do {                                                                 \
    const absl::Status st_ = (expr);                                   \
    EXPECT_EQ(st_.code(), absl::StatusCode::kPermissionDenied) << st_; \
  } while (0)

TEST_P(KeyRightsTest, AnAppendOnlyKeyPushesButCannotReadDeleteOrCollect) {
  absl::Status pushed = Push(kReplica);
  ASSERT_TRUE(pushed.ok()) << pushed;
  ASSERT_TRUE(ServedHasGroup());
  const auto before = ServedFiles();

  std::vector<codec::ChunkId> ids;
  for (const auto& e : testing::ManifestEntries(*a_, vols_[0].meta.uuid)) {
    if (!e.zero) ids.push_back(e.id);
  }
  EXPECT_DENIED(ConnectOk(kReplica)->OpenManifest(vols_[0].meta.uuid).status());
  EXPECT_DENIED(ConnectOk(kReplica)->ReadRecordsFor(
      ids, [](absl::Span<const absl::Span<const uint8_t>>) { return absl::OkStatus(); }));
  EXPECT_DENIED(ConnectOk(kReplica)->DeleteGroup(group_).status());
  EXPECT_DENIED(ConnectOk(kReplica)->CollectGarbage(GcRequest{}).status());
  // A pull with the replica's key gets nothing either.
  CopyStats pull;
  EXPECT_DENIED(CopyGroup(*ConnectOk(kReplica), *c_, group_, CopyOptions(), &pull));
  EXPECT_FALSE(c_->GetGroup(group_).ok());

  EXPECT_EQ(ServedFiles(), before);
  EXPECT_TRUE(ServedHasGroup());
  EXPECT_TRUE(Logged("key 'replica' (rights: append) may not send OPEN_MANIFEST"));
  EXPECT_TRUE(Logged("key 'replica' (rights: append) may not send DELETE"));
}

TEST_P(KeyRightsTest, AReadOnlyKeyPullsButCannotChangeTheStore) {
  ASSERT_TRUE(Push(kOps).ok());
  // Another group the read-only key tries to push.
  const std::string other = NewUuid();
  testing::ImportSampleGroup(*a_, pool_, tmp_, other, 9, {kMiB, kMiB, kMiB});
  ASSERT_TRUE(a_->Flush().ok());
  const auto before = ServedFiles();

  CopyStats stats;
  EXPECT_DENIED(CopyGroup(*a_, *ConnectOk(kRestore), other, CopyOptions(), &stats));
  EXPECT_DENIED(ConnectOk(kRestore)->DeleteGroup(group_).status());
  EXPECT_DENIED(ConnectOk(kRestore)->CollectGarbage(GcRequest{}).status());
  EXPECT_EQ(ServedFiles(), before);

  // What it may do: pull the group, which restores byte-identical.
  CopyStats pull;
  absl::Status pulled = CopyGroup(*ConnectOk(kRestore), *c_, group_, CopyOptions(), &pull);
  ASSERT_TRUE(pulled.ok()) << pulled;
  for (size_t i = 0; i < vols_.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*c_, pool_, vols_[i].meta.uuid, vols_[i].image,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
}

TEST_P(KeyRightsTest, ADeleteKeyDeletesButCannotReadOrAppend) {
  ASSERT_TRUE(Push(kOps).ok());
  EXPECT_DENIED(ConnectOk(kJanitor)->OpenManifest(vols_[0].meta.uuid).status());
  EXPECT_DENIED(Push(kJanitor));
  auto removed = ConnectOk(kJanitor)->DeleteGroup(group_);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->groups_removed, std::vector<std::string>{group_});
  EXPECT_FALSE(ServedHasGroup());
  // Only admin collects.
  EXPECT_DENIED(ConnectOk(kJanitor)->CollectGarbage(GcRequest{}).status());
  EXPECT_TRUE(ConnectOk(kOps)->CollectGarbage(GcRequest{}).ok());
}

TEST_P(KeyRightsTest, AReloadRevokesOpenConnections) {
  auto replica = ConnectOk(kReplica);
  auto restore = ConnectOk(kRestore);
  ASSERT_TRUE(replica->ListGroups().ok());
  ASSERT_TRUE(restore->ListGroups().ok());

  // "replica" removed; "restore" given another secret; "janitor" now read-only.
  AuthKey restore_rotated = Secret(0x70, "restore");
  server_->ReplaceKeys(Ring(
      absl::StrCat(Line(kOps, "admin"), Line(restore_rotated, "read"), Line(kJanitor, "read"))));
  EXPECT_EQ(replica->ListGroups().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(restore->ListGroups().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Connect(kReplica).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Connect(kRestore).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(ConnectOk(restore_rotated)->ListGroups().ok());
  EXPECT_DENIED(Push(kJanitor));
  EXPECT_TRUE(Logged("key 'replica' was revoked or replaced"));

  // The ops key was never touched: it pushes as before.
  EXPECT_TRUE(Push(kOps).ok());
}

TEST_P(KeyRightsTest, AKeysQuotaStopsItsAppendsAndSurvivesARestart) {
  const auto before = ServedFiles();
  uint64_t packs_before = 0;
  for (const auto& [path, size] : before)
    packs_before += absl::StrContains(path, "pack") ? size : 0;
  absl::Status pushed = Push(kSmall);
  EXPECT_EQ(pushed.code(), absl::StatusCode::kResourceExhausted) << pushed;
  EXPECT_TRUE(absl::StrContains(pushed.message(), "quota of key 'small'")) << pushed;
  EXPECT_FALSE(ServedHasGroup());
  // What it added stays within its quota: each APPEND is checked before it lands.
  uint64_t packs_after = 0;
  for (const auto& [path, size] : ServedFiles()) {
    packs_after += absl::StrContains(path, "pack") ? size : 0;
  }
  const uint64_t used = server_->key_usage("small");
  EXPECT_GT(used, 0u);
  EXPECT_LE(used, 1 * kMiB);
  EXPECT_LE(packs_after - packs_before, used + 64 * 1024);

  // The count survives a restart of the daemon (written at each commit step; flush it now).
  ASSERT_TRUE(ConnectOk(kReplica)->Flush().ok());
  server_->Stop();
  ServerOptions o;
  o.listen = io::Endpoint{"127.0.0.1", 0};
  o.keys = Ring(AllKeys());
  o.key_usage_file = tmp_.Sub("b-usage");
  o.backend = GetParam();
  server_ = std::make_unique<StoreServer>(b_.get(), std::move(o));
  ASSERT_TRUE(server_->Start().ok());
  EXPECT_EQ(server_->key_usage("small"), used);
  EXPECT_EQ(Push(kSmall).code(), absl::StatusCode::kResourceExhausted);
  // Another key is not limited by it.
  EXPECT_TRUE(Push(kReplica).ok());
  EXPECT_TRUE(ServedHasGroup());
}

TEST_P(KeyRightsTest, AKeysConnectionLimitLeavesOtherKeysServed) {
  auto first = ConnectOk(kSingle);
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<RemoteStore>> second = Connect(kSingle);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "key 'single' may have at most 1"))
      << second.status();
  EXPECT_TRUE(ConnectOk(kRestore)->ListGroups().ok());
  first.reset();
  // Once the first one is gone, the key connects again.
  absl::StatusOr<std::unique_ptr<RemoteStore>> again;
  for (int i = 0; i < 100; ++i) {
    again = Connect(kSingle);
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_P(KeyRightsTest, AnUnknownKeyNameLooksLikeAWrongKey) {
  const absl::Status unknown = Connect(Secret(0x10, "ghost")).status();
  const absl::Status wrong = Connect(Secret(0x11, "replica")).status();
  const absl::Status unnamed = Connect(Secret(0x10, "")).status();  // no key named "default"
  for (const absl::Status& st : {unknown, wrong, unnamed}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << st;
    EXPECT_FALSE(absl::StrContains(st.message(), "ghost")) << st;
  }
  EXPECT_EQ(unknown.message(), wrong.message());
  EXPECT_TRUE(Logged("no key named 'ghost'"));
  EXPECT_TRUE(Logged("(wrong key file?) (key 'replica')"));
}

INSTANTIATE_TEST_SUITE_P(Backends, KeyRightsTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry::engine
