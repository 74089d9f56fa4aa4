// RemoteStore against an in-process StoreServer over 127.0.0.1: a group pushed with the copier
// restores byte-identical from the served store, pulls back into a third store identically, a
// second sync moves no chunk data, a related group moves only its new chunks, and the failure
// paths (wrong key, wrong store, damaged records, unknown ids) give clear errors.
#include "engine/wire/remote_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "engine/format/pack.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "engine/wire/store_server.h"
#include "gtest/gtest.h"
#include "io/fd.h"
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

using Volume = testing::ImportedVolume;

class RemoteStoreTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    for (const char* name : {"a", "b", "c"}) testing::InitStore(tmp_.Sub(name));
    a_ = OpenOk("a");
    b_ = OpenOk("b");
    c_ = OpenOk("c");
    ServerOptions o = ServerOptionsOnLoopback();
    o.gc_between_steps = [this](GarbageCollector::Phase phase) {
      if (gc_hook_) gc_hook_(phase);
    };
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

  ServerOptions ServerOptionsOnLoopback() {
    ServerOptions o;
    o.listen = io::Endpoint{"127.0.0.1", 0};
    o.key = KeyOf(1);
    o.backend = GetParam();
    return o;
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

  // Root + two Data volumes in store A.
  std::vector<Volume> BuildGroup(const std::string& group, uint64_t seed) {
    std::vector<Volume> vols = testing::ImportSampleGroup(*a_, pool_, tmp_, group, seed,
                                                          {9 * kMiB + 512, 4 * kMiB, 7 * kMiB - 7});
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
  // Runs between the steps of a collection the daemon makes (its connection's thread).
  std::function<void(GarbageCollector::Phase)> gc_hook_;
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

// One volume backup copied alone: the daemon holds it and no group; LIST_BACKUPS tells it, and
// its group's copy then publishes the group over the same manifest.
TEST_P(RemoteStoreTest, OneBackupCopiedAloneIsListedByListBackups) {
  const auto vols = BuildGroup(group_, 1);
  ASSERT_GE(vols.size(), 2u);
  auto remote = ConnectOk(Options(2));
  ASSERT_NE(remote, nullptr);
  absl::Status st = CopyBackup(*a_, *remote, vols[1].meta.uuid, CopyOptions(), nullptr);
  ASSERT_TRUE(st.ok()) << st;
  auto groups = remote->ListGroups();
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_TRUE(groups->empty());
  auto backups = remote->ListBackups();
  ASSERT_TRUE(backups.ok()) << backups.status();
  EXPECT_EQ(*backups, std::vector<std::string>{vols[1].meta.uuid});
  auto alone = remote->OpenManifest(vols[1].meta.uuid);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ((*alone)->meta().size, vols[1].meta.size);

  st = CopyGroup(*a_, *remote, group_, CopyOptions(), nullptr);
  ASSERT_TRUE(st.ok()) << st;
  backups = remote->ListBackups();
  ASSERT_TRUE(backups.ok()) << backups.status();
  std::vector<std::string> want;
  for (const auto& v : vols) want.push_back(v.meta.uuid);
  std::sort(want.begin(), want.end());
  std::sort(backups->begin(), backups->end());
  EXPECT_EQ(*backups, want);
  ExpectServedRestores(vols);
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

TEST_P(RemoteStoreTest, PublishedBackupsAreImmutableOverTheWire) {
  std::vector<Volume> vols = BuildGroup(group_, 4);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  CopyStats stats;
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), &stats).ok());
  const auto files = testing::ListFiles(tmp_.Sub("b"), {"LOCK", "index/"});

  // A manifest of holes under a published uuid: PUT_MANIFEST is refused, nothing changes.
  const VolumeBackupMeta& meta = vols[0].meta;
  std::vector<ManifestEntry> holes(1);
  holes[0].zero = true;
  holes[0].length = meta.size;
  testing::VectorManifestSource zeros(meta, holes);
  absl::Status st = remote->PutManifest(meta, zeros);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), meta.uuid)) << st;
  // Against its own earlier version as base it goes as a delta: refused the same way.
  testing::VectorManifestSource base(meta, testing::ManifestEntries(*a_, meta.uuid));
  st = remote->PutManifestWithBase(meta, zeros, &base, meta.uuid);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;

  // A group record dropping a volume: PUT_GROUP is refused.
  auto group = a_->GetGroup(group_);
  ASSERT_TRUE(group.ok()) << group.status();
  GroupRecord fewer = *group;
  fewer.volume_uuids.pop_back();
  st = remote->PutGroup(fewer);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;

  // The connection is still usable, and the same bytes again are a no-op success.
  ASSERT_TRUE(remote->PutGroup(*group).ok());
  EXPECT_EQ(testing::ListFiles(tmp_.Sub("b"), {"LOCK", "index/"}), files);
  ExpectServedRestores(vols);
}

