// The RADOS store beside other writers on the test cluster: two writers at once, a collection
// that never runs beside a writer, a writer that lost its lock, a writer killed mid-sync,
// publications that race, and damaged objects in the pool. (What every store does is in
// store_conformance_test.)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/readback_verifier.h"
#include "engine/rados/rados_store.h"
#include "engine/store/store_descriptor.h"
#include "engine/wire/auth.h"
#include "engine/wire/remote_store.h"
#include "engine/wire/served_store.h"
#include "engine/wire/store_server.h"
#include "gtest/gtest.h"
#include "tests/cli_fixture.h"
#include "tests/rados_test_env.h"
#include "tests/test_util.h"

namespace chunkferry::engine::rados {
namespace {

using ::chunkferry::testing::TempDir;
using Volume = ::chunkferry::testing::ImportedVolume;
constexpr size_t kMiB = 1 << 20;

class RadosStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_CEPH();
    url_ = testing::FreshRadosUrl();
    StoreInitOptions init;
    init.chunker = *codec::ChunkerSpec::Parse("fixed:4k");
    absl::Status st = RadosStore::Init(url_, testing::TestRadosClient(), init);
    ASSERT_TRUE(st.ok()) << st;
  }

  // A local store holding one sample group (seed `seed`), as source `name`.
  std::unique_ptr<LocalStore> Source(const std::string& name, const std::string& group,
                                     uint64_t seed, std::vector<Volume>* vols) {
    testing::InitStore(tmp_.Sub(name));
    auto s = testing::OpenStore(tmp_.Sub(name), io::Backend::kThreads, true, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    *vols = testing::ImportSampleGroup(**s, pool_, tmp_, group, seed,
                                       {2 * kMiB + 512, 1 * kMiB, 1 * kMiB - 7});
    EXPECT_TRUE((*s)->Flush().ok());
    return *std::move(s);
  }

  // A new group (seed `seed`), imported into a local source and copied into the pool.
  std::string GroupInThePool(uint64_t seed, std::vector<Volume>* vols) {
    const std::string g = NewUuid();
    auto src = Source(absl::StrCat("src-", seed), g, seed, vols);
    auto w = OpenOk(Options());
    if (src == nullptr || w == nullptr) return g;
    CopyStats stats;
    EXPECT_TRUE(CopyGroup(*src, *w, g, CopyOptions(), &stats).ok());
    EXPECT_TRUE(w->Close().ok());
    return g;
  }

  // Two related groups copied into the pool, the first deleted: what a collection reclaims and
  // rewrites. Returns the second group's volumes; *group is its uuid.
  std::vector<Volume> RelatedGroupAfterADelete(uint64_t seed, std::string* group) {
    std::vector<Volume> v1;
    const std::string g1 = NewUuid();
    *group = NewUuid();
    auto src = Source("src", g1, seed, &v1);
    if (src == nullptr) return {};
    auto v2 = testing::ImportRelatedGroup(*src, pool_, tmp_, *group, v1[0].image, v1[1].image);
    EXPECT_TRUE(src->Flush().ok());
    auto w = OpenOk(Options());
    if (w == nullptr) return {};
    CopyStats stats;
    EXPECT_TRUE(CopyGroup(*src, *w, g1, CopyOptions(), &stats).ok());
    EXPECT_TRUE(CopyGroup(*src, *w, *group, CopyOptions(), &stats).ok());
    EXPECT_TRUE(w->DeleteGroup(g1).ok());
    EXPECT_TRUE(w->Close().ok());
    return v2;
  }

  RadosStoreOptions Options() {
    RadosStoreOptions o;
    o.client = testing::TestRadosClient();
    o.pack_target = 1 << 20;
    return o;
  }
  std::unique_ptr<RadosStore> OpenOk(RadosStoreOptions o) {
    auto s = RadosStore::Open(url_, o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // Copies `group` out of the pool (through `from`, else a store opened here) into a new local
  // store and restores its volumes there.
  void ExpectRestores(const std::string& group, const std::vector<Volume>& vols,
                      RadosStore* from = nullptr) {
    std::unique_ptr<RadosStore> opened;
    if (from == nullptr) {
      opened = OpenOk(Options());
      ASSERT_NE(opened, nullptr);
      from = opened.get();
    }
    const std::string dir = tmp_.Sub(absl::StrCat("back-", group));
    testing::InitStore(dir);
    auto back = testing::OpenStore(dir, io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(back.ok());
    CopyStats stats;
    absl::Status st = CopyGroup(*from, **back, group, CopyOptions(), &stats);
    ASSERT_TRUE(st.ok()) << st;
    for (size_t i = 0; i < vols.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(**back, pool_, vols[i].meta.uuid, vols[i].image,
                                             tmp_.Sub(absl::StrCat("out-", group, i))));
    }
  }

  WorkerPool pool_{1};
  TempDir tmp_;
  RadosUrl url_;
};

TEST_F(RadosStoreTest, TwoWritersAtOnceBothPublishAndShareChunks) {
  // The same images under two groups: both writers send the same chunks at the same time.
  std::vector<Volume> v1, v2;
  const std::string g1 = NewUuid(), g2 = NewUuid();
  auto src1 = Source("src1", g1, 5, &v1);
  auto src2 = Source("src2", g2, 5, &v2);
  auto w1 = OpenOk(Options());
  auto w2 = OpenOk(Options());
  ASSERT_TRUE(src1 && src2 && w1 && w2);
  absl::Status st1, st2;
  std::thread t1([&] {
    CopyStats s;
    st1 = CopyGroup(*src1, *w1, g1, CopyOptions(), &s);
  });
  std::thread t2([&] {
    CopyStats s;
    st2 = CopyGroup(*src2, *w2, g2, CopyOptions(), &s);
  });
  t1.join();
  t2.join();
  ASSERT_TRUE(st1.ok()) << st1;
  ASSERT_TRUE(st2.ok()) << st2;
  ASSERT_TRUE(w1->Close().ok());
  ASSERT_TRUE(w2->Close().ok());
  auto reader = OpenOk(Options());
  auto groups = *reader->ListGroups();
  std::sort(groups.begin(), groups.end());
  std::vector<std::string> want = {g1, g2};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(groups, want);
  ExpectRestores(g1, v1);
  ExpectRestores(g2, v2);
}

TEST_F(RadosStoreTest, RacingPublicationsOfOneGroupLeaveOneRecord) {
  std::vector<Volume> v;
  const std::string g = NewUuid();
  auto src = Source("src", g, 6, &v);
  auto w1 = OpenOk(Options());
  ASSERT_TRUE(src && w1);
  CopyStats stats;
  ASSERT_TRUE(CopyBackup(*src, *w1, v[0].meta.uuid, CopyOptions(), &stats).ok());
  ASSERT_TRUE(CopyBackup(*src, *w1, v[1].meta.uuid, CopyOptions(), &stats).ok());
  auto w2 = OpenOk(Options());
  GroupRecord a, b;
  a.group_uuid = b.group_uuid = g;
  a.volume_uuids = {v[0].meta.uuid};
  b.volume_uuids = {v[0].meta.uuid, v[1].meta.uuid};
  for (int round = 0; round < 5; ++round) {
    const std::string id = NewUuid();
    a.group_uuid = b.group_uuid = id;
    absl::Status sa, sb;
    std::thread ta([&] { sa = w1->PutGroup(a); });
    std::thread tb([&] { sb = w2->PutGroup(b); });
    ta.join();
    tb.join();
    // Exactly one wins; the other is told the group exists with other contents.
    EXPECT_NE(sa.ok(), sb.ok()) << sa << " / " << sb;
    EXPECT_TRUE(sa.ok() || absl::IsAlreadyExists(sa)) << sa;
    EXPECT_TRUE(sb.ok() || absl::IsAlreadyExists(sb)) << sb;
    auto got = w1->GetGroup(id);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->volume_uuids, sa.ok() ? a.volume_uuids : b.volume_uuids);
  }
}

TEST_F(RadosStoreTest, ACollectionNeverRunsBesideAWriter) {
  auto writer = OpenOk(Options());
  ASSERT_NE(writer, nullptr);
  RadosStoreOptions gc = Options();
  gc.exclusive = true;
  auto refused = RadosStore::Open(url_, gc);
  ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "1 writer")) << refused.status();
  ASSERT_TRUE(writer->Close().ok());
  auto collector = OpenOk(gc);
  ASSERT_NE(collector, nullptr);
  auto blocked = RadosStore::Open(url_, Options());
  ASSERT_TRUE(absl::IsFailedPrecondition(blocked.status())) << blocked.status();
  EXPECT_TRUE(absl::StrContains(blocked.status().message(), "garbage collection"));
  // A reader needs no lock.
  RadosStoreOptions ro = Options();
  ro.writable = false;
  EXPECT_NE(OpenOk(ro), nullptr);
  ASSERT_TRUE(collector->Close().ok());
  EXPECT_NE(OpenOk(Options()), nullptr);
}

