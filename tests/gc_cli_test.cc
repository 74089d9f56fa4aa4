// `chunkferry gc` as an operator runs it: killed with SIGKILL at every point of a collection, the
// store still verifies, every published backup restores byte for byte, and running gc again
// finishes the job; its flags and refusals; the JSON summary.
#include <signal.h>
#include <stdlib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/format/volume_backup.h"
#include "engine/local/local_store.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/cli_fixture.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMiB = 1 << 20;

class GcCliTest : public testing::CliFixture {
 protected:
  void SetUp() override {
    testing::CliFixture::SetUp();
    if (IsSkipped()) return;
    // Two groups over several small packs: deleting the first leaves packs with nothing live
    // (removed) and packs partly live (rewritten).
    tmpl_ = tmp_.Sub("template");
    testing::InitStore(tmpl_);
    engine::LocalStoreOptions o;
    o.queue.backend = GetParam();
    o.pool = &pool_;
    o.pack_target = 2 * kMiB;
    auto s = engine::LocalStore::Open(tmpl_, o);
    ASSERT_TRUE(s.ok()) << s.status();
    old_ = testing::ImportSampleGroup(**s, pool_, tmp_, old_group_, 11,
                                      {3 * kMiB, 2 * kMiB, 3 * kMiB + 5});
    new_ = testing::ImportRelatedGroup(**s, pool_, tmp_, new_group_, old_[0].image, old_[1].image);
    ASSERT_TRUE((*s)->DeleteGroup(old_group_).ok());
    ASSERT_TRUE((*s)->Close().ok());
  }

  // A fresh copy of the template store.
  std::string CopyOfTemplate(const std::string& name) {
    const std::string dir = tmp_.Sub(name);
    auto r = testing::RunProcess({"/bin/cp", "-a", tmpl_, dir});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return dir;
  }

  void ExpectIntactNewGroup(const std::string& dir) {
    Run({"verify", "--store", dir, "--quiet"});
    auto s = testing::OpenStore(dir, GetParam(), false, &pool_);
    ASSERT_TRUE(s.ok()) << s.status();
    for (size_t i = 0; i < new_.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(**s, pool_, new_[i].meta.uuid, new_[i].image,
                                             tmp_.Sub(absl::StrCat("out", i))));
    }
  }

  engine::WorkerPool pool_{1};
  std::string tmpl_;
  std::string old_group_ = engine::NewUuid(), new_group_ = engine::NewUuid();
  std::vector<testing::ImportedVolume> old_, new_;
};

TEST_P(GcCliTest, KilledAtAnyPointTheStoreStaysWholeAndGcFinishesLater) {
  // The reference: one uninterrupted collection.
  const std::string ref = CopyOfTemplate("ref");
  const Json summary = ParseJson(Run({"gc", "--store", ref, "--json"}).out);
  ASSERT_GT(summary.value("packs_removed", 0), 0) << summary.dump();
  ASSERT_GT(summary.value("packs_rewritten", 0), 0) << summary.dump();
  const uint64_t ref_bytes = testing::TotalPackBytes(ref);
  ASSERT_EQ(testing::TotalPackBytes(tmpl_) - ref_bytes,
            summary.value("bytes_reclaimed", uint64_t{0}) - engine::kPackHeaderSize);

  int points = 0;
  for (int point = 1;; ++point) {
    SCOPED_TRACE(absl::StrCat("killed before point ", point));
    const std::string dir = CopyOfTemplate(absl::StrCat("crash", point));
    ::setenv("CHUNKFERRY_GC_CRASH_AT", std::to_string(point).c_str(), 1);
    auto r = testing::RunProcess({CHUNKFERRY_CLI, "gc", "--store", dir, IoFlag()});
    ::unsetenv("CHUNKFERRY_GC_CRASH_AT");
    if (r.exit_code == 0) break;  // the collection ended before reaching this point
    ASSERT_EQ(r.signal, SIGKILL) << r.err;
    ++points;
    ExpectIntactNewGroup(dir);
    Run({"gc", "--store", dir, "--quiet"});
    ExpectIntactNewGroup(dir);
    // Whatever the crash left (copies nothing names) went with the second run.
    EXPECT_LE(testing::TotalPackBytes(dir), ref_bytes + engine::kPackHeaderSize);
    testing::RemoveAll(dir);
  }
  // begin, mark, plan, a sweep per rewritten pack, commit, unlink.
  EXPECT_GE(points, 6);
  std::printf("killed at %d points\n", points);
}

TEST_P(GcCliTest, DryRunAndFlags) {
  const std::string dir = CopyOfTemplate("dry");
  const auto files = testing::ListFiles(dir, {"LOCK", "index/"});
  const Json dry = ParseJson(Run({"gc", "--store", dir, "--dry-run", "--json"}).out);
  EXPECT_TRUE(dry.value("dry_run", false));
  EXPECT_GT(dry.value("bytes_reclaimed", 0), 0);
  EXPECT_EQ(testing::ListFiles(dir, {"LOCK", "index/"}), files);

  Run({"gc"}, 2);
  Run({"gc", "--store", dir, "--repack-below", "1.5"}, 2);
  Run({"gc", "--store", dir, "--repack-below", "half"}, 2);
  auto missing = Run({"gc", "--store", tmp_.Sub("nowhere")}, 1);
  EXPECT_TRUE(absl::StrContains(missing.err, "not a chunkferry store")) << missing.err;
  EXPECT_EQ(testing::ListFiles(dir, {"LOCK", "index/"}), files);

  // --repack-below 0: packs with nothing live go, nothing is copied.
  const Json none = ParseJson(Run({"gc", "--store", dir, "--repack-below", "0", "--json"}).out);
  EXPECT_EQ(none.value("packs_rewritten", -1), 0);
  EXPECT_EQ(none.value("bytes_copied", -1), 0);
  EXPECT_GT(none.value("packs_removed", 0), 0);
  ExpectIntactNewGroup(dir);
}

TEST_P(GcCliTest, AStoreAnotherProcessWritesIsRefused) {
  const std::string dir = CopyOfTemplate("busy");
  auto holder = testing::OpenStore(dir, GetParam(), true, &pool_);
  ASSERT_TRUE(holder.ok()) << holder.status();
  const auto files = testing::ListFiles(dir, {"LOCK", "index/"});
  auto r = Run({"gc", "--store", dir}, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "being written by another process")) << r.err;
  EXPECT_EQ(testing::ListFiles(dir, {"LOCK", "index/"}), files);
  ASSERT_TRUE((*holder)->Close().ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, GcCliTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
