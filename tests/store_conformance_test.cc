// One suite of behaviours every Store implementation keeps, run against each of them: a local
// store, a remote store through a daemon, a RADOS store on the test cluster, and a daemon serving
// a RADOS store. Records come
// from a local source store through the copier (the way every store is fed), then each part of
// the interface is checked on its own: lookups, record streams byte for byte, refused records,
// manifests and groups published once, listings, and deletes.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/store_restorer.h"
#include "engine/rados/rados_store.h"
#include "engine/wire/remote_store.h"
#include "engine/wire/store_server.h"
#include "tests/rados_test_env.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;
constexpr size_t kMiB = 1 << 20;

// Each kind of store: SetUp makes a new empty one, store() is it, Reopen() opens it again.
class LocalKind {
 public:
  static constexpr const char* kName = "local";
  bool SetUp(TempDir& tmp, WorkerPool& pool) {
    dir_ = tmp.Sub("dest");
    pool_ = &pool;
    testing::InitStore(dir_);
    return Reopen();
  }
  bool Reopen() {
    store_.reset();
    auto s = testing::OpenStore(dir_, io::Backend::kThreads, true, pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) store_ = *std::move(s);
    return store_ != nullptr;
  }
  Store& store() { return *store_; }

 private:
  std::string dir_;
  WorkerPool* pool_ = nullptr;
  std::unique_ptr<LocalStore> store_;
};

// A daemon serving a store, reached as a remote store; the kinds below say what it serves.
class DaemonKind {
 public:
  bool Reopen() {
    store_.reset();
    RemoteOptions o;
    o.endpoint = io::Endpoint{"127.0.0.1", server_->port()};
    o.key = key_;
    o.backend = io::Backend::kThreads;
    auto r = RemoteStore::Connect(o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) store_ = *std::move(r);
    return store_ != nullptr;
  }
  Store& store() { return *store_; }
  ~DaemonKind() {
    store_.reset();
    if (server_) server_->Stop();
  }

 protected:
  // Serves `served` (its store is `owned`) and connects to it.
  bool Serve(std::unique_ptr<Store> owned, std::unique_ptr<ServedStore> served) {
    owned_ = std::move(owned);
    ServerOptions o;
    o.listen = io::Endpoint{"127.0.0.1", 0};
    for (size_t i = 0; i < o.key.bytes.size(); ++i) o.key.bytes[i] = static_cast<uint8_t>(i * 7);
    key_ = o.key;
    o.backend = io::Backend::kThreads;
    server_ = std::make_unique<StoreServer>(std::move(served), std::move(o));
    absl::Status st = server_->Start();
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() && Reopen();
  }

 private:
  std::unique_ptr<Store> owned_;  // outlives the server
  std::unique_ptr<StoreServer> server_;
  AuthKey key_;
  std::unique_ptr<RemoteStore> store_;
};

class RemoteKind : public DaemonKind {
 public:
  static constexpr const char* kName = "remote";
  bool SetUp(TempDir& tmp, WorkerPool& pool) {
    const std::string dir = tmp.Sub("served");
    testing::InitStore(dir);
    auto s = testing::OpenStore(dir, io::Backend::kThreads, true, &pool);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return false;
    auto served = ServeLocalStore(**s);
    return Serve(*std::move(s), std::move(served));
  }
};

class RadosKind {
 public:
  static constexpr const char* kName = "rados";
  bool SetUp(TempDir&, WorkerPool& pool, bool lock_on_demand = false) {
    pool_ = &pool;
    lock_on_demand_ = lock_on_demand;
    url_ = testing::FreshRadosUrl();
    StoreInitOptions init;
    init.chunker = *codec::ChunkerSpec::Parse("fixed:4k");
    absl::Status st = rados::RadosStore::Init(url_, testing::TestRadosClient(), init);
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() && Reopen();
  }
  bool Reopen() {
    store_.reset();
    rados::RadosStoreOptions o;
    o.client = testing::TestRadosClient();
    o.pool = pool_;
    o.pack_target = 1 << 20;  // several packs even from the small test volumes
    o.lock_on_demand = lock_on_demand_;
    auto s = rados::RadosStore::Open(url_, o);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) store_ = *std::move(s);
    return store_ != nullptr;
  }
  Store& store() { return *store_; }
  std::unique_ptr<rados::RadosStore> Release() { return std::move(store_); }

 private:
  WorkerPool* pool_ = nullptr;
  bool lock_on_demand_ = false;
  rados::RadosUrl url_;
  std::unique_ptr<rados::RadosStore> store_;
};