TEST_F(RadosStoreTest, ACollectionReclaimsWhatIsDeletedAndKeepsWhatIsNamed) {
  std::string g2;
  const std::vector<Volume> v2 = RelatedGroupAfterADelete(7, &g2);
  ASSERT_FALSE(v2.empty());
  RadosStoreOptions gco = Options();
  gco.exclusive = true;
  gco.gc_grace_seconds = 0;
  GcStats first;
  {
    auto gc = OpenOk(gco);
    GcOptions o;
    o.dry_run = true;
    auto dry = gc->CollectGarbage(o);
    ASSERT_TRUE(dry.ok()) << dry.status();
    auto real = gc->CollectGarbage(GcOptions());
    ASSERT_TRUE(real.ok()) << real.status();
    first = *real;
    EXPECT_EQ(dry->bytes_reclaimed, real->bytes_reclaimed);
    ASSERT_TRUE(gc->Close().ok());
  }
  EXPECT_EQ(first.manifests, v2.size());
  EXPECT_GT(first.bytes_reclaimed, kMiB / 2);  // most of the deleted random data volume
  EXPECT_GT(first.packs_removed + first.packs_rewritten, 0u);
  EXPECT_LT(first.records_live, first.records_total);
  ExpectRestores(g2, v2);
  // Nothing is left to reclaim.
  auto gc = OpenOk(gco);
  auto again = gc->CollectGarbage(GcOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->packs_removed, 0u);
  EXPECT_EQ(again->records_live, again->records_total);
}

// A collection on another node rewrites packs between a reader's index lookup and its reads: the
// reader finds those packs gone, looks their chunks up again and reads them where they are now,
// instead of calling the moved records lost.
TEST_F(RadosStoreTest, AReadMovedByACollectionMeanwhileIsLookedUpAgain) {
  std::string g2;
  const std::vector<Volume> v2 = RelatedGroupAfterADelete(11, &g2);
  ASSERT_FALSE(v2.empty());
  GcStats collected;
  bool collected_once = false;
  RadosStoreOptions ro = Options();
  ro.writable = false;
  ro.after_lookup_for_test = [&] {
    if (collected_once) return;
    collected_once = true;
    RadosStoreOptions gco = Options();
    gco.exclusive = true;
    gco.gc_grace_seconds = 0;
    auto gc = OpenOk(gco);
    ASSERT_NE(gc, nullptr);
    GcOptions o;
    o.repack_below = 1.0;  // every pack that holds anything of g1 is rewritten
    auto r = gc->CollectGarbage(o);
    ASSERT_TRUE(r.ok()) << r.status();
    collected = *r;
    ASSERT_TRUE(gc->Close().ok());
  };
  auto reader = OpenOk(ro);
  ASSERT_NE(reader, nullptr);
  ExpectRestores(g2, v2, reader.get());
  ASSERT_TRUE(collected_once);
  EXPECT_GT(collected.packs_rewritten, 0u);
  EXPECT_GT(reader->reads_retried(), 0u);
}

