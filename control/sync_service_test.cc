// The sync call end to end on real stores: a group of one Root and two Data volumes (fixed uuids
// and dates) synced local → local, pushed to an in-process store daemon and pulled back; the
// exact success JSON (with and without the SDK's schema map); every error row of the contract,
// each leaving both storages as they were; and two syncs of one group racing to one destination.
#include "control/sync_service.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "control/api_error.h"
#include "control/registry.h"
#include "engine/format/volume_backup.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "engine/wire/auth.h"
#include "engine/wire/store_server.h"
#include "engine/wire/tls.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/net.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"

namespace chunkferry::control {
namespace {

using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

constexpr char kGroup[] = "9f0c1a2b3c4d5e6f708192a3b4c5d6e7";
constexpr char kSrc[] = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";     // local: holds the group
constexpr char kDst[] = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";     // local, empty
constexpr char kOther[] = "b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3";   // local, empty
constexpr char kRemote[] = "c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4";  // a daemon serving an empty store
constexpr char kSilent[] = "d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5";  // accepts TCP, never answers
constexpr char kVm[] = "30000000000000000000000000000001";
constexpr char kRootBackup[] = "10000000000000000000000000000001";
constexpr char kData1Backup[] = "10000000000000000000000000000002";
constexpr char kData2Backup[] = "10000000000000000000000000000003";
constexpr int64_t kCreated = 1510698057;  // Nov 14, 2017 10:20:57 PM UTC

constexpr char kInvalidArgument[] = "One or more API argument is invalid";
constexpr char kNotFound[] = "A resource can not be found";
constexpr char kOperationFailed[] = "An operation failed";
constexpr char kInternal[] = "An internal error happened in system";
constexpr char kTimeout[] = "An operation timeout happened";

engine::AuthKey KeyOf(uint8_t seed) {
  engine::AuthKey key;
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = static_cast<uint8_t>(seed + i);
  return key;
}

std::string Body(const std::string& src, const std::string& dst) {
  return absl::StrCat(R"({"syncVmBackupFromImageStoreBackupStorage":{"srcBackupStorageUuid":")",
                      src, R"(","dstBackupStorageUuid":")", dst, R"("}})");
}

engine::VolumeBackupMeta Meta(const std::string& uuid, const std::string& volume,
                              const std::string& group, const std::string& type) {
  engine::VolumeBackupMeta m;
  m.uuid = uuid;
  m.volume_uuid = volume;
  m.group_uuid = group;
  m.type = type;
  m.create_date = kCreated;
  m.last_op_date = kCreated;
  return m;
}

// A volume image and the volume backup made from it.
struct Volume {
  std::string image;
  engine::VolumeBackupMeta meta;
};

class SyncServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"src", "dst", "other", "served"}) testing::InitStore(tmp_.Sub(name));
    auto src = OpenStore("src", true);
    ASSERT_NE(src, nullptr);
    BuildGroup(*src);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(src->Close().ok());
    for (auto [uuid, name] : {std::pair{kSrc, "src"}, {kDst, "dst"}, {kOther, "other"}}) {
      BackupStorage s;
      s.uuid = uuid;
      s.name = name;
      s.path = tmp_.Sub(name);
      registry_.storages.push_back(s);
    }
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
    server_.reset();
    if (served_ != nullptr) {
      EXPECT_TRUE(served_->Close().ok());
    }
  }

  std::unique_ptr<engine::LocalStore> OpenStore(const std::string& name, bool writable) {
    auto s = testing::OpenStore(tmp_.Sub(name), io::Backend::kAuto, writable, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // Imports `image` into `store` as the volume backup `fixed` describes, dates included. The
  // importer stamps lastOpDate with the clock, so the image goes in under a throwaway uuid (not
  // in any group) and its entries are then written again as the manifest of `fixed`.
  void ImportFixed(engine::LocalStore& store, const std::string& image,
                   engine::VolumeBackupMeta fixed) {
    engine::ImportOptions o;
    o.source = image;
    o.meta = fixed;
    o.meta.uuid = engine::NewUuid();
    o.add_to_group = false;
    engine::ImportStats stats;
    auto imported = engine::ImportVolume(store, pool_, o, &stats);
    ASSERT_TRUE(imported.ok()) << imported.status();
    fixed.size = imported->size;
    fixed.chunker = imported->chunker;
    fixed.install_path = engine::DefaultInstallPath(fixed.group_uuid, fixed.uuid);
    testing::VectorManifestSource entries(fixed, testing::ManifestEntries(store, imported->uuid));
    absl::Status st = store.PutManifest(fixed, entries);
    ASSERT_TRUE(st.ok()) << st;
    st = engine::AddToGroup(store, fixed);
    ASSERT_TRUE(st.ok()) << st;
  }

  // Group kGroup: Root (4 MiB + 512, mixed), Data 1 (2 MiB of text, no description, no
  // metadata), Data 2 (3 MiB - 7 of random bytes, no vmInstanceUuid). Data 1 is imported first:
  // the group still lists the Root volume first.
  void BuildGroup(engine::LocalStore& store) {
    const std::string root = tmp_.Sub("root.img"), data1 = tmp_.Sub("data1.img"),
                      data2 = tmp_.Sub("data2.img");
    testing::WriteMixedFile(root, 4 * kMiB + 512, 1);
    testing::WriteTextFile(data1, 2 * kMiB, 2);
    testing::WriteRandomFile(data2, 3 * kMiB - 7, 3);

    engine::VolumeBackupMeta m =
        Meta(kRootBackup, "20000000000000000000000000000001", kGroup, "Root");
    m.name = "vm-root";
    m.description = "root volume";
    m.metadata = R"({"format":"raw"})";
    m.vm_instance_uuid = kVm;
    m.last_op_date = kCreated + 3600;
    vols_.push_back({root, m});

    m = Meta(kData1Backup, "20000000000000000000000000000002", kGroup, "Data");
    m.name = "vm-data-1";
    m.vm_instance_uuid = kVm;
    m.last_op_date = kCreated + 37143;  // Nov 15, 2017 8:40:00 AM
    vols_.push_back({data1, m});

    m = Meta(kData2Backup, "20000000000000000000000000000003", kGroup, "Data");
    m.name = "vm-data-2";
    m.description = "scratch disk";
    m.mode = "incremental";
    vols_.push_back({data2, m});

    for (size_t i : {1, 0, 2}) {
      ImportFixed(store, vols_[i].image, vols_[i].meta);
      if (HasFatalFailure()) return;
    }
  }

  // Serves store "served" as backup storage kRemote (over TLS when `tls`, the registry pinning
  // the daemon's certificate).
  void StartServer(bool tls = false) {
    served_ = OpenStore("served", true);
    ASSERT_NE(served_, nullptr);
    engine::ServerOptions o;
    o.listen = io::Endpoint{"127.0.0.1", 0};
    o.key = KeyOf(7);
    std::shared_ptr<engine::TlsContext> client_tls;
    if (tls) {
      ASSERT_TRUE(tls_id_.Make(tmp_.path(), "daemon", false, nullptr).ok());
      engine::TlsOptions so;
      so.cert_file = tls_id_.cert_file();
      so.key_file = tls_id_.key_file();
      auto server_ctx = engine::TlsContext::Make(so, engine::TlsRole::kServer);
      ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
      o.tls = *server_ctx;
      engine::TlsOptions co;
      co.peer_sha256 = *engine::CertificateSha256(tls_id_.cert_file());
      auto client_ctx = engine::TlsContext::Make(co, engine::TlsRole::kClient);
      ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
      client_tls = *client_ctx;
    }
    server_ = std::make_unique<engine::StoreServer>(served_.get(), std::move(o));
    absl::Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st;
    BackupStorage s;
    s.uuid = kRemote;
    s.name = "served";
    s.remote = true;
    s.endpoint = io::Endpoint{"127.0.0.1", server_->port()};
    s.key = KeyOf(7);
    s.connections = 2;
    s.tls = client_tls;
    registry_.storages.push_back(s);
  }

  std::unique_ptr<SyncService> Service() {
    ServiceOptions o;
    o.pool_workers = 1;
    return std::make_unique<SyncService>(registry_, o);
  }

  // Every volume of the group restores byte-identical from the local store `name`.
  void ExpectRestores(const std::string& name) {
    auto store = OpenStore(name, false);
    ASSERT_NE(store, nullptr);
    for (size_t i = 0; i < vols_.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(*store, pool_, vols_[i].meta.uuid, vols_[i].image,
                                             tmp_.Sub(absl::StrCat(name, "-out", i))))
          << vols_[i].meta.type;
    }
  }

  // The groups the local store `name` lists.
  std::vector<std::string> Groups(const std::string& name) {
    auto store = OpenStore(name, false);
    if (store == nullptr) return {"(cannot open)"};
    auto groups = store->ListGroups();
    EXPECT_TRUE(groups.ok()) << groups.status();
    return groups.ok() ? *groups : std::vector<std::string>{};
  }

  // Backup storage uuids of each inventory's refs, in order.
  static std::vector<std::vector<std::string>> RefUuids(const Json& inventories) {
    std::vector<std::vector<std::string>> out;
    for (const auto& inv : inventories) {
      out.emplace_back();
      for (const auto& ref : inv["backupStorageRefs"]) {
        out.back().push_back(ref["backupStorageUuid"].get<std::string>());
      }
    }
    return out;
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::vector<Volume> vols_;  // Root, Data 1, Data 2
  Registry registry_;
  std::unique_ptr<engine::LocalStore> served_;
  std::unique_ptr<engine::StoreServer> server_;
  testing::TlsIdentity tls_id_;
};

// ---- Parsing. ----

TEST(ParseSyncActionTest, TakesThePathGroupAndMergesTagsFromBothPlaces) {
  const std::string body =
      absl::StrCat(R"({"systemTags":["s1","s2"],"userTags":["u1"],)",
                   R"("syncVmBackupFromImageStoreBackupStorage":{"srcBackupStorageUuid":")", kSrc,
                   R"(","dstBackupStorageUuid":")", kDst,
                   R"(","groupUuid":"ffffffffffffffffffffffffffffffff","systemTags":["s3"],)",
                   R"("userTags":null,"resourceUuid":"x","timeout":5},"somethingNew":[1]})");
  const ParsedAction p = ParseSyncAction(kGroup, body);
  ASSERT_TRUE(p.bad_request.empty()) << p.bad_request;
  ASSERT_FALSE(p.error.has_value()) << p.error->details;
  EXPECT_EQ(p.request.group_uuid, kGroup);
  EXPECT_EQ(p.request.src_uuid, kSrc);
  EXPECT_EQ(p.request.dst_uuid, kDst);
  EXPECT_EQ(p.request.system_tags, (std::vector<std::string>{"s1", "s2", "s3"}));
  EXPECT_EQ(p.request.user_tags, (std::vector<std::string>{"u1"}));
}

