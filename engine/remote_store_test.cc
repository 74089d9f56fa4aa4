// RemoteStore against an in-process StoreServer over 127.0.0.1: a group pushed with the copier
// restores byte-identical from the served store, pulls back into a third store identically, a
// second sync moves no chunk data, a related group moves only its new chunks, and the failure
// paths (wrong key, wrong store, damaged records, unknown ids) give clear errors.
#include "engine/remote_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "engine/copier.h"
#include "engine/local_store.h"
#include "engine/pack.h"
#include "engine/store_server.h"
#include "engine/worker_pool.h"
#include "gtest/gtest.h"
#include "io/net.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

AuthKey KeyOf(uint8_t seed) {
  AuthKey key;
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = static_cast<uint8_t>(seed + i);
  return key;
}

struct Volume {
  std::string image;
  VolumeBackupMeta meta;
  ImportStats stats;
};

class RemoteStoreTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    for (const char* name : {"a", "b", "c"}) testing::InitStore(tmp_.Sub(name));
    a_ = OpenOk("a");
    b_ = OpenOk("b");
    c_ = OpenOk("c");
    ServerOptions o;
    o.listen = io::Endpoint{"127.0.0.1", 0};
    o.key = KeyOf(1);
    o.backend = GetParam();
    o.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_ += line + "\n";
    };
    server_ = std::make_unique<StoreServer>(b_.get(), std::move(o));
    absl::Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st;
  }

  void TearDown() override {
    if (server_) server_->Stop();
    server_.reset();
    for (auto* s : {&a_, &b_, &c_}) {
      if (*s) {
        EXPECT_TRUE((*s)->Close().ok());
      }
    }
    if (HasFailure()) {
      std::lock_guard<std::mutex> lock(log_mu_);
      std::printf("daemon log:\n%s", log_.c_str());
    }
  }

  std::unique_ptr<LocalStore> OpenOk(const std::string& name, bool writable = true) {
    auto s = testing::OpenStore(tmp_.Sub(name), GetParam(), writable, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  RemoteOptions Options(size_t connections = 2) {
    RemoteOptions o;
    o.endpoint = io::Endpoint{"127.0.0.1", server_->port()};
    o.key = KeyOf(1);
    o.connections = connections;
    o.backend = GetParam();
    o.append_frame_bytes = 1 * kMiB;  // many frames, over every connection
    return o;
  }

  std::unique_ptr<RemoteStore> ConnectOk(const RemoteOptions& o) {
    auto r = RemoteStore::Connect(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  Volume ImportOk(LocalStore& store, const std::string& image, const std::string& group,
                  const std::string& type) {
    Volume v;
    v.image = image;
    auto meta = testing::Import(store, pool_, image, group, type, &v.stats);
    EXPECT_TRUE(meta.ok()) << meta.status();
    if (meta.ok()) v.meta = *meta;
    return v;
  }

  // Root + two Data volumes in store A.
  std::vector<Volume> BuildGroup(const std::string& group, uint64_t seed) {
    const std::string root = tmp_.Sub(absl::StrCat("root-", seed));
    const std::string data1 = tmp_.Sub(absl::StrCat("data1-", seed));
    const std::string data2 = tmp_.Sub(absl::StrCat("data2-", seed));
    testing::WriteMixedFile(root, 9 * kMiB + 512, seed);
    testing::WriteTextFile(data1, 4 * kMiB, seed + 1);
    testing::WriteRandomFile(data2, 7 * kMiB - 7, seed + 2);
    std::vector<Volume> vols;
    vols.push_back(ImportOk(*a_, root, group, "Root"));
    vols.push_back(ImportOk(*a_, data1, group, "Data"));
    vols.push_back(ImportOk(*a_, data2, group, "Data"));
    EXPECT_TRUE(a_->Flush().ok());
    return vols;
  }

  // Restores every volume from the served store (under the daemon's store lock).
  void ExpectServedRestores(const std::vector<Volume>& vols) {
    for (size_t i = 0; i < vols.size(); ++i) {
      ::testing::AssertionResult same = ::testing::AssertionSuccess();
      absl::Status st = server_->WithStore([&](LocalStore& s) {
        same = testing::RestoresIdentical(s, pool_, vols[i].meta.uuid, vols[i].image,
                                          tmp_.Sub(absl::StrCat("served-out", i)));
        return absl::OkStatus();
      });
      EXPECT_TRUE(st.ok()) << st;
      EXPECT_TRUE(same);
    }
  }

  WorkerPool pool_{1};
  TempDir tmp_;
  std::unique_ptr<LocalStore> a_, b_, c_;
  std::unique_ptr<StoreServer> server_;
  std::mutex log_mu_;
  std::string log_;
  std::string group_ = NewUuid();
};

TEST_P(RemoteStoreTest, ConnectReportsTheServedStore) {
  auto r = ConnectOk(Options(3));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->info().uuid, b_->info().uuid);
  EXPECT_EQ(r->info().chunker.ToString(), b_->info().chunker.ToString());
  EXPECT_EQ(r->info().key_fingerprint, b_->info().key_fingerprint);
  EXPECT_EQ(r->location(), absl::StrCat("127.0.0.1:", server_->port()));
  EXPECT_EQ(r->connections(), 3u);
  EXPECT_GT(r->wire_bytes_sent(), 0u);  // the handshakes
  auto groups = r->ListGroups();
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_TRUE(groups->empty());
}

TEST_P(RemoteStoreTest, PushRestoresIdenticallyAndPullsBack) {
  const auto vols = BuildGroup(group_, 1);
  uint64_t logical = 0, new_chunks = 0, data_entries = 0;
  for (const auto& v : vols) {
    logical += v.meta.size;
    new_chunks += v.stats.new_chunks;
    data_entries += v.stats.chunks - v.stats.zero_chunks;
  }
  auto remote = ConnectOk(Options(3));
  ASSERT_NE(remote, nullptr);

  // Push A → daemon (B).
  std::vector<ProgressState> ticks;
  ProgressFn progress = [&](const ProgressState& s) { ticks.push_back(s); };
  CopyStats push;
  absl::Status st = CopyGroup(*a_, *remote, group_, CopyOptions(), &push, &progress);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(push.volumes, 3u);
  EXPECT_EQ(push.logical_bytes, logical);
  EXPECT_EQ(push.chunks_referenced, data_entries);
  EXPECT_EQ(push.chunks_missing, new_chunks);
  EXPECT_EQ(push.appended.chunks_added, new_chunks);
  EXPECT_EQ(push.bytes_sent, testing::TotalPackBytes(tmp_.Sub("a")) - kPackHeaderSize);
  EXPECT_EQ(push.appended.bytes_appended, push.bytes_sent);
  EXPECT_EQ(push.appended.records_received, push.records_sent);
  // The records crossed the wire once (plus frame headers, ids and manifests).
  EXPECT_GE(remote->wire_bytes_sent(), push.bytes_sent);
  EXPECT_LT(remote->wire_bytes_sent(), push.bytes_sent + 2 * kMiB);
  // Progress knew its totals and ended complete.
  ASSERT_FALSE(ticks.empty());
  EXPECT_TRUE(ticks.back().final);
  EXPECT_EQ(ticks.back().bytes_total, logical);
  EXPECT_EQ(ticks.back().bytes_done, logical);
  EXPECT_EQ(ticks.back().chunks_total, data_entries);
  EXPECT_EQ(ticks.back().chunks_done, data_entries);

  // The served store has the group, durable, and restores it byte-identical.
  auto g = remote->GetGroup(group_);
  ASSERT_TRUE(g.ok()) << g.status();
  auto ga = a_->GetGroup(group_);
  ASSERT_TRUE(ga.ok());
  EXPECT_EQ(g->volume_uuids, ga->volume_uuids);
  auto groups = remote->ListGroups();
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ(*groups, std::vector<std::string>{group_});
  ExpectServedRestores(vols);

  // Pull daemon → C.
  CopyStats pull;
  st = CopyGroup(*remote, *c_, group_, CopyOptions(), &pull);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(pull.chunks_missing, new_chunks);
  EXPECT_EQ(pull.appended.chunks_added, new_chunks);
  EXPECT_EQ(pull.bytes_sent, push.bytes_sent);  // each record once
  EXPECT_GE(remote->wire_bytes_received(), pull.bytes_sent);
  for (size_t i = 0; i < vols.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*c_, pool_, vols[i].meta.uuid, vols[i].image,
                                           tmp_.Sub(absl::StrCat("pulled-out", i))));
    auto m = c_->OpenManifest(vols[i].meta.uuid);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ((*m)->meta().install_path, vols[i].meta.install_path);
    EXPECT_EQ((*m)->meta().status, "Ready");
  }
}