TEST_F(RadosStoreTest, AWriterThatLostItsLockPublishesNothing) {
  std::vector<Volume> v;
  const std::string g = NewUuid();
  auto src = Source("src", g, 8, &v);
  auto w = OpenOk(Options());
  ASSERT_TRUE(src && w);
  // What happens when a writer stalls past its lock's duration: the lock goes (here: broken
  // by hand, as an operator would) and a collection may run.
  librados::IoCtx& io = w->rados().io();
  int exclusive = 0;
  std::string tag;
  std::list<librados::locker_t> lockers;
  ASSERT_EQ(io.list_lockers(kLockObject, kWriteLockName, &exclusive, &tag, &lockers), 1);
  ASSERT_EQ(lockers.size(), 1u);
  ASSERT_EQ(
      io.break_lock(kLockObject, kWriteLockName, lockers.front().client, lockers.front().cookie),
      0);
  CopyStats stats;
  absl::Status st = CopyGroup(*src, *w, g, CopyOptions(), &stats);
  EXPECT_TRUE(absl::IsAborted(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "lost the lock")) << st;
  RadosStoreOptions ro = Options();
  ro.writable = false;
  auto reader = OpenOk(ro);
  EXPECT_TRUE(reader->ListGroups()->empty());
  EXPECT_TRUE(reader->ListBackups()->empty());
}

TEST_F(RadosStoreTest, AWriterKilledMidSyncLeavesNothingPublishedAndTheNextRunConverges) {
  std::vector<Volume> v;
  const std::string g = NewUuid();
  const std::string src_dir = tmp_.Sub("src");
  {
    testing::InitStore(src_dir);
    auto s = testing::OpenStore(src_dir, io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(s.ok());
    v = testing::ImportSampleGroup(**s, pool_, tmp_, g, 9, {48 * kMiB, 16 * kMiB, 16 * kMiB});
    ASSERT_TRUE((*s)->Close().ok());
  }
  const std::vector<std::string> copy = {
      CHUNKFERRY_CLI,  "copy",      "--from", src_dir,       "--to",
      url_.ToString(), "--group",   g,        "--ceph-conf", testing::TestCephConf(),
      "--quiet",       "--threads", "1"};
  RadosStoreOptions ro = Options();
  ro.writable = false;
  auto watcher = OpenOk(ro);
  ASSERT_NE(watcher, nullptr);
  // Kill it once its first packs are in the pool.
  const pid_t pid = testing::StartProcess(copy);
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    size_t packs = 0;
    for (auto it = watcher->rados().io().nobjects_begin();
         it != watcher->rados().io().nobjects_end(); ++it) {
      packs += absl::StartsWith(it->get_oid(), "pack.") ? 1 : 0;
    }
    if (packs >= 2) {
      killed = ::kill(pid, SIGKILL) == 0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(killed && WIFSIGNALED(status)) << "the copy ended before it could be killed";
  EXPECT_TRUE(watcher->ListGroups()->empty());
  // The next run converges (the dead writer's lock is shared, so it does not stand in the way).
  auto again = testing::RunProcess(copy);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(*watcher->ListGroups(), std::vector<std::string>{g});
  ExpectRestores(g, v);
}

// Every object of the store's namespace with its bytes and omap, for "the pool is unchanged".
std::map<std::string, std::string> PoolContents(librados::IoCtx& io) {
  std::map<std::string, std::string> out;
  for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) {
    const std::string oid = it->get_oid();
    uint64_t size = 0;
    time_t mtime = 0;
    EXPECT_EQ(io.stat(oid, &size, &mtime), 0) << oid;
    librados::bufferlist data;
    if (size > 0) {
      EXPECT_GE(io.read(oid, data, size, 0), 0) << oid;
    }
    std::string text = data.to_str();
    std::string after;
    for (bool more = true; more;) {
      std::map<std::string, librados::bufferlist> vals;
      EXPECT_EQ(io.omap_get_vals2(oid, after, 1000, &vals, &more), 0) << oid;
      for (auto& [k, v] : vals) absl::StrAppend(&text, "\n", k, "=", v.to_str());
      if (vals.empty()) break;
      after = vals.rbegin()->first;
    }
    out[oid] = std::move(text);
  }
  return out;
}

// Flips one byte in the middle of `oid`; returns the object as it was.
librados::bufferlist FlipAByte(librados::IoCtx& io, const std::string& oid) {
  uint64_t size = 0;
  time_t mtime = 0;
  EXPECT_EQ(io.stat(oid, &size, &mtime), 0);
  librados::bufferlist was;
  EXPECT_GE(io.read(oid, was, size, 0), 0);
  std::string bytes = was.to_str();
  bytes[bytes.size() / 2] ^= 0x5a;
  librados::bufferlist bad;
  bad.append(bytes);
  EXPECT_EQ(io.write_full(oid, bad), 0);
  return was;
}

TEST_F(RadosStoreTest, DamagedObjectsInThePoolAreRefusedAndChangeNothing) {
  std::vector<Volume> v;
  const std::string g = GroupInThePool(9, &v);
  ASSERT_FALSE(HasFailure());
  auto admin = OpenOk(Options());
  ASSERT_NE(admin, nullptr);
  librados::IoCtx& io = admin->rados().io();
  std::string a_pack, a_manifest;
  for (const auto& [oid, contents] : PoolContents(io)) {
    if (absl::StartsWith(oid, "pack.") && a_pack.empty()) a_pack = oid;
    if (absl::StartsWith(oid, "manifest.") && a_manifest.empty()) a_manifest = oid;
  }
  ASSERT_FALSE(a_pack.empty());
  ASSERT_FALSE(a_manifest.empty());
  ASSERT_TRUE(admin->Close().ok());

  for (const std::string& victim : {a_pack, a_manifest}) {
    SCOPED_TRACE(victim);
    librados::bufferlist good = FlipAByte(io, victim);
    const auto damaged = PoolContents(io);
    // Out of the pool into a local store: refused, nothing published there.
    const std::string dir = tmp_.Sub(absl::StrCat("out-", victim));
    testing::InitStore(dir);
    auto local = testing::OpenStore(dir, io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(local.ok());
    {
      RadosStoreOptions ro = Options();
      ro.writable = false;
      auto reader = OpenOk(ro);
      CopyStats stats;
      absl::Status st = CopyGroup(*reader, **local, g, CopyOptions(), &stats);
      EXPECT_FALSE(st.ok());
      EXPECT_TRUE(absl::IsDataLoss(st)) << st;
      EXPECT_TRUE((*local)->ListGroups()->empty());
    }
    // A collection refuses to run on a store it cannot read whole (a damaged manifest) or
    // keeps the damaged pack's records (they are referenced); either way it removes nothing
    // that a manifest names.
    {
      RadosStoreOptions gco = Options();
      gco.exclusive = true;
      gco.gc_grace_seconds = 0;
      auto gc = OpenOk(gco);
      auto stats = gc->CollectGarbage(GcOptions());
      if (victim == a_manifest) {
        EXPECT_FALSE(stats.ok());
      } else {
        ASSERT_TRUE(stats.ok()) << stats.status();
        EXPECT_EQ(stats->packs_removed, 0u);
        EXPECT_EQ(stats->packs_rewritten, 0u);
      }
      ASSERT_TRUE(gc->Close().ok());
    }
    EXPECT_EQ(PoolContents(io), damaged);
    ASSERT_EQ(io.write_full(victim, good), 0);
  }
  ExpectRestores(g, v);
}

TEST_F(RadosStoreTest, VerifyReadsBackWhatBackupsNameAndNamesWhatDamageBreaks) {
  std::vector<Volume> v;
  const std::string g = GroupInThePool(10, &v);
  ASSERT_FALSE(HasFailure());
  auto store = OpenOk(Options());
  ASSERT_NE(store, nullptr);
  // Whole: every backup read back, in both modes; the CLI says so too.
  for (VerifyMode mode : {VerifyMode::kFull, VerifyMode::kChecksum}) {
    auto report = VerifyByReadingBack(*store, store->hasher(), pool_, mode);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << absl::StrJoin(report->problems, "; ");
    EXPECT_EQ(report->manifests, v.size());
    EXPECT_EQ(report->groups, 1u);
    EXPECT_GT(report->records, 0u);
    EXPECT_GT(report->stored_bytes, 0u);
  }
  const std::string url = url_.ToString();
  auto cli = testing::RunProcess({CHUNKFERRY_CLI, "verify", "--store", url, "--ceph-conf",
                                  testing::TestCephConf(), "--quiet"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(testing::RunProcess({CHUNKFERRY_CLI, "verify", "--store", url, "--ceph-conf",
                                 testing::TestCephConf(), "--repair", "--quiet"})
                .exit_code,
            0);  // nothing to quarantine

  // A byte flipped in a pack, then another pack gone too: the backups whose chunks they held
  // are named, and the damaged record counts once though the window is read again id by id.
  librados::IoCtx& io = store->rados().io();
  std::vector<std::string> packs;
  for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) {
    if (absl::StartsWith(it->get_oid(), "pack.")) packs.push_back(it->get_oid());
  }
  ASSERT_GE(packs.size(), 2u);
  const std::string a_pack = packs[0], b_pack = packs[1];
  librados::bufferlist good = FlipAByte(io, a_pack);
  auto flipped = VerifyByReadingBack(*store, store->hasher(), pool_, VerifyMode::kChecksum);
  ASSERT_TRUE(flipped.ok()) << flipped.status();
  EXPECT_FALSE(flipped->ok());
  EXPECT_EQ(flipped->bad_records, 1u);
  ASSERT_FALSE(flipped->damaged.empty());
  EXPECT_GT(flipped->damaged[0].damaged_chunks, 0u);
  EXPECT_EQ(flipped->damaged[0].group_uuid, g);
  cli = testing::RunProcess({CHUNKFERRY_CLI, "verify", "--store", url, "--ceph-conf",
                             testing::TestCephConf(), "--quiet"});
  EXPECT_EQ(cli.exit_code, 1) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "damaged backup")) << cli.out;

  librados::bufferlist b_good;
  ASSERT_GE(io.read(b_pack, b_good, 64 << 20, 0), 0);
  ASSERT_EQ(io.remove(b_pack), 0);
  auto gone = VerifyByReadingBack(*store, store->hasher(), pool_, VerifyMode::kFull);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_FALSE(gone->ok());
  EXPECT_EQ(gone->bad_records, 1u);
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(gone->problems, "; "), "which is gone"))
      << absl::StrJoin(gone->problems, "; ");
  uint64_t broken = 0;
  for (const auto& d : gone->damaged) broken += d.damaged_chunks;
  EXPECT_GT(broken, 0u);

  ASSERT_EQ(io.write_full(a_pack, good), 0);
  ASSERT_EQ(io.write_full(b_pack, b_good), 0);
  auto mended = VerifyByReadingBack(*store, store->hasher(), pool_, VerifyMode::kFull);
  ASSERT_TRUE(mended.ok()) << mended.status();
  EXPECT_TRUE(mended->ok()) << absl::StrJoin(mended->problems, "; ");
}