// A daemon serving a RADOS store: what several stateless daemons in front of one pool each are.
class ServedRadosKind : public DaemonKind {
 public:
  static constexpr const char* kName = "served_rados";
  bool SetUp(TempDir& tmp, WorkerPool& pool) {
    RadosKind pool_store;
    if (!pool_store.SetUp(tmp, pool, /*lock_on_demand=*/true)) return false;
    std::unique_ptr<rados::RadosStore> s = pool_store.Release();
    rados::RadosStore* p = s.get();
    auto served = ServeAnyStore(*s, s->hasher(),
                                {[p] { return p->BeginWrites(); }, [p] { return p->EndWrites(); }});
    EXPECT_TRUE(served.ok()) << served.status();
    return served.ok() && Serve(std::move(s), *std::move(served));
  }
};

template <typename Kind>
class StoreConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if constexpr (std::is_same_v<Kind, RadosKind> || std::is_same_v<Kind, ServedRadosKind>) {
      CF_SKIP_IF_NO_CEPH();
    }
    testing::InitStore(tmp_.Sub("src"));
    auto s = testing::OpenStore(tmp_.Sub("src"), io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(s.ok()) << s.status();
    src_ = *std::move(s);
    group_ = NewUuid();
    vols_ = testing::ImportSampleGroup(*src_, pool_, tmp_, group_, 11,
                                       {3 * kMiB + 512, 2 * kMiB, 1 * kMiB - 7});
    ASSERT_TRUE(src_->Flush().ok());
    ASSERT_TRUE(kind_.SetUp(tmp_, pool_));
  }

  Store& dst() { return kind_.store(); }

  absl::Status CopyToDst(const std::string& group, CopyStats* stats = nullptr) {
    CopyStats local;
    return CopyGroup(*src_, dst(), group, CopyOptions(), stats ? stats : &local);
  }

  // Copies `group` from the store under test into a new local store and restores every volume.
  void ExpectRestoresFromDst(const std::vector<testing::ImportedVolume>& vols,
                             const std::string& group) {
    const std::string dir = tmp_.Sub(absl::StrCat("back-", group));
    testing::InitStore(dir);
    auto back = testing::OpenStore(dir, io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(back.ok()) << back.status();
    CopyStats stats;
    absl::Status st = CopyGroup(dst(), **back, group, CopyOptions(), &stats);
    ASSERT_TRUE(st.ok()) << st;
    for (size_t i = 0; i < vols.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(**back, pool_, vols[i].meta.uuid, vols[i].image,
                                             tmp_.Sub(absl::StrCat("out-", group, i))));
    }
  }

  std::vector<codec::ChunkId> ChunksOf(const std::string& backup) {
    std::vector<codec::ChunkId> ids;
    auto m = src_->OpenManifest(backup);
    EXPECT_TRUE(m.ok()) << m.status();
    std::vector<ManifestEntry> batch;
    while (m.ok()) {
      auto n = (*m)->Next(&batch, 4096);
      if (!n.ok() || *n == 0) break;
      for (const auto& e : batch) {
        if (!e.zero) ids.push_back(e.id);
      }
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
  }

  WorkerPool pool_{1};
  TempDir tmp_;
  std::unique_ptr<LocalStore> src_;
  std::string group_;
  std::vector<testing::ImportedVolume> vols_;
  Kind kind_;
};

class KindNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
using Kinds = ::testing::Types<LocalKind, RemoteKind, RadosKind, ServedRadosKind>;
TYPED_TEST_SUITE(StoreConformanceTest, Kinds, KindNames);

TYPED_TEST(StoreConformanceTest, AnEmptyStoreHoldsNothing) {
  Store& s = this->dst();
  std::vector<bool> have;
  auto ids = this->ChunksOf(this->vols_[0].meta.uuid);
  absl::Status st = s.HaveChunks(ids, &have);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(std::count(have.begin(), have.end(), true), 0);
  EXPECT_TRUE(s.ListGroups()->empty());
  EXPECT_TRUE(s.ListBackups()->empty());
  EXPECT_TRUE(absl::IsNotFound(s.GetGroup(this->group_).status()));
  EXPECT_TRUE(absl::IsNotFound(s.OpenManifest(this->vols_[0].meta.uuid).status()));
  std::vector<std::vector<uint8_t>> records;
  EXPECT_TRUE(absl::IsNotFound(testing::ReadRecordsFor(s, ids, &records)));
  EXPECT_TRUE(absl::IsNotFound(s.DeleteGroup(this->group_).status()));
  EXPECT_TRUE(absl::IsNotFound(s.DeleteBackup(this->vols_[0].meta.uuid).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(s.GetGroup("../etc").status()));
}

TYPED_TEST(StoreConformanceTest, AGroupCopiedInComesBackIdentical) {
  ASSERT_TRUE(this->CopyToDst(this->group_).ok());
  ASSERT_TRUE(this->kind_.Reopen());  // what a later process sees
  Store& s = this->dst();
  auto g = s.GetGroup(this->group_);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->volume_uuids.size(), this->vols_.size());
  EXPECT_EQ(*s.ListGroups(), std::vector<std::string>{this->group_});
  auto backups = *s.ListBackups();
  std::sort(backups.begin(), backups.end());
  std::vector<std::string> want;
  for (const auto& v : this->vols_) want.push_back(v.meta.uuid);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(backups, want);
  auto m = s.OpenManifest(this->vols_[1].meta.uuid);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->meta().size, this->vols_[1].meta.size);
  EXPECT_EQ((*m)->meta().install_path, this->vols_[1].meta.install_path);
  this->ExpectRestoresFromDst(this->vols_, this->group_);
}