TEST_P(RemoteStoreTest, DeleteOverTheWire) {
  std::vector<Volume> vols = BuildGroup(group_, 5);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  CopyStats stats;
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), &stats).ok());

  // A volume backup the group names is refused, naming the group; the connection stays usable.
  absl::StatusOr<DeleteResult> r = remote->DeleteBackup(vols[1].meta.uuid);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), group_)) << r.status();
  const std::string unknown = NewUuid();
  EXPECT_EQ(remote->DeleteGroup(unknown).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(remote->DeleteGroup("../x").status().code(), absl::StatusCode::kInvalidArgument);

  r = remote->DeleteGroup(group_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->groups_removed, std::vector<std::string>{group_});
  EXPECT_EQ(r->backups_removed.size(), vols.size());
  EXPECT_EQ(remote->GetGroup(group_).status().code(), absl::StatusCode::kNotFound);
  for (const auto& v : vols) {
    EXPECT_EQ(remote->OpenManifest(v.meta.uuid).status().code(), absl::StatusCode::kNotFound);
  }
  // The source still has it, and syncing it again brings it back.
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), &stats).ok());
  ExpectServedRestores(vols);
}

// A sync into the daemon's store between two steps of its collection: the chunks the daemon
// answered "have" for (they only belonged to a deleted group) stay, and the group restores. After
// Plan, the last look at the manifests, only the pins of the lookups keep them.
TEST_P(RemoteStoreTest, SyncDuringADaemonCollectionKeepsWhatItWasToldTheStoreHas) {
  std::vector<Volume> vols = BuildGroup(group_, 6);
  {
    // Its sessions hold what they landed until they end: gone before the collection.
    auto seed = ConnectOk(Options());
    ASSERT_NE(seed, nullptr);
    CopyStats first;
    ASSERT_TRUE(CopyGroup(*a_, *seed, group_, CopyOptions(), &first).ok());
    ASSERT_TRUE(seed->DeleteGroup(group_).ok());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->active_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(server_->active_connections(), 0u);
  auto remote = ConnectOk(Options(1));
  ASSERT_NE(remote, nullptr);

  auto other = ConnectOk(Options());
  ASSERT_NE(other, nullptr);
  CopyStats during;
  absl::Status synced = absl::UnknownError("not run");
  gc_hook_ = [&](GarbageCollector::Phase phase) {
    if (phase != GarbageCollector::Phase::kSweep || synced.code() != absl::StatusCode::kUnknown) {
      return;
    }
    synced = CopyGroup(*a_, *other, group_, CopyOptions(), &during);
  };
  absl::StatusOr<GcStats> totals = remote->CollectGarbage(GcRequest());
  ASSERT_TRUE(totals.ok()) << totals.status();
  ASSERT_TRUE(synced.ok()) << synced;
  EXPECT_EQ(during.bytes_sent, 0u);  // the daemon still had every chunk
  ExpectServedRestores(vols);
  absl::Status verified = server_->WithStore([&](LocalStore& s) {
    auto report = VerifyStore(s, pool_, VerifyMode::kFull);
    if (!report.ok()) return report.status();
    EXPECT_TRUE(report->problems.empty()) << report->problems.front();
    return absl::OkStatus();
  });
  EXPECT_TRUE(verified.ok()) << verified;
}

// Records a session has landed and not yet named stay through a collection another connection
// asks for, until the session ends.
TEST_P(RemoteStoreTest, RecordsALiveSessionLandedSurviveADaemonCollection) {
  std::vector<Volume> vols = BuildGroup(group_, 8);
  const VolumeBackupMeta& meta = vols[2].meta;  // random: its own chunks
  std::vector<codec::ChunkId> ids;
  const std::vector<ManifestEntry> entries = testing::ManifestEntries(*a_, meta.uuid);
  for (const auto& e : entries) {
    if (!e.zero) ids.push_back(e.id);
  }
  std::vector<std::vector<uint8_t>> records;
  ASSERT_TRUE(testing::ReadRecordsFor(*a_, ids, &records).ok());
  std::vector<absl::Span<const uint8_t>> spans(records.begin(), records.end());

  auto lander = ConnectOk(Options(1));
  ASSERT_NE(lander, nullptr);
  AppendStats stats;
  ASSERT_TRUE(lander->AppendRecords(spans, VerifyMode::kFull, &stats).ok());
  ASSERT_TRUE(lander->Flush().ok());
  ASSERT_GT(stats.records_appended, 0u);

  auto collector = ConnectOk(Options(1));
  ASSERT_NE(collector, nullptr);
  // A second collection while one runs is refused.
  absl::StatusOr<GcStats> second = absl::UnknownError("not run");
  gc_hook_ = [&](GarbageCollector::Phase phase) {
    if (phase == GarbageCollector::Phase::kMark &&
        second.status().code() == absl::StatusCode::kUnknown) {
      second = lander->CollectGarbage(GcRequest());
    }
  };
  ASSERT_TRUE(collector->CollectGarbage(GcRequest()).ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  gc_hook_ = nullptr;

  testing::VectorManifestSource source(meta, entries);
  absl::Status st = lander->PutManifest(meta, source);
  ASSERT_TRUE(st.ok()) << st;
  absl::Status restored = server_->WithStore([&](LocalStore& s) {
    EXPECT_TRUE(testing::RestoresIdentical(s, pool_, meta.uuid, vols[2].image, tmp_.Sub("held")));
    return absl::OkStatus();
  });
  EXPECT_TRUE(restored.ok()) << restored;

  // Once the session is gone and the backup deleted, the next collection takes the records.
  // The daemon ends the session (and releases its hold) after the client has gone: wait for it.
  lander.reset();
  for (int i = 0; i < 500 && server_->active_connections() > 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server_->active_connections(), 1u);  // the collector's
  ASSERT_TRUE(collector->DeleteBackup(meta.uuid).ok());
  absl::StatusOr<GcStats> after = collector->CollectGarbage(GcRequest());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GT(after->bytes_reclaimed, vols[2].meta.size / 2);
}

TEST_P(RemoteStoreTest, RelatedGroupMovesOnlyItsNewChunks) {
  const auto v1 = BuildGroup(group_, 3);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), nullptr).ok());

  // A second backup of the VM: the root changed in places, one data volume is the same, the
  // other is new.
  const std::string group2 = NewUuid();
  const std::vector<Volume> v2 =
      testing::ImportRelatedGroup(*a_, pool_, tmp_, group2, v1[0].image, v1[1].image);
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