// Mending a pool in place: verify --repair removes the index entries of a damaged record (the
// chunks then count as absent), and repair --from brings good copies from the source; a chunk
// whose record is intact is never forgotten.
TEST_F(RadosStoreTest, VerifyRepairQuarantinesAndRepairBringsGoodCopies) {
  std::vector<Volume> v;
  const std::string g = GroupInThePool(12, &v);
  ASSERT_FALSE(HasFailure());
  const std::string url = url_.ToString(), conf = testing::TestCephConf();
  auto cli = [&](std::vector<std::string> args, int want) {
    args.insert(args.begin(), CHUNKFERRY_CLI);
    args.insert(args.end(), {"--ceph-conf", conf, "--json", "--quiet"});
    auto r = testing::RunProcess(args);
    EXPECT_EQ(r.exit_code, want) << absl::StrJoin(args, " ") << "\n" << r.out << r.err;
    return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  };
  std::string a_pack;
  {
    auto store = OpenOk(Options());
    ASSERT_NE(store, nullptr);
    librados::IoCtx& io = store->rados().io();
    for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) {
      if (absl::StartsWith(it->get_oid(), "pack.")) a_pack = it->get_oid();
    }
    ASSERT_FALSE(a_pack.empty());
    FlipAByte(io, a_pack);
    // An intact chunk is not forgotten, whatever the caller says.
    auto whole = VerifyByReadingBack(*store, store->hasher(), pool_, VerifyMode::kFull);
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_EQ(whole->bad_records, 1u);
    ASSERT_FALSE(whole->bad_chunks.empty());
    std::vector<ManifestEntry> entries;
    auto m = store->OpenManifest(v[0].meta.uuid);
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<codec::ChunkId> intact;
    for (;;) {
      auto n = (*m)->Next(&entries, 4096);
      ASSERT_TRUE(n.ok());
      if (*n == 0) break;
      for (const auto& e : entries) {
        if (!e.zero &&
            !std::binary_search(whole->bad_chunks.begin(), whole->bad_chunks.end(), e.id)) {
          intact.push_back(e.id);
        }
      }
    }
    ASSERT_FALSE(intact.empty());
    auto none = store->ForgetDamagedChunks(intact, VerifyMode::kFull);
    ASSERT_TRUE(none.ok()) << none.status();
    EXPECT_EQ(*none, 0u);
    std::vector<bool> have;
    ASSERT_TRUE(store->HaveChunks(intact, &have).ok());
    EXPECT_TRUE(std::all_of(have.begin(), have.end(), [](bool b) { return b; }));
    ASSERT_TRUE(store->Close().ok());
  }
  // Found, quarantined: the same backups now lack those chunks instead of holding bad ones.
  const auto found = cli({"verify", "--store", url, "--repair"}, 1);
  EXPECT_EQ(found.value("quarantinedRecords", 0), 1) << found.dump();
  ASSERT_FALSE(found.value("damagedBackups", nlohmann::json::array()).empty());
  const auto lacking = cli({"verify", "--store", url}, 1);
  uint64_t missing = 0;
  for (const auto& d : lacking.value("damagedBackups", nlohmann::json::array())) {
    missing += d.value("missingChunks", uint64_t{0});
    EXPECT_EQ(d.value("damagedChunks", uint64_t{1}), 0u) << d.dump();
  }
  EXPECT_GT(missing, 0u) << lacking.dump();
  EXPECT_EQ(lacking.value("badRecords", 1), 0) << lacking.dump();
  // Brought back from the source: whole again, and every volume restores.
  const auto repaired = cli({"repair", "--store", url, "--from", tmp_.Sub("src-12")}, 0);
  EXPECT_GT(repaired.value("recordsAppended", 0), 0) << repaired.dump();
  EXPECT_TRUE(repaired.value("stillBroken", nlohmann::json::array()).empty()) << repaired.dump();
  const auto whole = cli({"verify", "--store", url}, 0);
  EXPECT_EQ(whole.value("ok", false), true) << whole.dump();
  ExpectRestores(g, v);
  // A daemon is not a store to repair here.
  EXPECT_EQ(testing::RunProcess({CHUNKFERRY_CLI, "repair", "--store", "tcp://127.0.0.1:1", "--from",
                                 tmp_.Sub("src-12")})
                .exit_code,
            2);
}