TYPED_TEST(StoreConformanceTest, RecordsComeBackByteForByte) {
  ASSERT_TRUE(this->CopyToDst(this->group_).ok());
  auto ids = this->ChunksOf(this->vols_[0].meta.uuid);
  std::vector<bool> have;
  ASSERT_TRUE(this->dst().HaveChunks(ids, &have).ok());
  EXPECT_EQ(std::count(have.begin(), have.end(), true), static_cast<long>(ids.size()));
  std::vector<std::vector<uint8_t>> from_src, from_dst;
  ASSERT_TRUE(testing::ReadRecordsFor(*this->src_, ids, &from_src).ok());
  ASSERT_TRUE(testing::ReadRecordsFor(this->dst(), ids, &from_dst).ok());
  // Compared as sorted strings: GCC 12's -O3 sees a bogus memcmp bound in sorting
  // vectors of byte vectors (-Wstringop-overread), and the order of records is not the point.
  auto sorted = [](const std::vector<std::vector<uint8_t>>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.emplace_back(r.begin(), r.end());
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(sorted(from_src), sorted(from_dst));
}

TYPED_TEST(StoreConformanceTest, ASecondCopySendsNothingAndPublishesTheSame) {
  ASSERT_TRUE(this->CopyToDst(this->group_).ok());
  CopyStats again;
  absl::Status st = this->CopyToDst(this->group_, &again);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(again.records_sent, 0u);
  EXPECT_EQ(*this->dst().ListGroups(), std::vector<std::string>{this->group_});
}

TYPED_TEST(StoreConformanceTest, AnIncrementalCopySendsOnlyNewChunks) {
  CopyStats first;
  ASSERT_TRUE(this->CopyToDst(this->group_, &first).ok());
  const std::string later = NewUuid();
  auto vols2 = testing::ImportRelatedGroup(*this->src_, this->pool_, this->tmp_, later,
                                           this->vols_[0].image, this->vols_[1].image);
  ASSERT_TRUE(this->src_->Flush().ok());
  CopyStats second;
  absl::Status st = this->CopyToDst(later, &second);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_GT(second.bytes_sent, 0u);
  EXPECT_LT(second.bytes_sent * 2, first.bytes_sent);
  this->ExpectRestoresFromDst(vols2, later);
}

TYPED_TEST(StoreConformanceTest, ADamagedRecordIsRefusedAndNothingOfItsCallLands) {
  auto ids = this->ChunksOf(this->vols_[2].meta.uuid);
  std::vector<std::vector<uint8_t>> records;
  ASSERT_TRUE(testing::ReadRecordsFor(*this->src_, ids, &records).ok());
  ASSERT_GE(records.size(), 2u);
  records.back()[records.back().size() - 1] ^= 0x40;  // its payload
  std::vector<absl::Span<const uint8_t>> spans(records.begin(), records.end());
  Store& s = this->dst();
  AppendStats stats;
  absl::Status st = s.AppendRecords(spans, VerifyMode::kFull, &stats);
  if (st.ok()) st = s.Flush();  // a remote store reports it later
  EXPECT_TRUE(absl::IsDataLoss(st)) << st;
  ASSERT_TRUE(this->kind_.Reopen());
  std::vector<bool> have;
  ASSERT_TRUE(this->dst().HaveChunks(ids, &have).ok());
  // The damaged record's chunks never count as held (records before it may have landed).
  auto damaged = codec::ParseRecord(records.back());
  ASSERT_TRUE(damaged.ok());
  for (uint32_t c = 0; c < damaged->chunk_count; ++c) {
    const auto it = std::find(ids.begin(), ids.end(), damaged->chunk(c).id);
    ASSERT_NE(it, ids.end());
    EXPECT_FALSE(have[static_cast<size_t>(it - ids.begin())]);
  }
  // And the store goes on: the copy after it succeeds.
  absl::Status copy = this->CopyToDst(this->group_);
  EXPECT_TRUE(copy.ok()) << copy;
}

TYPED_TEST(StoreConformanceTest, NothingIsPublishedOverWhatIsMissing) {
  Store& s = this->dst();
  auto m = this->src_->OpenManifest(this->vols_[0].meta.uuid);
  ASSERT_TRUE(m.ok());
  absl::Status st = s.PutManifest((*m)->meta(), **m);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  GroupRecord g = *this->src_->GetGroup(this->group_);
  st = s.PutGroup(g);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_TRUE(s.ListGroups()->empty());
  EXPECT_TRUE(s.ListBackups()->empty());
}

TYPED_TEST(StoreConformanceTest, APublishedGroupIsNeverReplaced) {
  ASSERT_TRUE(this->CopyToDst(this->group_).ok());
  Store& s = this->dst();
  GroupRecord g = *s.GetGroup(this->group_);
  EXPECT_TRUE(s.PutGroup(g).ok());  // the same record again: nothing changes
  GroupRecord other = g;
  other.volume_uuids.pop_back();
  absl::Status st = s.PutGroup(other);
  EXPECT_TRUE(absl::IsAlreadyExists(st)) << st;
  EXPECT_EQ(s.GetGroup(this->group_)->volume_uuids, g.volume_uuids);
  // A manifest with other contents under a published uuid is refused too.
  auto m = s.OpenManifest(this->vols_[1].meta.uuid);
  ASSERT_TRUE(m.ok());
  VolumeBackupMeta meta = (*m)->meta();
  meta.description = "something else";
  st = s.PutManifest(meta, **m);
  EXPECT_TRUE(absl::IsAlreadyExists(st)) << st;
}

TYPED_TEST(StoreConformanceTest, DeletesRemoveWhatNoGroupStillNames) {
  ASSERT_TRUE(this->CopyToDst(this->group_).ok());
  Store& s = this->dst();
  // A volume backup of a group cannot go alone.
  absl::Status st = s.DeleteBackup(this->vols_[0].meta.uuid).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  // A second group naming one of the same backups keeps it.
  GroupRecord g = *s.GetGroup(this->group_);
  GroupRecord second = g;
  second.group_uuid = NewUuid();
  second.volume_uuids = {g.volume_uuids[0]};
  ASSERT_TRUE(s.PutGroup(second).ok());
  auto removed = s.DeleteGroup(this->group_);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->groups_removed, std::vector<std::string>{this->group_});
  EXPECT_EQ(removed->backups_kept, std::vector<std::string>{g.volume_uuids[0]});
  EXPECT_EQ(removed->backups_removed.size(), 2u);
  ASSERT_TRUE(this->kind_.Reopen());
  Store& after = this->dst();
  EXPECT_TRUE(absl::IsNotFound(after.GetGroup(this->group_).status()));
  EXPECT_EQ(*after.ListBackups(), std::vector<std::string>{g.volume_uuids[0]});
  EXPECT_TRUE(absl::IsNotFound(after.OpenManifest(g.volume_uuids[1]).status()));
  EXPECT_TRUE(after.OpenManifest(g.volume_uuids[0]).ok());
  // A backup synced alone (no group) is deleted alone.
  CopyStats stats;
  st = CopyBackup(*this->src_, after, this->vols_[2].meta.uuid, CopyOptions(), &stats);
  ASSERT_TRUE(st.ok()) << st;
  auto lone = after.DeleteBackup(this->vols_[2].meta.uuid);
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_EQ(lone->backups_removed, std::vector<std::string>{this->vols_[2].meta.uuid});
  EXPECT_TRUE(absl::IsNotFound(after.OpenManifest(this->vols_[2].meta.uuid).status()));
}