TEST(ParseSyncActionTest, TagsAreOptional) {
  const ParsedAction p = ParseSyncAction(kGroup, Body(kSrc, kDst));
  ASSERT_TRUE(p.bad_request.empty()) << p.bad_request;
  ASSERT_FALSE(p.error.has_value()) << p.error->details;
  EXPECT_TRUE(p.request.system_tags.empty());
  EXPECT_TRUE(p.request.user_tags.empty());
}

// ---- Success. ----

// Dates are written in the registry's zone, as a management node writes its own local time: the
// root's creation (22:20:57 UTC) is the next morning in UTC+8.
TEST_F(SyncServiceTest, DatesAreWrittenInTheRegistrysTimeZone) {
  ASSERT_TRUE(absl::LoadTimeZone("Asia/Shanghai", &registry_.time_zone));
  auto service = Service();
  const SyncResult r = service->Call(kGroup, Body(kSrc, kDst), nullptr, nullptr);
  ASSERT_FALSE(r.error.has_value()) << r.error->details;
  ASSERT_FALSE(r.inventories.empty());
  EXPECT_EQ(r.inventories[0].value("createDate", ""), "Nov 15, 2017 6:20:57 AM");
  EXPECT_EQ(r.inventories[0]["backupStorageRefs"][0].value("createDate", ""),
            "Nov 15, 2017 6:20:57 AM");
}

TEST_F(SyncServiceTest, SuccessBodyIsExactlyTheContractsJson) {
  auto service = Service();
  const SyncResult r = service->Call(kGroup, Body(kSrc, kDst), nullptr, nullptr);
  ASSERT_FALSE(r.error.has_value()) << r.error->details;

  const std::string root =
      R"json({"uuid":"10000000000000000000000000000001","volumeUuid":"20000000000000000000000000000001",)json"
      R"json("name":"vm-root","description":"root volume","type":"Root","state":"Enabled",)json"
      R"json("status":"Ready","size":4194816,"metadata":"{\"format\":\"raw\"}",)json"
      R"json("groupUuid":"9f0c1a2b3c4d5e6f708192a3b4c5d6e7","mode":"full",)json"
      R"json("vmInstanceUuid":"30000000000000000000000000000001",)json"
      R"json("createDate":"Nov 14, 2017 10:20:57 PM","lastOpDate":"Nov 14, 2017 11:20:57 PM",)json"
      R"json("backupStorageRefs":[)json"
      R"json({"volumeBackupUuid":"10000000000000000000000000000001",)json"
      R"json("backupStorageUuid":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",)json"
      R"json("installPath":"chunkferry://volume-backups/9f0c1a2b3c4d5e6f708192a3b4c5d6e7/10000000000000000000000000000001",)json"
      R"json("status":"Ready","createDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("lastOpDate":"Nov 14, 2017 11:20:57 PM"},)json"
      R"json({"volumeBackupUuid":"10000000000000000000000000000001",)json"
      R"json("backupStorageUuid":"b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",)json"
      R"json("installPath":"chunkferry://volume-backups/9f0c1a2b3c4d5e6f708192a3b4c5d6e7/10000000000000000000000000000001",)json"
      R"json("status":"Ready","createDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("lastOpDate":"Nov 14, 2017 11:20:57 PM"}]})json";
  const std::string data1 =
      R"json({"uuid":"10000000000000000000000000000002","volumeUuid":"20000000000000000000000000000002",)json"
      R"json("name":"vm-data-1","type":"Data","state":"Enabled","status":"Ready","size":2097152,)json"
      R"json("groupUuid":"9f0c1a2b3c4d5e6f708192a3b4c5d6e7","mode":"full",)json"
      R"json("vmInstanceUuid":"30000000000000000000000000000001",)json"
      R"json("createDate":"Nov 14, 2017 10:20:57 PM","lastOpDate":"Nov 15, 2017 8:40:00 AM",)json"
      R"json("backupStorageRefs":[)json"
      R"json({"volumeBackupUuid":"10000000000000000000000000000002",)json"
      R"json("backupStorageUuid":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",)json"
      R"json("installPath":"chunkferry://volume-backups/9f0c1a2b3c4d5e6f708192a3b4c5d6e7/10000000000000000000000000000002",)json"
      R"json("status":"Ready","createDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("lastOpDate":"Nov 15, 2017 8:40:00 AM"},)json"
      R"json({"volumeBackupUuid":"10000000000000000000000000000002",)json"
      R"json("backupStorageUuid":"b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",)json"
      R"json("installPath":"chunkferry://volume-backups/9f0c1a2b3c4d5e6f708192a3b4c5d6e7/10000000000000000000000000000002",)json"
      R"json("status":"Ready","createDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("lastOpDate":"Nov 15, 2017 8:40:00 AM"}]})json";
  const std::string data2 =
      R"json({"uuid":"10000000000000000000000000000003","volumeUuid":"20000000000000000000000000000003",)json"
      R"json("name":"vm-data-2","description":"scratch disk","type":"Data","state":"Enabled",)json"
      R"json("status":"Ready","size":3145721,)json"
      R"json("groupUuid":"9f0c1a2b3c4d5e6f708192a3b4c5d6e7","mode":"incremental",)json"
      R"json("createDate":"Nov 14, 2017 10:20:57 PM","lastOpDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("backupStorageRefs":[)json"
      R"json({"volumeBackupUuid":"10000000000000000000000000000003",)json"
      R"json("backupStorageUuid":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",)json"
      R"json("installPath":"chunkferry://volume-backups/9f0c1a2b3c4d5e6f708192a3b4c5d6e7/10000000000000000000000000000003",)json"
      R"json("status":"Ready","createDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("lastOpDate":"Nov 14, 2017 10:20:57 PM"},)json"
      R"json({"volumeBackupUuid":"10000000000000000000000000000003",)json"
      R"json("backupStorageUuid":"b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",)json"
      R"json("installPath":"chunkferry://volume-backups/9f0c1a2b3c4d5e6f708192a3b4c5d6e7/10000000000000000000000000000003",)json"
      R"json("status":"Ready","createDate":"Nov 14, 2017 10:20:57 PM",)json"
      R"json("lastOpDate":"Nov 14, 2017 10:20:57 PM"}]})json";
  const std::string inventories =
      absl::StrCat(R"({"inventories":[)", root, ",", data1, ",", data2, "]");
  EXPECT_EQ(SuccessBody(r.inventories, false).dump(), absl::StrCat(inventories, "}"));

  const char* kInv = "org.zstack.header.storage.backup.VolumeBackupInventory";
  const char* kRef = "org.zstack.header.storage.backup.VolumeBackupStorageRefInventory";
  std::string schema = R"(,"schema":{)";
  for (int i = 0; i < 3; ++i) {
    absl::StrAppend(&schema, i > 0 ? "," : "", "\"inventories[", i, "]\":\"", kInv, "\"");
    for (int j = 0; j < 2; ++j) {
      absl::StrAppend(&schema, ",\"inventories[", i, "].backupStorageRefs[", j, "]\":\"", kRef,
                      "\"");
    }
  }
  EXPECT_EQ(SuccessBody(r.inventories, true).dump(), absl::StrCat(inventories, schema, "}}"));
}