// The sync API with a pool in its registry: a group synced from a directory into the pool, and
// from the pool into another directory, answers the platform's inventories and restores byte for
// byte; ls and inventory on the pool name it.
TEST_F(RadosStoreTest, TheApiSyncsIntoAPoolAndOutOfIt) {
  const std::string url = url_.ToString(), conf = testing::TestCephConf();
  const std::string a = tmp_.Sub("api-a"), c = tmp_.Sub("api-c");
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), CHUNKFERRY_CLI);
    auto r = testing::RunProcess(args);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << r.err;
    return r.out;
  };
  for (const auto& dir : {a, c}) cli({"store", "init", "--store", dir, "--quiet"});
  const std::string root = tmp_.Sub("api-root.img"), data = tmp_.Sub("api-data.img");
  testing::WriteMixedFile(root, 3 * kMiB + 100, 71);
  testing::WriteTextFile(data, 2 * kMiB, 72);
  const std::string group = NewUuid(), vm = NewUuid();
  std::vector<std::pair<std::string, std::string>> volumes;  // backup uuid, image
  for (const auto& [image, type] : {std::pair{root, "Root"}, std::pair{data, "Data"}}) {
    const auto out = cli({"import", "--store", a, "--image", image, "--group", group, "--volume",
                          NewUuid(), "--type", type, "--vm", vm, "--json", "--quiet"});
    volumes.emplace_back(nlohmann::json::parse(out).value("uuid", ""), image);
  }
  const std::string src = NewUuid(), pool = NewUuid(), dst = NewUuid(), session = NewUuid();
  const nlohmann::json registry = {
      {"backupStorages",
       {{{"uuid", src}, {"name", "local"}, {"store", a}},
        {{"uuid", pool}, {"name", "pool"}, {"store", url}, {"cephConf", conf}},
        {{"uuid", dst}, {"name", "other"}, {"store", c}}}},
      {"sessions", {session}}};
  const std::string config = tmp_.Sub("registry.json"), text = registry.dump(2);
  testing::WriteFile(config, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  ASSERT_EQ(::chmod(config.c_str(), 0600), 0);
  testing::DaemonProcess api({CHUNKFERRY_CLI, "api", "--config", config, "--listen", "127.0.0.1:0"},
                             tmp_.Sub("api-ready"));
  ASSERT_FALSE(api.address().empty()) << "the API daemon did not start";
  auto sync = [&](const std::string& from, const std::string& to) {
    const std::string body =
        nlohmann::json{{"syncVmBackupFromImageStoreBackupStorage",
                        {{"srcBackupStorageUuid", from}, {"dstBackupStorageUuid", to}}}}
            .dump();
    auto r = testing::RunProcess(
        {"/usr/bin/curl", "-s", "-w", "\n%{http_code}", "-X", "PUT", "-H",
         "Authorization: OAuth " + session, "-H", "Content-Type: application/json;charset=UTF-8",
         "--data-binary", body,
         absl::StrCat("http://", api.address(), "/zstack/v1/vm-backups/", group, "/actions")});
    const size_t nl = r.out.rfind('\n');
    EXPECT_EQ(r.out.substr(nl + 1), "200") << r.out << r.err;
    return nlohmann::json::parse(r.out.substr(0, nl), nullptr, /*allow_exceptions=*/false);
  };
  const auto into = sync(src, pool);
  ASSERT_FALSE(into.is_discarded());
  ASSERT_EQ(into["inventories"].size(), 2u) << into.dump();
  for (const auto& inv : into["inventories"]) {
    bool refers = false;
    for (const auto& ref : inv["backupStorageRefs"])
      refers |= ref.value("backupStorageUuid", "") == pool;
    EXPECT_TRUE(refers) << inv.dump();
  }
  const auto out_of = sync(pool, dst);
  ASSERT_FALSE(out_of.is_discarded());
  ASSERT_EQ(out_of["inventories"].size(), 2u) << out_of.dump();
  for (size_t i = 0; i < volumes.size(); ++i) {
    const std::string out = tmp_.Sub(absl::StrCat("api-out", i));
    cli({"restore", "--store", c, "--backup", volumes[i].first, "--output", out, "--quiet"});
    EXPECT_TRUE(testing::FilesEqual(volumes[i].second, out)) << i;
  }
  // QueryVolumeBackup sees each volume on all three storages (the pool's metas from its catalog).
  auto query = testing::RunProcess(
      {"/usr/bin/curl", "-s", "-H", "Authorization: OAuth " + session,
       absl::StrCat("http://", api.address(), "/zstack/v1/volume-backups?q=groupUuid%3D", group)});
  const auto queried = nlohmann::json::parse(query.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(queried.is_discarded()) << query.out << query.err;
  ASSERT_EQ(queried["inventories"].size(), 2u) << queried.dump();
  for (const auto& inv : queried["inventories"]) {
    EXPECT_EQ(inv["backupStorageRefs"].size(), 3u) << inv.dump();
  }
  const std::string listed = cli({"ls", "--store", url, "--ceph-conf", conf});
  EXPECT_TRUE(absl::StrContains(listed, group)) << listed;
  const auto inventory = nlohmann::json::parse(
      cli({"inventory", "--store", url, "--ceph-conf", conf, "--group", group}), nullptr, false);
  EXPECT_FALSE(inventory.is_discarded());
  EXPECT_TRUE(absl::StrContains(inventory.dump(), volumes[0].first)) << inventory.dump();
}

// A descriptor whose data pool is missing from the cluster, or is no pool name at all, is refused
// at open with the reason; nothing in the pool changes, and with the descriptor put back the store
// restores as before.
TEST_F(RadosStoreTest, ADescriptorNamingABadDataPoolIsRefused) {
  std::vector<Volume> vols;
  const std::string g = GroupInThePool(13, &vols);
  ASSERT_FALSE(HasFailure());
  auto raw = RadosPool::Connect(url_, testing::TestRadosClient());
  ASSERT_TRUE(raw.ok()) << raw.status();
  librados::IoCtx& io = (*raw)->io();
  librados::bufferlist original;
  ASSERT_GE(io.read(kDescriptorObject, original, 1 << 20, 0), 0);
  DescriptorExtras extras;
  auto info = ParseStoreDescriptor(original.to_str(), "descriptor", &extras);
  ASSERT_TRUE(info.ok()) << info.status();
  for (const auto& [pool, missing] : {std::pair{"no-such-pool", true}, std::pair{"a b", false}}) {
    DescriptorExtras forged_extras = extras;
    forged_extras[kDataPoolKey] = pool;
    librados::bufferlist forged;
    forged.append(FormatStoreDescriptor(*info, forged_extras));
    ASSERT_EQ(io.write_full(kDescriptorObject, forged), 0);
    const auto before = PoolContents(io);
    for (bool writable : {false, true}) {
      RadosStoreOptions o = Options();
      o.writable = writable;
      auto refused = RadosStore::Open(url_, o);
      ASSERT_FALSE(refused.ok()) << pool;
      EXPECT_TRUE(missing ? absl::IsNotFound(refused.status()) : absl::IsDataLoss(refused.status()))
          << refused.status();
      EXPECT_TRUE(absl::StrContains(refused.status().message(), missing ? pool : kDataPoolKey))
          << refused.status();
    }
    EXPECT_TRUE(PoolContents(io) == before) << pool;
  }
  ASSERT_EQ(io.write_full(kDescriptorObject, original), 0);
  ExpectRestores(g, vols);
}

TEST_F(RadosStoreTest, TheCliImportsIntoThePoolAndRestoresFromIt) {
  const std::string url = url_.ToString(), conf = testing::TestCephConf();
  const std::string image = tmp_.Sub("cli.img"), out = tmp_.Sub("cli.out");
  testing::WriteMixedFile(image, 3 * kMiB + 100, 31);
  const std::string group = NewUuid(), uuid = NewUuid();
  auto import = [&](const std::string& backup) {
    return testing::RunProcess({CHUNKFERRY_CLI, "import", "--store", url, "--ceph-conf", conf,
                                "--image", image, "--group", group, "--volume", NewUuid(), "--uuid",
                                backup, "--quiet"});
  };
  auto restore = [&](const std::string& verify) {
    return testing::RunProcess({CHUNKFERRY_CLI, "restore", "--store", url, "--ceph-conf", conf,
                                "--backup", uuid, "--output", out, "--force", "--verify", verify,
                                "--quiet"});
  };
  auto imported = import(uuid);
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  auto restored = restore("full");
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_TRUE(testing::ReadFile(out) == testing::ReadFile(image));
  auto again = import(uuid);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(again.err, "already published")) << again.err;

  // A byte flipped in a pack: both modes refuse to restore, and leave no image behind.
  auto store = OpenOk(Options());
  ASSERT_NE(store, nullptr);
  librados::IoCtx& io = store->rados().io();
  std::vector<std::string> packs;
  for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) {
    if (absl::StartsWith(it->get_oid(), "pack.")) packs.push_back(it->get_oid());
  }
  ASSERT_FALSE(packs.empty());
  for (const auto& pack : packs) FlipAByte(io, pack);
  ASSERT_EQ(::unlink(out.c_str()), 0);
  for (const char* verify : {"full", "checksum"}) {
    auto damaged = restore(verify);
    EXPECT_EQ(damaged.exit_code, 1) << verify;
    EXPECT_TRUE(absl::StrContains(damaged.err, url)) << damaged.err;
    EXPECT_FALSE(testing::FileExists(out));
    EXPECT_FALSE(testing::FileExists(out + ".partial"));
  }
}