TYPED_TEST(StoreConformanceTest, EveryVolumeRestoresThroughTheStoreInterface) {
  ASSERT_TRUE(this->CopyToDst(this->group_).ok());
  ASSERT_TRUE(this->kind_.Reopen());
  for (bool verify_ids : {true, false}) {
    for (size_t i = 0; i < this->vols_.size(); ++i) {
      StoreRestoreOptions o;
      o.restore.output = this->tmp_.Sub(absl::StrCat("restored-", verify_ids, "-", i));
      o.restore.verify_ids = verify_ids;
      o.window = 256 << 10;  // many windows, and records shared between them
      o.backend = io::Backend::kThreads;
      RestoreStats stats;
      absl::Status st = RestoreFromStore(this->dst(), this->src_->hasher(), this->pool_,
                                         this->vols_[i].meta.uuid, o, &stats);
      ASSERT_TRUE(st.ok()) << st;
      EXPECT_EQ(stats.bytes, this->vols_[i].meta.size);
      EXPECT_GT(stats.records_read, 0u);
      EXPECT_TRUE(testing::ReadFile(o.restore.output) == testing::ReadFile(this->vols_[i].image))
          << "volume " << i << (verify_ids ? " (full)" : " (checksum)");
    }
  }
  StoreRestoreOptions o;
  o.restore.output = this->tmp_.Sub("never");
  EXPECT_TRUE(absl::IsNotFound(
      RestoreFromStore(this->dst(), this->src_->hasher(), this->pool_, NewUuid(), o, nullptr)));
  EXPECT_FALSE(testing::FileExists(o.restore.output));
}