TEST(SuccessBodyTest, SchemaOfNoInventoriesIsEmpty) {
  EXPECT_EQ(SuccessBody(Json::array(), true).dump(), R"({"inventories":[],"schema":{}})");
  EXPECT_EQ(SuccessBody(Json::array(), false).dump(), R"({"inventories":[]})");
}

TEST_F(SyncServiceTest, LocalSyncRestoresIdenticallyAndSecondSyncSendsNothing) {
  auto service = Service();
  std::vector<engine::ProgressState> ticks;
  const engine::ProgressFn progress = [&ticks](const engine::ProgressState& s) {
    ticks.push_back(s);
  };
  const SyncResult first = service->Call(kGroup, Body(kSrc, kDst), &progress, nullptr);
  ASSERT_FALSE(first.error.has_value()) << first.error->details;
  EXPECT_EQ(first.stats.volumes, 3u);
  EXPECT_GT(first.stats.chunks_missing, 0u);
  EXPECT_GT(first.stats.bytes_sent, 0u);
  EXPECT_EQ(first.stats.logical_bytes, 4 * kMiB + 512 + 2 * kMiB + 3 * kMiB - 7);
  ASSERT_EQ(first.inventories.size(), 3u);
  EXPECT_EQ(first.inventories[0]["type"], "Root");
  EXPECT_EQ(RefUuids(first.inventories), (std::vector<std::vector<std::string>>(3, {kSrc, kDst})));
  ASSERT_FALSE(ticks.empty());
  EXPECT_TRUE(ticks.back().final);
  EXPECT_EQ(ticks.back().bytes_done, ticks.back().bytes_total);

  EXPECT_EQ(Groups("dst"), std::vector<std::string>{kGroup});
  ExpectRestores("dst");
  const auto packs = testing::PackSizes(tmp_.Sub("dst"));

  const SyncResult again = service->Call(kGroup, Body(kSrc, kDst), nullptr, nullptr);
  ASSERT_FALSE(again.error.has_value()) << again.error->details;
  EXPECT_EQ(again.stats.chunks_missing, 0u);
  EXPECT_EQ(again.stats.bytes_sent, 0u);
  EXPECT_EQ(again.inventories, first.inventories);
  EXPECT_EQ(testing::PackSizes(tmp_.Sub("dst")), packs);
}