// Two `chunkferry serve` daemons in front of one pool, as on two storage nodes: a group pushed
// through one is pulled, restored and extended through the other; a collection is not run
// through a daemon of a pool (it takes the pool alone: `gc --store rados:...`), and a daemon of a
// pool needs a key file.
TEST_F(RadosStoreTest, TwoDaemonsServeOnePool) {
  const std::string url = url_.ToString(), conf = testing::TestCephConf();
  const std::string key = tmp_.Sub("pool.key");
  ASSERT_TRUE(WriteNewKeyFile(key).ok());
  auto serve = [&](const std::string& name) {
    return std::make_unique<testing::DaemonProcess>(
        std::vector<std::string>{CHUNKFERRY_CLI, "serve", "--store", url, "--ceph-conf", conf,
                                 "--key-file", key, "--listen", "127.0.0.1:0"},
        tmp_.Sub(name));
  };
  auto a = serve("ready-a");
  auto b = serve("ready-b");
  ASSERT_FALSE(a->address().empty() || b->address().empty()) << "a daemon did not start";
  std::vector<Volume> vols;
  const std::string group = NewUuid();
  auto src = Source("served-src", group, 41, &vols);
  ASSERT_NE(src, nullptr);
  ASSERT_TRUE(src->Close().ok());
  src.reset();
  auto cli = [&](std::vector<std::string> args, int want) {
    args.insert(args.begin(), CHUNKFERRY_CLI);
    auto r = testing::RunProcess(args);
    EXPECT_EQ(r.exit_code, want) << absl::StrJoin(args, " ") << "\n" << r.err;
    return r;
  };
  cli({"sync", "--from", tmp_.Sub("served-src"), "--to", "tcp://" + a->address(), "--group", group,
       "--key-file", key, "--quiet"},
      0);
  // Through the other daemon: pulled into a new store, and restored straight from it.
  const std::string back = tmp_.Sub("served-back");
  cli({"store", "init", "--store", back, "--quiet"}, 0);
  cli({"sync", "--from", "tcp://" + b->address(), "--to", back, "--group", group, "--key-file", key,
       "--quiet"},
      0);
  for (size_t i = 0; i < vols.size(); ++i) {
    const std::string out = tmp_.Sub(absl::StrCat("served-out", i));
    cli({"restore", "--store", back, "--backup", vols[i].meta.uuid, "--output", out, "--quiet"}, 0);
    EXPECT_TRUE(testing::FilesEqual(vols[i].image, out)) << i;
    cli({"restore", "--store", "tcp://" + b->address(), "--key-file", key, "--backup",
         vols[i].meta.uuid, "--output", out, "--force", "--quiet"},
        0);
    EXPECT_TRUE(testing::FilesEqual(vols[i].image, out)) << i;
  }
  // A second copy through the other daemon sends nothing: both see the pool's index.
  auto again = cli({"sync", "--from", tmp_.Sub("served-src"), "--to", "tcp://" + b->address(),
                    "--group", group, "--key-file", key, "--json", "--quiet"},
                   0);
  EXPECT_TRUE(absl::StrContains(again.out, "\"bytesSent\": 0")) << again.out;
  auto gc = cli({"gc", "--store", "tcp://" + a->address(), "--key-file", key}, 1);
  EXPECT_TRUE(absl::StrContains(gc.err, "gc --store " + url)) << gc.err;
  // The daemons hold the pool's write lock only while a client writes through them: idle, they
  // let a collection run, and a push while it runs is refused, not half done.
  cli({"gc", "--store", url, "--ceph-conf", conf, "--grace", "0", "--quiet"}, 0);
  {
    auto collector = [&] {
      RadosStoreOptions o = Options();
      o.exclusive = true;
      return OpenOk(o);
    }();
    ASSERT_NE(collector, nullptr);
    auto refused = cli({"sync", "--from", tmp_.Sub("served-src"), "--to", "tcp://" + a->address(),
                        "--group", group, "--key-file", key, "--quiet"},
                       1);
    EXPECT_TRUE(absl::StrContains(refused.err, "garbage collection")) << refused.err;
  }
  cli({"sync", "--from", tmp_.Sub("served-src"), "--to", "tcp://" + a->address(), "--group", group,
       "--key-file", key, "--quiet"},
      0);
  cli({"serve", "--store", url, "--ceph-conf", conf, "--listen", "127.0.0.1:0"}, 2);
  EXPECT_EQ(a->Stop(SIGTERM), 0);
  EXPECT_EQ(b->Stop(SIGTERM), 0);
  // The pool, read directly, holds the group whole.
  auto store = OpenOk(Options());
  ASSERT_NE(store, nullptr);
  auto report = VerifyByReadingBack(*store, store->hasher(), pool_, VerifyMode::kFull);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << absl::StrJoin(report->problems, "; ");
  EXPECT_EQ(report->manifests, vols.size());
}