TYPED_TEST(StoreConformanceTest, AVolumeImportedThroughTheStoreInterfaceRestores) {
  // A data volume first, then the root: the group grows by one volume at a time, the root first.
  const std::string group = NewUuid();
  const std::string data_image = this->tmp_.Sub("import-data.img");
  const std::string root_image = this->tmp_.Sub("import-root.img");
  testing::WriteSparseFile(data_image, 3 * kMiB + 5, {{4096, 65536}, {2 * kMiB, 300000}}, 21);
  testing::WriteMixedFile(root_image, 2 * kMiB + 4096 * 3 + 17, 22);
  std::vector<VolumeBackupMeta> metas;
  std::vector<ImportStats> stats;
  for (const auto& [image, type] : {std::pair{data_image, "Data"}, std::pair{root_image, "Root"}}) {
    ImportOptions o;
    o.source = image;
    o.meta = testing::NewMeta(group, type);
    ImportStats s;
    auto meta = ImportVolumeInto(this->dst(), this->src_->hasher(), this->pool_,
                                 io::Backend::kThreads, o, &s);
    if constexpr (std::is_same_v<TypeParam, RemoteKind> ||
                  std::is_same_v<TypeParam, ServedRadosKind>) {
      // A daemon cannot grow a group: the import fails and publishes nothing.
      EXPECT_TRUE(absl::IsUnimplemented(meta.status())) << meta.status();
      EXPECT_TRUE(this->dst().ListBackups()->empty());
      EXPECT_TRUE(this->dst().ListGroups()->empty());
      return;
    }
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ(meta->size, static_cast<uint64_t>(testing::FileSize(image)));
    metas.push_back(*meta);
    stats.push_back(s);
  }
  EXPECT_GT(stats[0].zero_chunks, 0u);
  EXPECT_GT(stats[1].stored_bytes, 0u);
  ASSERT_TRUE(this->kind_.Reopen());
  auto g = this->dst().GetGroup(group);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->volume_uuids, (std::vector<std::string>{metas[1].uuid, metas[0].uuid}));
  // The same image again under a new uuid: every chunk is held, nothing new is stored.
  ImportOptions again;
  again.source = root_image;
  again.meta = testing::NewMeta(NewUuid(), "Root");
  ImportStats again_stats;
  ASSERT_TRUE(ImportVolumeInto(this->dst(), this->src_->hasher(), this->pool_,
                               io::Backend::kThreads, again, &again_stats)
                  .ok());
  EXPECT_EQ(again_stats.new_chunks, 0u);
  EXPECT_EQ(again_stats.stored_bytes, 0u);
  // A published uuid is refused before anything is read.
  ImportOptions dup;
  dup.source = root_image;
  dup.meta = metas[1];
  EXPECT_TRUE(absl::IsAlreadyExists(ImportVolumeInto(this->dst(), this->src_->hasher(), this->pool_,
                                                     io::Backend::kThreads, dup, nullptr)
                                        .status()));
  const std::string images[] = {data_image, root_image};
  for (size_t i = 0; i < metas.size(); ++i) {
    StoreRestoreOptions o;
    o.restore.output = this->tmp_.Sub(absl::StrCat("imported-back-", i));
    o.backend = io::Backend::kThreads;
    absl::Status st =
        RestoreFromStore(this->dst(), this->src_->hasher(), this->pool_, metas[i].uuid, o, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_TRUE(testing::ReadFile(o.restore.output) == testing::ReadFile(images[i])) << i;
  }
}

}  // namespace
}  // namespace chunkferry::engine