TEST_F(SyncServiceTest, PushesToADaemonAndPullsFromIt) {
  StartServer();
  ASSERT_FALSE(HasFatalFailure());
  auto service = Service();

  const SyncResult push = service->Call(kGroup, Body(kSrc, kRemote), nullptr, nullptr);
  ASSERT_FALSE(push.error.has_value()) << push.error->details;
  EXPECT_GT(push.stats.bytes_sent, 0u);
  EXPECT_EQ(RefUuids(push.inventories),
            (std::vector<std::vector<std::string>>(3, {kSrc, kRemote})));
  absl::Status st = server_->WithStore([this](engine::LocalStore& s) {
    auto groups = s.ListGroups();
    EXPECT_TRUE(groups.ok());
    if (groups.ok()) {
      EXPECT_EQ(*groups, std::vector<std::string>{kGroup});
    }
    for (size_t i = 0; i < vols_.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(s, pool_, vols_[i].meta.uuid, vols_[i].image,
                                             tmp_.Sub(absl::StrCat("served-out", i))));
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;

  // Pull: the daemon is now the source.
  const SyncResult pull = service->Call(kGroup, Body(kRemote, kOther), nullptr, nullptr);
  ASSERT_FALSE(pull.error.has_value()) << pull.error->details;
  EXPECT_EQ(pull.stats.bytes_sent, push.stats.bytes_sent);
  EXPECT_EQ(RefUuids(pull.inventories),
            (std::vector<std::vector<std::string>>(3, {kRemote, kOther})));
  // The same volume backups: the store keeps every field, dates and install paths included.
  for (size_t i = 0; i < 3; ++i) {
    Json a = push.inventories[i], b = pull.inventories[i];
    a.erase("backupStorageRefs");
    b.erase("backupStorageRefs");
    EXPECT_EQ(a, b) << i;
  }
  ExpectRestores("other");
}

TEST_F(SyncServiceTest, PushesToADaemonOverTls) {
  StartServer(/*tls=*/true);
  ASSERT_FALSE(HasFatalFailure());
  auto service = Service();
  const SyncResult push = service->Call(kGroup, Body(kSrc, kRemote), nullptr, nullptr);
  ASSERT_FALSE(push.error.has_value()) << push.error->details;
  EXPECT_GT(push.stats.bytes_sent, 0u);
  const SyncResult pull = service->Call(kGroup, Body(kRemote, kOther), nullptr, nullptr);
  ASSERT_FALSE(pull.error.has_value()) << pull.error->details;
  ExpectRestores("other");
}

// ---- Errors: each leaves both storages as they were. ----

struct ErrorRow {
  const char* name;
  std::string path_group;
  std::string body;
  std::string code;         // empty: a bad request (plain-text 400)
  std::string description;  // or the bad request's text
  std::string details;      // a part of the details
};

TEST_F(SyncServiceTest, RequestErrorsChangeNothing) {
  const std::string action = R"({"syncVmBackupFromImageStoreBackupStorage":{)";
  const std::string src = absl::StrCat(R"("srcBackupStorageUuid":")", kSrc, R"(")");
  const std::string dst = absl::StrCat(R"("dstBackupStorageUuid":")", kDst, R"(")");
  const std::string unknown = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
  const std::vector<ErrorRow> rows = {
      {"missing src", kGroup, absl::StrCat(action, dst, "}}"), std::string(kSysInvalidArgument),
       kInvalidArgument, "srcBackupStorageUuid is missing"},
      {"src not a string", kGroup, absl::StrCat(action, R"("srcBackupStorageUuid":12,)", dst, "}}"),
       std::string(kSysInvalidArgument), kInvalidArgument,
       "srcBackupStorageUuid must be a string, not number"},
      {"malformed src", kGroup, Body("A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1", kDst),
       std::string(kSysInvalidArgument), kInvalidArgument,
       "srcBackupStorageUuid 'A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1' is not a uuid"},
      {"malformed dst", kGroup, Body(kSrc, "b2b2b2b2-b2b2-b2b2-b2b2-b2b2b2b2b2b2"),
       std::string(kSysInvalidArgument), kInvalidArgument, "dstBackupStorageUuid 'b2b2b2b2-"},
      {"bad path uuid", "9f0c1a2b", Body(kSrc, kDst), std::string(kSysInvalidArgument),
       kInvalidArgument, "groupUuid '9f0c1a2b' is not a uuid"},
      {"src == dst", kGroup, Body(kSrc, kSrc), std::string(kSysInvalidArgument), kInvalidArgument,
       "are the same backup storage a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"},
      {"systemTags not a list", kGroup,
       absl::StrCat(R"({"systemTags":"a",)", action.substr(1), src, ",", dst, "}}"),
       std::string(kSysInvalidArgument), kInvalidArgument,
       "systemTags (top level) must be a list of strings, not string"},
      {"userTags holds a number", kGroup,
       absl::StrCat(action, src, ",", dst, R"(,"userTags":["a",2]}})"),
       std::string(kSysInvalidArgument), kInvalidArgument,
       "userTags[1] (in the action) must be a string, not number"},
      {"not JSON", kGroup, "sync please", "", "must be a JSON object", ""},
      {"JSON but not an object", kGroup, absl::StrCat("[", Body(kSrc, kDst), "]"), "",
       "must be a JSON object", ""},
      {"no action key", kGroup, absl::StrCat(R"({"syncVolumeBackup":{)", src, ",", dst, "}}"), "",
       "names no known action", ""},
      {"action not an object", kGroup, R"({"syncVmBackupFromImageStoreBackupStorage":[]})", "",
       "must be a JSON object, not array", ""},
      {"unknown group", unknown, Body(kSrc, kDst), std::string(kSysNotFound), kNotFound,
       absl::StrCat("group ", unknown, " not found in backup storage ", kSrc)},
      {"unknown src", kGroup, Body(unknown, kDst), std::string(kSysNotFound), kNotFound,
       absl::StrCat("source backup storage ", unknown, " (srcBackupStorageUuid)")},
      {"unknown dst", kGroup, Body(kSrc, unknown), std::string(kSysNotFound), kNotFound,
       absl::StrCat("destination backup storage ", unknown, " (dstBackupStorageUuid)")},
  };
  auto service = Service();
  for (const ErrorRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto src_before = testing::ListFiles(tmp_.Sub("src"), {"LOCK"});
    const auto dst_before = testing::ListFiles(tmp_.Sub("dst"), {"LOCK"});
    std::string bad_request;
    const SyncResult r = service->Call(row.path_group, row.body, nullptr, &bad_request);
    EXPECT_TRUE(r.inventories.empty());
    if (row.code.empty()) {
      EXPECT_FALSE(r.error.has_value());
      EXPECT_TRUE(absl::StrContains(bad_request, row.description)) << bad_request;
    } else {
      EXPECT_TRUE(bad_request.empty()) << bad_request;
      ASSERT_TRUE(r.error.has_value());
      const Json e = ErrorCodeJson(*r.error);
      EXPECT_EQ(e["code"], row.code);
      EXPECT_EQ(e["description"], row.description);
      EXPECT_TRUE(absl::StrContains(r.error->details, row.details)) << r.error->details;
    }
    EXPECT_EQ(testing::ListFiles(tmp_.Sub("src"), {"LOCK"}), src_before);
    EXPECT_EQ(testing::ListFiles(tmp_.Sub("dst"), {"LOCK"}), dst_before);
  }
  EXPECT_TRUE(Groups("dst").empty());
}

TEST_F(SyncServiceTest, SyncChecksTheRequestItIsGiven) {
  // The C ABI may build a SyncRequest itself: Sync checks it as the parser does.
  auto service = Service();
  SyncRequest request{kGroup, kSrc, kSrc, {}, {}};
  SyncResult r = service->Sync(request, nullptr);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->code, kSysInvalidArgument);
  request = SyncRequest{"Z", kSrc, kDst, {}, {}};
  r = service->Sync(request, nullptr);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->code, kSysInvalidArgument);
  EXPECT_TRUE(Groups("dst").empty());
}