TEST_P(RemoteStoreTest, SecondSyncMovesNoChunkData) {
  BuildGroup(group_, 2);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  CopyStats first;
  absl::Status st = CopyGroup(*a_, *remote, group_, CopyOptions(), &first);
  ASSERT_TRUE(st.ok()) << st;
  const auto packs = testing::PackSizes(tmp_.Sub("b"));

  const uint64_t sent0 = remote->wire_bytes_sent(), recv0 = remote->wire_bytes_received();
  CopyStats again;
  st = CopyGroup(*a_, *remote, group_, CopyOptions(), &again);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(again.chunks_missing, 0u);
  EXPECT_EQ(again.bytes_sent, 0u);
  EXPECT_EQ(again.records_sent, 0u);
  EXPECT_EQ(again.chunks_queried, first.chunks_queried);
  EXPECT_EQ(testing::PackSizes(tmp_.Sub("b")), packs);
  // On the wire: the ids asked (16 bytes each), the manifests again, and small replies.
  const uint64_t sent = remote->wire_bytes_sent() - sent0;
  const uint64_t received = remote->wire_bytes_received() - recv0;
  EXPECT_LT(sent, 16 * again.chunks_queried + 25 * again.chunks_referenced + 64 * 1024) << sent;
  EXPECT_LT(received, again.chunks_queried / 8 + 64 * 1024) << received;

  // Pulling into a store that has it all moves nothing either.
  CopyStats pull1, pull2;
  ASSERT_TRUE(CopyGroup(*remote, *c_, group_, CopyOptions(), &pull1).ok());
  const uint64_t recv1 = remote->wire_bytes_received();
  st = CopyGroup(*remote, *c_, group_, CopyOptions(), &pull2);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(pull2.bytes_sent, 0u);
  EXPECT_LT(remote->wire_bytes_received() - recv1, 25 * pull2.chunks_referenced + 64 * 1024);
}