// Incremental sync: v2 of a group (new backups of the same volumes, about 1% of the 4 KiB blocks
// rewritten) goes over the wire as its new records plus little else: no HAVE for the chunks the
// base (v1, on the daemon) already names, and each manifest as a delta against its base.
TEST_P(RemoteStoreTest, IncrementalSyncSendsLittleBeyondTheNewRecords) {
  struct Spec {
    std::string type;
    size_t size;
    int kind;  // 0 mixed, 1 text, 2 random
  };
  const std::vector<Spec> specs = {
      {"Root", 24 * kMiB, 0}, {"Data", 8 * kMiB, 1}, {"Data", 16 * kMiB - 4096, 2}};
  auto import = [&](const std::string& image, const std::string& group, const Spec& spec,
                    const std::string& volume_uuid, int64_t date) {
    ImportOptions o;
    o.source = image;
    o.meta = testing::NewMeta(group, spec.type);
    o.meta.volume_uuid = volume_uuid;
    o.meta.create_date = date;
    Volume v;
    v.image = image;
    auto meta = ImportVolume(*a_, pool_, o, &v.stats);
    EXPECT_TRUE(meta.ok()) << meta.status();
    if (meta.ok()) v.meta = *meta;
    return v;
  };
  std::vector<Volume> v1, v2;
  std::vector<std::string> volume_uuids;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string image = tmp_.Sub(absl::StrCat("v1-", i));
    if (specs[i].kind == 0) testing::WriteMixedFile(image, specs[i].size, 10 + i);
    if (specs[i].kind == 1) testing::WriteTextFile(image, specs[i].size, 10 + i);
    if (specs[i].kind == 2) testing::WriteRandomFile(image, specs[i].size, 10 + i);
    volume_uuids.push_back(NewUuid());
    v1.push_back(import(image, group_, specs[i], volume_uuids[i], 1700000000));
  }
  ASSERT_TRUE(a_->Flush().ok());
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  EXPECT_TRUE(remote->daemon_takes_manifest_delta());
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, CopyOptions(), nullptr).ok());

  // v2: 1% of the blocks rewritten, scattered.
  const std::string group2 = NewUuid();
  uint64_t rewrites = 0, blocks = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::vector<uint8_t> bytes = testing::ReadFile(v1[i].image);
    blocks += bytes.size() / 4096;
    for (size_t b = 37 + i; (b + 1) * 4096 <= bytes.size(); b += 100) {
      const auto fresh = testing::RandomBytes(4096, 1000 * i + b);
      std::copy(fresh.begin(), fresh.end(), bytes.begin() + static_cast<long>(b * 4096));
      ++rewrites;
    }
    const std::string image = tmp_.Sub(absl::StrCat("v2-", i));
    testing::WriteFile(image, bytes);
    v2.push_back(import(image, group2, specs[i], volume_uuids[i], 1700086400));
  }
  ASSERT_TRUE(a_->Flush().ok());
  uint64_t new_chunks = 0, stored2 = 0;
  for (const auto& v : v2) {
    new_chunks += v.stats.new_chunks;
    stored2 += v.stats.stored_bytes;
  }
  ASSERT_GT(new_chunks, rewrites / 2);

  const uint64_t wire0 = remote->wire_bytes_sent() + remote->wire_bytes_received();
  CopyStats stats;
  absl::Status st = CopyGroup(*a_, *remote, group2, CopyOptions(), &stats);
  ASSERT_TRUE(st.ok()) << st;
  const uint64_t wire = remote->wire_bytes_sent() + remote->wire_bytes_received() - wire0;
  EXPECT_EQ(stats.volumes_with_base, 3u);
  EXPECT_EQ(remote->manifest_deltas_sent(), 3u);
  EXPECT_EQ(remote->manifest_delta_fallbacks(), 0u);
  EXPECT_EQ(stats.chunks_missing, new_chunks);
  EXPECT_EQ(stats.bytes_sent, stored2);
  // Only the rewritten blocks were asked about.
  EXPECT_GE(stats.chunks_queried, new_chunks);
  EXPECT_LE(stats.chunks_queried, rewrites);
  EXPECT_EQ(stats.chunks_known_from_base + stats.chunks_queried, stats.chunks_referenced);
  std::printf(
      "incremental sync: %llu blocks, %llu rewritten, %llu new chunks, %llu record "
      "bytes, %llu wire bytes (%.4fx), %llu ids asked\n",
      static_cast<unsigned long long>(blocks), static_cast<unsigned long long>(rewrites),
      static_cast<unsigned long long>(new_chunks),
      static_cast<unsigned long long>(stats.bytes_sent), static_cast<unsigned long long>(wire),
      static_cast<double>(wire) / static_cast<double>(stats.bytes_sent),
      static_cast<unsigned long long>(stats.chunks_queried));
  EXPECT_LE(wire, stats.bytes_sent + stats.bytes_sent / 20 + 64 * 1024) << wire;
  ExpectServedRestores(v2);
  ExpectServedRestores(v1);

  // Without a base the same sync costs a HAVE per chunk and the whole manifests (the yardstick
  // the bound above beats), into a fresh group on the same daemon: no records move.
  const std::string group3 = NewUuid();
  {
    CopyOptions plain;
    plain.use_base = false;
    std::vector<Volume> v3;
    for (size_t i = 0; i < specs.size(); ++i) {
      v3.push_back(import(v2[i].image, group3, specs[i], volume_uuids[i], 1700090000));
    }
    ASSERT_TRUE(a_->Flush().ok());
    const uint64_t w0 = remote->wire_bytes_sent() + remote->wire_bytes_received();
    CopyStats s3;
    ASSERT_TRUE(CopyGroup(*a_, *remote, group3, plain, &s3).ok());
    const uint64_t w3 = remote->wire_bytes_sent() + remote->wire_bytes_received() - w0;
    EXPECT_EQ(s3.bytes_sent, 0u);
    EXPECT_EQ(s3.chunks_known_from_base, 0u);
    EXPECT_GT(w3, 16 * s3.chunks_referenced);
    std::printf("same group without a base: %llu wire bytes of metadata\n",
                static_cast<unsigned long long>(w3));
  }
}