TEST_F(SyncServiceTest, GroupWithoutExactlyOneRootFails) {
  const std::string no_root = "9f0c1a2b3c4d5e6f708192a3b4c5d600";
  const std::string two_roots = "9f0c1a2b3c4d5e6f708192a3b4c5d622";
  {
    auto src = OpenStore("src", true);
    ASSERT_NE(src, nullptr);
    const std::string image = tmp_.Sub("small.img");
    testing::WriteRandomFile(image, 256 << 10, 9);
    ImportFixed(*src, image,
                Meta("10000000000000000000000000000010", "20000000000000000000000000000010",
                     no_root, "Data"));
    ImportFixed(*src, image,
                Meta("10000000000000000000000000000020", "20000000000000000000000000000020",
                     two_roots, "Root"));
    ImportFixed(*src, image,
                Meta("10000000000000000000000000000021", "20000000000000000000000000000021",
                     two_roots, "Root"));
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(src->Close().ok());
  }
  auto service = Service();
  for (const auto& [group, details] :
       {std::pair{no_root, "holds 0 Root volume backups (of 1)"},
        std::pair{two_roots, "holds 2 Root volume backups (of 2)"}}) {
    SCOPED_TRACE(group);
    const auto dst_before = testing::ListFiles(tmp_.Sub("dst"), {"LOCK"});
    const SyncResult r = service->Call(group, Body(kSrc, kDst), nullptr, nullptr);
    ASSERT_TRUE(r.error.has_value());
    const Json e = ErrorCodeJson(*r.error);
    EXPECT_EQ(e["code"], kSysOperationFailed);
    EXPECT_EQ(e["description"], kOperationFailed);
    EXPECT_TRUE(absl::StrContains(r.error->details, details)) << r.error->details;
    EXPECT_TRUE(absl::StrContains(r.error->details, group)) << r.error->details;
    EXPECT_TRUE(r.inventories.empty());
    EXPECT_EQ(testing::ListFiles(tmp_.Sub("dst"), {"LOCK"}), dst_before);
  }
  EXPECT_TRUE(Groups("dst").empty());
}

