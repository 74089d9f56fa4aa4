// The RADOS store against clusters of its own (tools/ceph_cluster.sh), for what the shared test
// cluster must not see: its only OSD going away in the middle of a sync, cephx with the least
// capabilities chunkferry needs, and packs in an erasure-coded pool (three OSDs).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/readback_verifier.h"
#include "engine/rados/rados_store.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "tests/test_util.h"

namespace chunkferry::engine::rados {
namespace {

using ::chunkferry::testing::TempDir;
using Volume = ::chunkferry::testing::ImportedVolume;
constexpr size_t kMiB = 1 << 20;

// A cluster of the test's own, stopped and removed with it.
class Cluster {
 public:
  explicit Cluster(const std::string& dir, bool cephx, bool ec = false) : dir_(dir) {
    std::vector<std::string> argv = {kScript, "start", dir};
    if (cephx) argv.push_back("--cephx");
    if (ec) argv.push_back("--ec");
    auto r = testing::RunProcess(argv);
    started_ = r.exit_code == 0;
    EXPECT_TRUE(started_) << r.err;
  }
  ~Cluster() { (void)testing::RunProcess({kScript, "stop", dir_}); }
  bool started() const { return started_; }
  std::string conf() const { return absl::StrCat(dir_, "/ceph.conf"); }
  std::string dir() const { return dir_; }
  pid_t osd_pid() const {
    auto text = io::ReadFileToString(absl::StrCat(dir_, "/run/osd.0.pid"));
    int pid = 0;
    return text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) ? pid : -1;
  }
  // Starts the killed OSD again and waits for it to be up (retried: it can die at start).
  bool StartOsd() { return testing::RunProcess({kScript, "start-osd", dir_}).exit_code == 0; }

  static constexpr const char* kScript = CHUNKFERRY_SOURCE_DIR "/tools/ceph_cluster.sh";