// lock_on_demand (what `serve` opens a pool with): the write lock is held only inside
// BeginWrites/EndWrites spans, which nest; outside them writes are refused and a collection can
// take the pool; while one runs, a span cannot begin.
TEST_F(RadosStoreTest, AnOnDemandLockIsHeldOnlyWhileWriting) {
  std::vector<Volume> vols;
  const std::string group = NewUuid();
  auto src = Source("on-demand-src", group, 43, &vols);
  ASSERT_NE(src, nullptr);
  RadosStoreOptions o = Options();
  o.lock_on_demand = true;
  auto w = OpenOk(o);
  ASSERT_NE(w, nullptr);
  RadosStoreOptions gc_options = Options();
  gc_options.exclusive = true;
  auto collector_can_open = [&] { return RadosStore::Open(url_, gc_options).ok(); };
  EXPECT_TRUE(collector_can_open()) << "an idle on-demand writer kept a collection out";
  CopyStats stats;
  absl::Status outside = CopyGroup(*src, *w, group, CopyOptions(), &stats);
  EXPECT_TRUE(absl::IsFailedPrecondition(outside)) << outside;
  ASSERT_TRUE(w->BeginWrites().ok());
  ASSERT_TRUE(w->BeginWrites().ok());  // a second session
  EXPECT_FALSE(collector_can_open());
  absl::Status inside = CopyGroup(*src, *w, group, CopyOptions(), &stats);
  ASSERT_TRUE(inside.ok()) << inside;
  ASSERT_TRUE(w->EndWrites().ok());
  EXPECT_FALSE(collector_can_open()) << "the lock went with the first of two spans";
  ASSERT_TRUE(w->EndWrites().ok());
  {
    auto collector = RadosStore::Open(url_, gc_options);
    ASSERT_TRUE(collector.ok()) << collector.status();
    absl::Status refused = w->BeginWrites();
    EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
    EXPECT_TRUE(absl::StrContains(refused.message(), "garbage collection")) << refused;
  }
  ASSERT_TRUE(w->BeginWrites().ok());
  ASSERT_TRUE(w->EndWrites().ok());
  ASSERT_TRUE(w->Close().ok());
  ExpectRestores(group, vols);
}