// The destination's full check rejects the record. Records of earlier batches, checked and
// intact, may stay in the destination's packs (DESIGN.md, principle 8: "apart from chunks that a
// later run reuses"); nothing names them, and the rerun after the repair reuses them.
TEST_F(SyncServiceTest, DamagedSourceRecordIsAnInternalErrorAndPublishesNothing) {
  std::string pack;
  uint64_t offset = 0;
  {
    auto src = OpenStore("src", false);
    ASSERT_NE(src, nullptr);
    // A record of Data 2 (random bytes, stored raw): its id no longer matches once decoded.
    const auto entries = testing::ManifestEntries(*src, kData2Backup);
    ASSERT_FALSE(entries.empty());
    const auto loc = src->index().Find(entries[entries.size() / 2].id);
    ASSERT_TRUE(loc.has_value());
    pack = testing::PackPath(tmp_.Sub("src"), loc->record.pack);
    offset = testing::PayloadOffset(tmp_.Sub("src"), loc->record) + 10;
  }
  testing::FlipByte(pack, offset, 0x20);
  const auto dst_before = testing::ListFiles(tmp_.Sub("dst"), {"LOCK"});
  auto service = Service();
  const SyncResult r = service->Call(kGroup, Body(kSrc, kDst), nullptr, nullptr);
  ASSERT_TRUE(r.error.has_value());
  const Json e = ErrorCodeJson(*r.error);
  EXPECT_EQ(e["code"], kSysInternal);
  EXPECT_EQ(e["description"], kInternal);
  EXPECT_TRUE(absl::StrContains(
      r.error->details, absl::StrCat("sync of group ", kGroup, " to backup storage ", kDst)))
      << r.error->details;
  EXPECT_TRUE(absl::StrContains(r.error->details, tmp_.Sub("dst")))
      << "which store refused? " << r.error->details;
  EXPECT_TRUE(r.inventories.empty());
  EXPECT_TRUE(Groups("dst").empty());
  // The records appended before the damaged one was found are rolled back too: the
  // destination is as it was, byte for byte.
  EXPECT_EQ(testing::ListFiles(tmp_.Sub("dst"), {"LOCK"}), dst_before);
  {
    auto dst = OpenStore("dst", false);
    ASSERT_NE(dst, nullptr);
    auto report = engine::VerifyStore(*dst, pool_, engine::VerifyMode::kFull);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << (report->problems.empty() ? "" : report->problems[0]);
    EXPECT_EQ(report->manifests, 0u);
    EXPECT_EQ(report->groups, 0u);
  }

  // Repaired, the group syncs in full, storing nothing twice.
  testing::FlipByte(pack, offset, 0x20);
  const SyncResult again = service->Call(kGroup, Body(kSrc, kDst), nullptr, nullptr);
  ASSERT_FALSE(again.error.has_value()) << again.error->details;
  const SyncResult fresh = service->Call(kGroup, Body(kSrc, kOther), nullptr, nullptr);
  ASSERT_FALSE(fresh.error.has_value()) << fresh.error->details;
  EXPECT_EQ(again.stats.bytes_sent, fresh.stats.bytes_sent);
  EXPECT_EQ(testing::TotalPackBytes(tmp_.Sub("dst")), testing::TotalPackBytes(tmp_.Sub("other")));
  ExpectRestores("dst");
}

// A destination disk that fills up during the sync (a file size limit here: EFBIG, as ENOSPC is
// for a real disk) fails the call with the platform's answer for a backup storage short of
// capacity and leaves the destination as it was; with space again the same service syncs it
// whole. For a local destination and for one behind a daemon.
TEST_F(SyncServiceTest, AFullDestinationIsSys1006AndLeavesItAsItWas) {
  StartServer();
  ASSERT_FALSE(HasFatalFailure());
  auto service = Service();
  for (const std::string& dst : {std::string(kDst), std::string(kRemote)}) {
    SCOPED_TRACE(dst);
    const std::string dir = tmp_.Sub(dst == kDst ? "dst" : "served");
    const auto before = testing::ListFiles(dir, {"LOCK", "index/"});
    SyncResult full;
    {
      testing::ScopedFileSizeLimit limit(512 << 10);
      ASSERT_TRUE(limit.ok());
      full = service->Call(kGroup, Body(kSrc, dst), nullptr, nullptr);
    }
    ASSERT_TRUE(full.error.has_value()) << "the group fit under a 512 KiB file size limit";
    const Json e = ErrorCodeJson(*full.error);
    EXPECT_EQ(e["code"], kSysOperationFailed) << full.error->details;
    EXPECT_EQ(e["description"], "An operation failed");
    EXPECT_TRUE(absl::StrContains(full.error->details,
                                  absl::StrCat("the backup storage[uuid:", dst, ", name:")))
        << full.error->details;
    EXPECT_TRUE(absl::StrContains(full.error->details, "has not enough capacity"))
        << full.error->details;
    EXPECT_TRUE(full.inventories.empty());
    EXPECT_EQ(testing::ListFiles(dir, {"LOCK", "index/"}), before);

    const SyncResult again = service->Call(kGroup, Body(kSrc, dst), nullptr, nullptr);
    ASSERT_FALSE(again.error.has_value()) << again.error->details;
    EXPECT_EQ(again.inventories.size(), 3u);
  }
  ExpectRestores("dst");
}