TEST_P(RemoteStoreTest, RelatedGroupMovesOnlyItsNewChunks) {
  const auto v1 = BuildGroup(group_, 3);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), nullptr).ok());

  // A second backup of the VM: the root changed in places, one data volume is the same, the
  // other is new.
  const std::string group2 = NewUuid();
  std::vector<uint8_t> root = testing::ReadFile(v1[0].image);
  for (size_t off = 100 * 4096; off + 4096 <= root.size(); off += 250 * 4096) {
    const auto fresh = testing::RandomBytes(4096, off);
    std::copy(fresh.begin(), fresh.end(), root.begin() + static_cast<long>(off));
  }
  const std::string root2 = tmp_.Sub("root2"), data3 = tmp_.Sub("data3");
  testing::WriteFile(root2, root);
  testing::WriteTextFile(data3, 1 * kMiB, 99);
  std::vector<Volume> v2;
  v2.push_back(ImportOk(*a_, root2, group2, "Root"));
  v2.push_back(ImportOk(*a_, v1[1].image, group2, "Data"));
  v2.push_back(ImportOk(*a_, data3, group2, "Data"));
  ASSERT_TRUE(a_->Flush().ok());
  uint64_t new_chunks = 0, stored2 = 0;
  for (const auto& v : v2) {
    new_chunks += v.stats.new_chunks;
    stored2 += v.stats.stored_bytes;
  }
  ASSERT_GT(new_chunks, 0u);

  const uint64_t b_before = testing::TotalPackBytes(tmp_.Sub("b"));
  const uint64_t sent0 = remote->wire_bytes_sent();
  CopyStats stats;
  absl::Status st = CopyGroup(*a_, *remote, group2, CopyOptions(), &stats);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(stats.chunks_missing, new_chunks);
  EXPECT_EQ(stats.appended.chunks_added, new_chunks);
  EXPECT_EQ(stats.bytes_sent, stored2);
  EXPECT_EQ(testing::TotalPackBytes(tmp_.Sub("b")) - b_before, stored2);
  EXPECT_LT(remote->wire_bytes_sent() - sent0, stored2 + 1 * kMiB);
  ExpectServedRestores(v2);
  auto groups = remote->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(groups->size(), 2u);
}