 private:
  std::string dir_;
  bool started_ = false;
};

class RadosClusterTest : public ::testing::Test {
 protected:
  // A local store holding one sample group of the given sizes.
  std::unique_ptr<LocalStore> Source(const std::string& group, testing::SampleGroupSizes sizes,
                                     std::vector<Volume>* vols) {
    testing::InitStore(tmp_.Sub("src"));
    auto s = testing::OpenStore(tmp_.Sub("src"), io::Backend::kThreads, true, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    *vols = testing::ImportSampleGroup(**s, pool_, tmp_, group, 21, sizes);
    EXPECT_TRUE((*s)->Flush().ok());
    return *std::move(s);
  }

  // A writer's options: small packs (many of them), records checked on the test's pool.
  RadosStoreOptions WriterOptions(const RadosClientOptions& client) {
    RadosStoreOptions o;
    o.client = client;
    o.pack_target = 1 << 20;
    o.pool = &pool_;
    return o;
  }

  void ExpectRestores(Store& from, const std::string& group, const std::vector<Volume>& vols) {
    const std::string dir = tmp_.Sub("back");
    testing::InitStore(dir);
    auto back = testing::OpenStore(dir, io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(back.ok());
    CopyStats stats;
    absl::Status st = CopyGroup(from, **back, group, CopyOptions(), &stats);
    ASSERT_TRUE(st.ok()) << st;
    for (size_t i = 0; i < vols.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(**back, pool_, vols[i].meta.uuid, vols[i].image,
                                             tmp_.Sub(absl::StrCat("out", i))));
    }
  }

  WorkerPool pool_{1};
  TempDir tmp_;
};

// Packs of `store` in `io` (its pool, or its data pool).
size_t CountPacks(librados::IoCtx& io) {
  size_t packs = 0;
  for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) {
    packs += absl::StartsWith(it->get_oid(), "pack.") ? 1 : 0;
  }
  return packs;
}
size_t CountPacks(RadosStore& store) { return CountPacks(store.rados().io()); }

TEST_F(RadosClusterTest, TheClusterGoingAwayMidSyncFailsClearlyAndTheNextRunConverges) {
  Cluster cluster(tmp_.Sub("ceph"), /*cephx=*/false);
  ASSERT_TRUE(cluster.started());
  RadosUrl url{"chunkferry", "osd-down"};
  RadosClientOptions client;
  client.conf_path = cluster.conf();
  client.timeout_ms = 5'000;
  StoreInitOptions init;
  init.chunker = *codec::ChunkerSpec::Parse("fixed:4k");
  ASSERT_TRUE(RadosStore::Init(url, client, init).ok());
  std::vector<Volume> vols;
  const std::string group = NewUuid();
  auto src = Source(group, {40 * kMiB, 16 * kMiB, 16 * kMiB}, &vols);
  ASSERT_NE(src, nullptr);

  RadosStoreOptions o = WriterOptions(client);
  auto writer = RadosStore::Open(url, o);
  ASSERT_TRUE(writer.ok()) << writer.status();
  RadosStoreOptions ro = o;
  ro.writable = false;
  auto watcher = RadosStore::Open(url, ro);
  ASSERT_TRUE(watcher.ok()) << watcher.status();

  absl::Status copied;
  std::thread copy([&] {
    CopyStats stats;
    copied = CopyGroup(*src, **writer, group, CopyOptions(), &stats);
  });
  // Stop the only OSD once the sync has written a few packs.
  bool stopped = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!stopped && std::chrono::steady_clock::now() < deadline) {
    if (CountPacks(**watcher) >= 3) stopped = ::kill(cluster.osd_pid(), SIGKILL) == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto stop_time = std::chrono::steady_clock::now();
  copy.join();
  ASSERT_TRUE(stopped) << "the sync ended before the OSD could be stopped";
  // A clear error, in bounded time (the client's timeout), not a hang.
  EXPECT_FALSE(copied.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(copied) || absl::IsUnavailable(copied)) << copied;
  EXPECT_TRUE(absl::StrContains(copied.message(), "rados:chunkferry/osd-down")) << copied;
  EXPECT_LT(std::chrono::steady_clock::now() - stop_time, std::chrono::seconds(60));
  writer->reset();
  watcher->reset();

  // The OSD back: nothing was published, and the next run converges.
  ASSERT_TRUE(cluster.StartOsd());
  std::unique_ptr<RadosStore> again;
  for (int i = 0; i < 60 && !again; ++i) {
    auto s = RadosStore::Open(url, o);
    if (s.ok() && (*s)->ListGroups().ok()) {
      again = *std::move(s);
    } else {
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->ListGroups()->empty());
  CopyStats stats;
  absl::Status st = CopyGroup(*src, *again, group, CopyOptions(), &stats);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(*again->ListGroups(), std::vector<std::string>{group});
  ExpectRestores(*again, group, vols);
}

TEST_F(RadosClusterTest, CephxWithTheLeastCapabilities) {
  Cluster cluster(tmp_.Sub("ceph"), /*cephx=*/true);
  ASSERT_TRUE(cluster.started());
  RadosClientOptions client;
  client.conf_path = cluster.conf();
  client.client_name = "chunkferry";
  client.keyring = absl::StrCat(cluster.dir(), "/chunkferry.keyring");
  client.timeout_ms = 10'000;
  StoreInitOptions init;
  init.chunker = *codec::ChunkerSpec::Parse("fixed:4k");
  RadosUrl url{"chunkferry", "cephx"};
  absl::Status st = RadosStore::Init(url, client, init);
  ASSERT_TRUE(st.ok()) << st;
  std::vector<Volume> vols;
  const std::string group = NewUuid();
  auto src = Source(group, {2 * kMiB, 1 * kMiB, 1 * kMiB}, &vols);
  RadosStoreOptions o;
  o.client = client;
  {
    auto s = RadosStore::Open(url, o);
    ASSERT_TRUE(s.ok()) << s.status();
    CopyStats stats;
    st = CopyGroup(*src, **s, group, CopyOptions(), &stats);
    ASSERT_TRUE(st.ok()) << st;
    ExpectRestores(**s, group, vols);
    ASSERT_TRUE((*s)->DeleteGroup(group).ok());
  }
  // The lock class is within the user's capabilities: a collection runs.
  o.exclusive = true;
  o.gc_grace_seconds = 0;
  {
    auto gc = RadosStore::Open(url, o);
    ASSERT_TRUE(gc.ok()) << gc.status();
    auto stats = (*gc)->CollectGarbage(GcOptions());
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_GT(stats->packs_removed, 0u);
  }
  // A pool the user has no capability on, and a key the cluster does not know, are refused.
  RadosUrl other{"chunkferry2", ""};
  st = RadosStore::Init(other, client, init);
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  const std::string bad_keyring = tmp_.Sub("bad.keyring");
  // A well-formed key the cluster never issued.
  const std::string text =
      "[client.chunkferry]\n\tkey = AQBxqRFrAAAAABAAa2V5a2V5a2V5a2V5a2V5a2V5a2U=\n";
  testing::WriteFile(bad_keyring, std::vector<uint8_t>(text.begin(), text.end()));
  RadosClientOptions bad = client;
  bad.keyring = bad_keyring;
  bad.timeout_ms = 5'000;
  RadosStoreOptions bo;
  bo.client = bad;
  auto refused = RadosStore::Open(url, bo);
  EXPECT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(refused.status()) ||
              absl::IsDeadlineExceeded(refused.status()))
      << refused.status();
}

// Packs in an erasure-coded pool (store init --data-pool), the index, catalog and manifests in the
// replicated one: every operation a store makes on packs (exclusive create and whole write, ranged
// reads, a collection's listing, rewrite and removal) works there, and nothing else goes there.
TEST_F(RadosClusterTest, PacksInAnErasureCodedPool) {
  Cluster cluster(tmp_.Sub("ceph-ec"), /*cephx=*/false, /*ec=*/true);
  ASSERT_TRUE(cluster.started());
  RadosUrl url{"chunkferry", "ec"};
  RadosClientOptions client;
  client.conf_path = cluster.conf();
  StoreInitOptions init;
  init.chunker = *codec::ChunkerSpec::Parse("fixed:4k");
  RadosInitOptions ec;
  ec.data_pool = "no-such-pool";
  EXPECT_TRUE(absl::IsNotFound(RadosStore::Init(url, client, init, ec))) << "a missing data pool";
  ec.data_pool = "chunkferry-ec";
  ASSERT_TRUE(RadosStore::Init(url, client, init, ec).ok());
  std::vector<Volume> vols;
  const std::string g1 = NewUuid();
  auto src = Source(g1, {6 * kMiB, 2 * kMiB, 2 * kMiB}, &vols);
  ASSERT_NE(src, nullptr);
  auto g2_vols =
      testing::ImportRelatedGroup(*src, pool_, tmp_, NewUuid(), vols[0].image, vols[1].image);
  const std::string g2 = g2_vols[0].meta.group_uuid;
  ASSERT_TRUE(src->Flush().ok());

  RadosStoreOptions o = WriterOptions(client);
  {
    auto w = RadosStore::Open(url, o);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ((*w)->rados().data_pool(), "chunkferry-ec");
    CopyStats stats;
    ASSERT_TRUE(CopyGroup(*src, **w, g1, CopyOptions(), &stats).ok());
    ASSERT_TRUE(CopyGroup(*src, **w, g2, CopyOptions(), &stats).ok());
    EXPECT_GT(CountPacks((*w)->rados().data_io()), 3u);
    EXPECT_EQ(CountPacks((*w)->rados().io()), 0u) << "packs in the replicated pool";
    ASSERT_TRUE((*w)->DeleteGroup(g1).ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  // A collection lists, rewrites and removes packs in the EC pool.
  RadosStoreOptions gco = o;
  gco.exclusive = true;
  gco.gc_grace_seconds = 0;
  auto gc = RadosStore::Open(url, gco);
  ASSERT_TRUE(gc.ok()) << gc.status();
  const size_t packs_before = CountPacks((*gc)->rados().data_io());
  GcOptions everything;
  everything.repack_below = 1.0;
  auto collected = (*gc)->CollectGarbage(everything);
  ASSERT_TRUE(collected.ok()) << collected.status();
  EXPECT_EQ(collected->packs_before, packs_before);
  EXPECT_GT(collected->packs_removed + collected->packs_rewritten, 0u);
  EXPECT_GT(collected->bytes_reclaimed, 0u);
  ASSERT_TRUE((*gc)->Close().ok());
  gc->reset();
  o.writable = false;
  auto reader = RadosStore::Open(url, o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto verified = VerifyByReadingBack(**reader, (*reader)->hasher(), pool_, VerifyMode::kFull);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << absl::StrJoin(verified->problems, "; ");
  ExpectRestores(**reader, g2, g2_vols);
}

}  // namespace
}  // namespace chunkferry::engine::rados