// A sync past its deadline (X-API-Timeout) stops, fails with SYS.1001, and publishes nothing:
// a deadline gone before it starts, and one that passes while records travel (the progress
// callback, called from the copy, outlasts it).
TEST_F(SyncServiceTest, ASyncPastItsDeadlineIsSys1001AndPublishesNothing) {
  auto service = Service();
  ParsedAction parsed = ParseSyncAction(kGroup, Body(kSrc, kDst));
  ASSERT_TRUE(parsed.bad_request.empty() && !parsed.error.has_value());
  const auto before = testing::ListFiles(tmp_.Sub("dst"), {"LOCK", "index/"});
  SyncRequest late = parsed.request;
  late.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const SyncResult gone = service->Sync(late, nullptr);
  ASSERT_TRUE(gone.error.has_value());
  EXPECT_EQ(gone.error->code, kSysTimeout) << gone.error->details;
  EXPECT_TRUE(absl::StrContains(gone.error->details, "X-API-Timeout")) << gone.error->details;
  EXPECT_EQ(testing::ListFiles(tmp_.Sub("dst"), {"LOCK", "index/"}), before);

  SyncRequest slow = parsed.request;
  slow.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  bool slept = false;
  const engine::ProgressFn progress = [&slept](const engine::ProgressState& s) {
    if (s.phase == "copy" && !slept) {
      slept = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
    }
  };
  const SyncResult cut = service->Sync(slow, &progress);
  ASSERT_TRUE(slept);
  ASSERT_TRUE(cut.error.has_value()) << "the copy outlived its deadline";
  EXPECT_EQ(cut.error->code, kSysTimeout) << cut.error->details;
  EXPECT_TRUE(Groups("dst").empty());
  EXPECT_EQ(testing::ListFiles(tmp_.Sub("dst"), {"LOCK", "index/"}), before);
  // Without a deadline the same sync goes through.
  const SyncResult ok = service->Sync(parsed.request, nullptr);
  ASSERT_FALSE(ok.error.has_value()) << ok.error->details;
  ExpectRestores("dst");
}

TEST_F(SyncServiceTest, SilentDaemonIsATimeout) {
  auto listener = io::Listen(io::Endpoint{"127.0.0.1", 0}, 8);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto port = io::LocalPort(listener->get());
  ASSERT_TRUE(port.ok());
  BackupStorage s;
  s.uuid = kSilent;
  s.remote = true;
  s.endpoint = io::Endpoint{"127.0.0.1", *port};
  s.key = KeyOf(7);
  s.connect_timeout_ms = 1000;
  registry_.storages.push_back(s);
  auto service = Service();
  const auto src_before = testing::ListFiles(tmp_.Sub("src"), {"LOCK"});
  const SyncResult r = service->Call(kGroup, Body(kSrc, kSilent), nullptr, nullptr);
  ASSERT_TRUE(r.error.has_value());
  const Json e = ErrorCodeJson(*r.error);
  EXPECT_EQ(e["code"], kSysTimeout);
  EXPECT_EQ(e["description"], kTimeout);
  EXPECT_TRUE(absl::StrContains(r.error->details,
                                absl::StrCat("cannot open destination backup storage ", kSilent)))
      << r.error->details;
  EXPECT_TRUE(absl::StrContains(r.error->details, "connect timeout of 1000 ms"))
      << r.error->details;
  EXPECT_TRUE(r.inventories.empty());
  EXPECT_EQ(testing::ListFiles(tmp_.Sub("src"), {"LOCK"}), src_before);
}

// ---- Concurrency. ----

TEST_F(SyncServiceTest, TwoSyncsOfOneGroupToOneDestinationStoreItOnce) {
  auto service = Service();
  SyncResult results[2];
  std::vector<std::thread> threads;
  for (SyncResult& result : results) {
    threads.emplace_back([&service, &result] {
      result = service->Call(kGroup, Body(kSrc, kDst), nullptr, nullptr);
    });
  }
  for (auto& t : threads) t.join();
  for (const SyncResult& r : results) {
    ASSERT_FALSE(r.error.has_value()) << r.error->details;
    EXPECT_EQ(r.inventories.size(), 3u);
  }
  // One of them copied everything, the other found it there.
  EXPECT_EQ(std::min(results[0].stats.bytes_sent, results[1].stats.bytes_sent), 0u);
  const uint64_t sent = std::max(results[0].stats.bytes_sent, results[1].stats.bytes_sent);
  EXPECT_GT(sent, 0u);

  // The same bytes as one sync into an empty store.
  const SyncResult single = service->Call(kGroup, Body(kSrc, kOther), nullptr, nullptr);
  ASSERT_FALSE(single.error.has_value()) << single.error->details;
  EXPECT_EQ(single.stats.bytes_sent, sent);
  EXPECT_EQ(testing::TotalPackBytes(tmp_.Sub("dst")), testing::TotalPackBytes(tmp_.Sub("other")));
  EXPECT_EQ(Groups("dst"), std::vector<std::string>{kGroup});
  ExpectRestores("dst");
}

}  // namespace
}  // namespace chunkferry::control