TEST_P(RemoteStoreTest, OneConnectionAndDefaultFramesWork) {
  const auto vols = BuildGroup(group_, 4);
  RemoteOptions o = Options(1);
  o.append_frame_bytes = RemoteOptions().append_frame_bytes;
  auto remote = ConnectOk(o);
  ASSERT_NE(remote, nullptr);
  CopyStats push;
  absl::Status st = CopyGroup(*a_, *remote, group_, CopyOptions(), &push);
  ASSERT_TRUE(st.ok()) << st;
  ExpectServedRestores(vols);
  CopyStats pull;
  st = CopyGroup(*remote, *c_, group_, CopyOptions(), &pull);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(pull.bytes_sent, push.bytes_sent);
  for (size_t i = 0; i < vols.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*c_, pool_, vols[i].meta.uuid, vols[i].image,
                                           tmp_.Sub(absl::StrCat("out", i))));
  }
}

TEST_P(RemoteStoreTest, WrongKeyIsUnauthenticated) {
  RemoteOptions o = Options();
  o.key = KeyOf(2);
  auto r = RemoteStore::Connect(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "store daemon")) << r.status();
}

TEST_P(RemoteStoreTest, WrongStoreUuidIsRefused) {
  RemoteOptions o = Options();
  o.expect_uuid = NewUuid();
  auto r = RemoteStore::Connect(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  o.expect_uuid = b_->info().uuid;
  EXPECT_TRUE(RemoteStore::Connect(o).ok());
}

TEST_P(RemoteStoreTest, NoDaemonIsUnavailableNamingTheAddress) {
  auto listener = io::Listen(io::Endpoint{"127.0.0.1", 0}, 1);
  ASSERT_TRUE(listener.ok());
  auto port = io::LocalPort(listener->get());
  ASSERT_TRUE(port.ok());
  *listener = io::Fd();  // closed: nothing listens there now
  RemoteOptions o = Options();
  o.endpoint.port = *port;
  auto r = RemoteStore::Connect(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(
      absl::StrContains(r.status().message(), absl::StrCat("store daemon 127.0.0.1:", *port)))
      << r.status();
}

TEST_P(RemoteStoreTest, UnknownThingsAreNotFound) {
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  EXPECT_EQ(remote->GetGroup(NewUuid()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(remote->OpenManifest(NewUuid()).status().code(), absl::StatusCode::kNotFound);
  uint8_t bytes[codec::kChunkIdSize];
  std::memset(bytes, 0xab, sizeof(bytes));
  const codec::ChunkId unknown = codec::ChunkId::DecodeFrom(bytes);
  absl::Status st = remote->ReadRecordsFor(
      absl::MakeConstSpan(&unknown, 1),
      [](absl::Span<const absl::Span<const uint8_t>>) { return absl::OkStatus(); });
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "store daemon 127.0.0.1:")) << st;
  // The connections stay usable after request errors.
  EXPECT_TRUE(remote->ListGroups().ok());
  const auto missing = remote->GetGroup("not-a-uuid");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(RemoteStoreTest, HaveSplitsLargeQueries) {
  const auto vols = BuildGroup(group_, 5);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), nullptr).ok());
  std::vector<codec::ChunkId> ids;
  std::vector<bool> want;
  for (uint64_t i = 0; i < 150'000; ++i) {
    ids.push_back(codec::ChunkId{i * 7919 + 1, i});
    want.push_back(false);
  }
  for (const auto& e : testing::ManifestEntries(*a_, vols[2].meta.uuid)) {
    if (e.zero) continue;
    ids.insert(ids.begin() + static_cast<long>(ids.size() / 2), e.id);
    want.insert(want.begin() + static_cast<long>(want.size() / 2), true);
  }
  std::vector<bool> have;
  absl::Status st = remote->HaveChunks(ids, &have);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(have, want);
}