// PutManifestWithBase falls back to the whole manifest when the daemon lacks the base; a delta
// against another base than the one named is refused (nothing published).
TEST_P(RemoteStoreTest, ManifestDeltaFallsBackWithoutTheBase) {
  const auto vols = BuildGroup(group_, 4);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  CopyOptions plain;
  plain.use_base = false;
  ASSERT_TRUE(CopyGroup(*a_, *remote, group_, plain, nullptr).ok());
  auto root = a_->OpenManifest(vols[0].meta.uuid);
  ASSERT_TRUE(root.ok()) << root.status();
  auto base = a_->OpenManifest(vols[0].meta.uuid);  // the same entries, read on their own
  ASSERT_TRUE(base.ok()) << base.status();

  // Another backup of the root volume, against itself as the base: a delta of COPY only.
  VolumeBackupMeta meta = vols[0].meta;
  meta.uuid = NewUuid();
  meta.install_path = DefaultInstallPath(meta.group_uuid, meta.uuid);
  absl::Status st = remote->PutManifestWithBase(meta, **root, base->get(), vols[0].meta.uuid);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(remote->manifest_deltas_sent(), 1u);
  // A base the daemon does not have: the whole manifest instead.
  VolumeBackupMeta meta2 = meta;
  meta2.uuid = NewUuid();
  st = remote->PutManifestWithBase(meta2, **root, base->get(), NewUuid());
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(remote->manifest_deltas_sent(), 1u);
  EXPECT_EQ(remote->manifest_delta_fallbacks(), 1u);
  // A daemon that did not announce deltas gets the whole manifest at once.
  remote->set_daemon_takes_manifest_delta(false);
  VolumeBackupMeta meta3 = meta;
  meta3.uuid = NewUuid();
  st = remote->PutManifestWithBase(meta3, **root, base->get(), vols[0].meta.uuid);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(remote->manifest_deltas_sent(), 1u);
  EXPECT_EQ(remote->manifest_delta_fallbacks(), 1u);
  remote->set_daemon_takes_manifest_delta(true);
  for (const auto& uuid : {meta.uuid, meta2.uuid, meta3.uuid}) {
    absl::Status same = server_->WithStore([&](LocalStore& s) {
      EXPECT_TRUE(testing::RestoresIdentical(s, pool_, uuid, vols[0].image,
                                             tmp_.Sub(absl::StrCat("out-", uuid))));
      return absl::OkStatus();
    });
    EXPECT_TRUE(same.ok()) << same;
  }
  // Made against the root's manifest but naming the data volume's as its base: the daemon
  // cannot rebuild the manifest from that base, sees it and publishes nothing.
  VolumeBackupMeta meta4 = meta;
  meta4.uuid = NewUuid();
  st = remote->PutManifestWithBase(meta4, **root, base->get(), vols[1].meta.uuid);
  EXPECT_TRUE(absl::IsDataLoss(st) || absl::IsInvalidArgument(st)) << st;
  EXPECT_EQ(remote->OpenManifest(meta4.uuid).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(testing::ListFiles(tmp_.Sub("b") + "/tmp").empty());
  // The connection goes on.
  auto groups = remote->ListGroups();
  ASSERT_TRUE(groups.ok()) << groups.status();
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

// A daemon that predates PREFIX_CHECKSUM refuses any frame carrying it: the client sends its
// APPENDs with the whole payload's checksum there, and the sync lands.
TEST_P(RemoteStoreTest, ADaemonWithoutPrefixChecksumGetsWholeChecksums) {
  const auto vols = BuildGroup(group_, 11);
  ServerOptions o = ServerOptionsOnLoopback();
  o.prefix_checksum = false;
  StoreServer older(c_.get(), std::move(o));
  ASSERT_TRUE(older.Start().ok());
  RemoteOptions ro = Options(2);
  ro.endpoint.port = older.port();
  auto remote = ConnectOk(ro);
  ASSERT_NE(remote, nullptr);
  CopyStats push;
  absl::Status st = CopyGroup(*a_, *remote, group_, CopyOptions(), &push);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_GT(push.records_sent, 0u);
  ASSERT_TRUE(remote->Close().ok());
  older.Stop();
  for (size_t i = 0; i < vols.size(); ++i) {
    EXPECT_TRUE(testing::RestoresIdentical(*c_, pool_, vols[i].meta.uuid, vols[i].image,
                                           tmp_.Sub(absl::StrCat("older-out", i))));
  }
}

// A daemon (or anyone in the path who holds the key) announcing 4 GiB frames could make each of
// the client's connections allocate that much for one frame: the client refuses it, unless its
// own limit says otherwise.
TEST_P(RemoteStoreTest, ADaemonAnnouncingHugeFramesIsRefused) {
  ServerOptions o = ServerOptionsOnLoopback();
  o.max_frame = UINT32_MAX;
  o.max_inflight = UINT64_MAX;
  StoreServer greedy(c_.get(), std::move(o));
  ASSERT_TRUE(greedy.Start().ok());
  RemoteOptions ro = Options(1);
  ro.endpoint.port = greedy.port();
  auto r = RemoteStore::Connect(ro);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  ro.max_frame = UINT32_MAX;  // a client that accepts them connects
  EXPECT_TRUE(RemoteStore::Connect(ro).ok());
  ro.max_frame = kMinMaxFrame - 1;
  EXPECT_EQ(RemoteStore::Connect(ro).status().code(), absl::StatusCode::kInvalidArgument);
  greedy.Stop();
}

// A daemon streaming an endless manifest (here: a 48 MiB file where a manifest should be) cannot
// fill the pulling client's disk: past the client's limit the stream is refused.
TEST_P(RemoteStoreTest, AManifestStreamPastTheClientsLimitIsRefused) {
  const std::string uuid = NewUuid();
  const std::string path = tmp_.Sub(absl::StrCat("b/volumes/", uuid, ".manifest"));
  {
    auto fd = io::OpenFile(path, O_WRONLY | O_CREAT | O_EXCL);
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_EQ(::ftruncate(fd->get(), 48 * kMiB), 0);
  }
  RemoteOptions o = Options(1);
  o.max_manifest_bytes = 8 * kMiB;
  auto remote = ConnectOk(o);
  ASSERT_NE(remote, nullptr);
  auto m = remote->OpenManifest(uuid);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted) << m.status();
  // Under the limit the same bytes are read and refused as what they are: not a manifest.
  o.max_manifest_bytes = 64 * kMiB;
  remote = ConnectOk(o);
  ASSERT_NE(remote, nullptr);
  m = remote->OpenManifest(uuid);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << m.status();
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

// A socket that listens and is never accepted: the kernel completes the TCP handshake, nobody
// answers HELLO. Connect must give up after connect_timeout_ms, not after the handshake's own
// per-step timeout, and say so (only the connect-timeout path writes that message).
TEST_P(RemoteStoreTest, SilentDaemonFailsWithinTheConnectTimeout) {
  auto listener = io::Listen(io::Endpoint{"127.0.0.1", 0}, 8);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto port = io::LocalPort(listener->get());
  ASSERT_TRUE(port.ok());
  RemoteOptions o = Options();
  o.endpoint.port = *port;
  o.connect_timeout_ms = 300;
  auto r = RemoteStore::Connect(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "connect timeout of 300 ms")) << r.status();
  EXPECT_TRUE(
      absl::StrContains(r.status().message(), absl::StrCat("store daemon 127.0.0.1:", *port)))
      << r.status();
  // The watchdog never fires on a daemon that answers.
  o = Options();
  o.connect_timeout_ms = 5'000;
  EXPECT_NE(ConnectOk(o), nullptr);
}

// Each have-query is asked before the records of the one before it travel (Copier): a record
// holding chunks of both batches is still sent once, and the answers land in the right places.
TEST_P(RemoteStoreTest, QueriesAskedAheadSendEachRecordOnce) {
  const auto vols = BuildGroup(group_, 13);
  auto remote = ConnectOk(Options());
  ASSERT_NE(remote, nullptr);
  for (size_t per_query : {size_t{7}, size_t{100}}) {
    SCOPED_TRACE(per_query);
    CopyOptions co;
    co.ids_per_query = per_query;
    CopyStats push;
    absl::Status st = CopyGroup(*a_, *remote, group_, co, &push);
    ASSERT_TRUE(st.ok()) << st;
    if (per_query == 7) {
      uint64_t new_chunks = 0;
      for (const auto& v : vols) new_chunks += v.stats.new_chunks;
      EXPECT_GT(push.chunks_queried, 3 * per_query);
      EXPECT_EQ(push.appended.chunks_added, new_chunks);
      EXPECT_EQ(push.appended.records_received, push.appended.records_appended);
      EXPECT_EQ(push.bytes_sent, push.appended.bytes_appended);
    } else {
      EXPECT_EQ(push.bytes_sent, 0u);  // the second copy finds everything there
    }
  }
  ExpectServedRestores(vols);
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
  const Volume v = testing::ImportOk(*a_, pool_, image, group_, "Root");
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