// PutManifestWithBase skips the lookups of entries equal to the base's, taking the base as the
// pool published it, never as the caller hands it: a caller's "base" naming a chunk the pool
// lacks changes nothing, and a base the pool has not published is no base.
TEST_F(RadosStoreTest, AManifestBaseIsTheOneThePoolPublished) {
  std::vector<Volume> vols;
  GroupInThePool(44, &vols);
  ASSERT_FALSE(HasFailure());
  auto store = OpenOk(Options());
  ASSERT_NE(store, nullptr);
  const std::string base_uuid = vols[0].meta.uuid;
  std::vector<ManifestEntry> entries;
  {
    auto m = store->OpenManifest(base_uuid);
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<ManifestEntry> batch;
    for (;;) {
      auto n = (*m)->Next(&batch, 4096);
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) break;
      entries.insert(entries.end(), batch.begin(), batch.end());
    }
  }
  auto data = std::find_if(entries.begin(), entries.end(), [](const auto& e) { return !e.zero; });
  ASSERT_NE(data, entries.end());
  std::vector<ManifestEntry> forged = entries;
  forged[data - entries.begin()].id = codec::ChunkHasher().Hash(testing::RandomBytes(4096, 99));
  VolumeBackupMeta meta = vols[0].meta;
  auto put = [&](const std::vector<ManifestEntry>& e, const std::vector<ManifestEntry>& base,
                 const std::string& uuid_of_base) {
    meta.uuid = NewUuid();
    testing::VectorManifestSource source(meta, e), base_source(meta, base);
    return store->PutManifestWithBase(meta, source, &base_source, uuid_of_base);
  };
  EXPECT_TRUE(put(entries, entries, base_uuid).ok());
  absl::Status forged_base = put(forged, forged, base_uuid);
  EXPECT_TRUE(absl::IsFailedPrecondition(forged_base)) << forged_base;
  absl::Status unpublished_base = put(forged, forged, NewUuid());
  EXPECT_TRUE(absl::IsFailedPrecondition(unpublished_base)) << unpublished_base;
  EXPECT_TRUE(absl::IsNotFound(store->OpenManifest(meta.uuid).status()));
}

// A daemon serving the pool publishes a manifest sent as a delta against its base as a sync
// straight into the pool does: it looks up the chunks the base does not name, not the volume's.
TEST_F(RadosStoreTest, ADaemonPublishesADeltaLookingUpOnlyWhatTheBaseLacks) {
  testing::InitStore(tmp_.Sub("src"));
  auto src = testing::OpenStore(tmp_.Sub("src"), io::Backend::kThreads, true, &pool_);
  ASSERT_TRUE(src.ok()) << src.status();
  const std::string volume = NewUuid(), g1 = NewUuid(), g2 = NewUuid();
  const std::string v1 = tmp_.Sub("v1.img"), v2 = tmp_.Sub("v2.img");
  testing::WriteRandomFile(v1, 4 * kMiB, 61);
  std::vector<uint8_t> bytes = testing::ReadFile(v1);
  uint64_t rewrites = 0;
  for (size_t b = 5; (b + 1) * 4096 <= bytes.size(); b += 50, ++rewrites) {
    const auto fresh = testing::RandomBytes(4096, 7000 + b);
    std::copy(fresh.begin(), fresh.end(), bytes.begin() + static_cast<long>(b * 4096));
  }
  testing::WriteFile(v2, bytes);
  std::vector<Volume> vols;
  for (const auto& [image, group, date] :
       {std::tuple{v1, g1, 1700000000}, std::tuple{v2, g2, 1700086400}}) {
    ImportOptions o;
    o.source = image;
    o.meta = testing::NewMeta(group, "Root");
    o.meta.volume_uuid = volume;
    o.meta.create_date = date;
    ImportStats stats;
    auto meta = ImportVolume(**src, pool_, o, &stats);
    ASSERT_TRUE(meta.ok()) << meta.status();
    vols.push_back(Volume{image, *meta, stats});
  }
  ASSERT_TRUE((*src)->Flush().ok());
  {  // v1 straight into the pool, so that the daemon's store has vouched for none of it
    auto w = OpenOk(Options());
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(CopyGroup(**src, *w, g1, CopyOptions(), nullptr).ok());
    ASSERT_TRUE(w->Close().ok());
  }
  RadosStoreOptions so = Options();
  so.lock_on_demand = true;
  auto served = OpenOk(so);
  ASSERT_NE(served, nullptr);
  RadosStore* s = served.get();
  auto any = ServeAnyStore(*s, s->hasher(),
                           {[s] { return s->BeginWrites(); }, [s] { return s->EndWrites(); }});
  ASSERT_TRUE(any.ok()) << any.status();
  auto key = NewAuthKey();
  ASSERT_TRUE(key.ok());
  ServerOptions server_options;
  server_options.listen = io::Endpoint{"127.0.0.1", 0};
  server_options.key = *key;
  server_options.backend = io::Backend::kThreads;
  StoreServer server(*std::move(any), server_options);
  ASSERT_TRUE(server.Start().ok());
  RemoteOptions ro;
  ro.endpoint = io::Endpoint{"127.0.0.1", server.port()};
  ro.key = *key;
  ro.backend = io::Backend::kThreads;
  auto remote = RemoteStore::Connect(ro);
  ASSERT_TRUE(remote.ok()) << remote.status();
  CopyStats stats;
  absl::Status st = CopyGroup(**src, **remote, g2, CopyOptions(), &stats);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(stats.volumes_with_base, 1u);
  EXPECT_EQ((*remote)->manifest_deltas_sent(), 1u);
  // The new chunks were appended through this store (it vouches for them); the rest the base
  // names. Looking up every chunk of the volume would be about 1024.
  EXPECT_LE(s->manifest_lookups(), rewrites) << "of " << stats.chunks_referenced << " chunks";
  remote->reset();
  server.Stop();
  ASSERT_TRUE(served->Close().ok());
  ExpectRestores(g2, {vols[1]});
}

}  // namespace
}  // namespace chunkferry::engine::rados