TEST_P(RemoteStoreTest, DamagedRecordIsRefusedAndNothingIsPublished) {
  const auto vols = BuildGroup(group_, 6);
  ASSERT_TRUE(a_->Close().ok());
  a_ = OpenOk("a", false);
  ASSERT_NE(a_, nullptr);
  const auto entries = testing::ManifestEntries(*a_, vols[2].meta.uuid);
  ASSERT_FALSE(entries.empty());
  const auto loc = a_->index().Find(entries[entries.size() / 2].id);
  ASSERT_TRUE(loc.has_value());
  testing::FlipByte(testing::PackPath(tmp_.Sub("a"), loc->record.pack),
                    testing::PayloadOffset(tmp_.Sub("a"), loc->record) + 10, 0x20);
  for (VerifyMode mode : {VerifyMode::kFull, VerifyMode::kChecksum}) {
    auto remote = ConnectOk(Options());
    ASSERT_NE(remote, nullptr);
    CopyOptions o;
    o.verify = mode;
    absl::Status st = CopyGroup(*a_, *remote, group_, o, nullptr);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "store daemon 127.0.0.1:")) << st;
    // The store stays refused (the error is remembered), the group is not there.
    EXPECT_EQ(remote->Flush().code(), absl::StatusCode::kDataLoss);
    remote.reset();
    auto check = ConnectOk(Options());
    ASSERT_NE(check, nullptr);
    EXPECT_EQ(check->GetGroup(group_).status().code(), absl::StatusCode::kNotFound);
    for (const auto& v : vols) {
      EXPECT_EQ(check->OpenManifest(v.meta.uuid).status().code(), absl::StatusCode::kNotFound);
    }
  }
}

TEST_P(RemoteStoreTest, DaemonGoingAwayFailsCleanly) {
  BuildGroup(group_, 7);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  ASSERT_TRUE(remote->ListGroups().ok());
  server_->Stop();
  CopyStats stats;
  absl::Status st = CopyGroup(*a_, *remote, group_, CopyOptions(), &stats);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "store daemon 127.0.0.1:")) << st;
  // Every later call says the same, at once; the destructor does not wait for anything.
  EXPECT_EQ(remote->Flush().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(remote->ListGroups().status().code(), absl::StatusCode::kUnavailable);
  remote.reset();
}

TEST_P(RemoteStoreTest, RateLimitPacesThePush) {
  const std::string image = tmp_.Sub("small");
  testing::WriteRandomFile(image, 3 * kMiB, 8);
  const Volume v = ImportOk(*a_, image, group_, "Root");
  ASSERT_TRUE(a_->Flush().ok());
  RemoteOptions o = Options();
  o.rate_limit_bytes_per_s = 4 * kMiB;
  auto remote = ConnectOk(o);
  ASSERT_NE(remote, nullptr);
  const auto start = std::chrono::steady_clock::now();
  CopyStats stats;
  absl::Status st = CopyGroup(*a_, *remote, group_, CopyOptions(), &stats);
  ASSERT_TRUE(st.ok()) << st;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The first tenth of a second's worth may go at once (the bucket's burst).
  const double floor = (static_cast<double>(stats.bytes_sent) - 0.1 * 4 * kMiB) / (4.0 * kMiB);
  EXPECT_GE(seconds, 0.9 * floor) << stats.bytes_sent;
  ExpectServedRestores({v});
}

INSTANTIATE_TEST_SUITE_P(Backends, RemoteStoreTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry::engine
