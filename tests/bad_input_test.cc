// Bad input gets a clear error and changes nothing: missing or wrong sources, bad uuids, a disk
// that fills up in the middle of an import, and bad command lines.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::TempDir;

constexpr size_t kMiB = 1 << 20;

class BadInputTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    testing::InitStore(dir_);
    store_ = OpenOk();
    ASSERT_NE(store_, nullptr);
    // Something already in the store, so that "unchanged" means something.
    const std::string img = tmp_.Sub("first");
    testing::WriteMixedFile(img, 2 * kMiB + 5, 1);
    auto m = testing::Import(*store_, pool_, img, group_);
    ASSERT_TRUE(m.ok()) << m.status();
    first_ = m->uuid;
  }

  std::unique_ptr<engine::LocalStore> OpenOk() {
    auto s = testing::OpenStore(dir_, GetParam(), true, &pool_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  absl::StatusOr<engine::VolumeBackupMeta> ImportMeta(const std::string& source,
                                                      const engine::VolumeBackupMeta& meta) {
    engine::ImportOptions o;
    o.source = source;
    o.meta = meta;
    return engine::ImportVolume(*store_, pool_, o, nullptr);
  }

  // Files of the store (the LOCK holds a pid and is not part of the state).
  std::map<std::string, uint64_t> Files() { return testing::ListFiles(dir_, {"LOCK"}); }

  void ExpectVerifies() {
    auto r = engine::VerifyStore(*store_, pool_, engine::VerifyMode::kFull);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->ok()) << (r->problems.empty() ? "" : r->problems[0]);
    EXPECT_EQ(r->manifests, 1u);
  }

  engine::WorkerPool pool_{1};
  TempDir tmp_;
  std::string dir_;
  std::unique_ptr<engine::LocalStore> store_;
  std::string group_ = engine::NewUuid();
  std::string first_;
};

TEST_P(BadInputTest, MissingSourceIsAClearErrorAndChangesNothing) {
  const auto before = Files();
  const std::string missing = tmp_.Sub("no-such-image");
  auto m = ImportMeta(missing, testing::NewMeta(group_));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), missing)) << m.status();
  EXPECT_EQ(Files(), before);
  ExpectVerifies();
}

TEST_P(BadInputTest, DirectorySourceIsAClearErrorAndChangesNothing) {
  const auto before = Files();
  const std::string d = tmp_.Sub("a-directory");
  ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  auto m = ImportMeta(d, testing::NewMeta(group_));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "directory")) << m.status();
  EXPECT_EQ(Files(), before);
  ExpectVerifies();
}

TEST_P(BadInputTest, BadUuidsAreInvalidArgumentAndChangeNothing) {
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 1 * kMiB, 2);
  const auto before = Files();
  std::vector<engine::VolumeBackupMeta> bad;
  bad.push_back(testing::NewMeta("not-a-uuid"));
  bad.push_back(testing::NewMeta(group_));
  bad.back().uuid = "0123456789ABCDEF0123456789ABCDEF";
  bad.push_back(testing::NewMeta(group_));
  bad.back().volume_uuid = "01234567-89ab-cdef-0123-456789abcdef";
  bad.push_back(testing::NewMeta(group_));
  bad.back().vm_instance_uuid = "vm-1";
  bad.push_back(testing::NewMeta(group_));
  bad.back().uuid = "../../../etc/evil0123456789abcde";
  bad.push_back(testing::NewMeta(group_, "Swap"));
  for (const auto& meta : bad) {
    auto m = ImportMeta(img, meta);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  }
  EXPECT_EQ(Files(), before);
  ExpectVerifies();
}

TEST_P(BadInputTest, ExistingBackupUuidIsRefused) {
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 1 * kMiB, 3);
  const auto before = Files();
  engine::VolumeBackupMeta meta = testing::NewMeta(group_);
  meta.uuid = first_;
  auto m = ImportMeta(img, meta);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kAlreadyExists) << m.status();
  EXPECT_EQ(Files(), before);
  ExpectVerifies();
}

TEST_P(BadInputTest, FullDiskFailsTheImportCleanly) {
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 4 * kMiB, 4);
  const auto packs = testing::PackSizes(dir_);
  ASSERT_EQ(packs.size(), 1u);
  uint64_t largest = 0;
  for (const auto& [name, size] : packs) largest = std::max(largest, size);
  const auto manifests_before = testing::ListFiles(dir_ + "/volumes");
  absl::StatusOr<engine::VolumeBackupMeta> m;
  {
    testing::ScopedFileSizeLimit limit(largest + 256 * 1024);
    ASSERT_TRUE(limit.ok());
    m = ImportMeta(img, testing::NewMeta(group_));
  }
  ASSERT_FALSE(m.ok()) << "the import fit under the file size limit";
  EXPECT_TRUE(absl::StrContains(m.status().message(), "too large") ||
              absl::StrContains(m.status().message(), "short write"))
      << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "pack")) << m.status();
  EXPECT_EQ(testing::PackSizes(dir_), packs);
  EXPECT_EQ(testing::ListFiles(dir_ + "/volumes"), manifests_before);
  EXPECT_TRUE(testing::ListFiles(dir_ + "/tmp").empty());

  // The same store goes on working, and after a reopen is as before.
  ASSERT_TRUE(store_->Close().ok());
  store_ = OpenOk();
  ASSERT_NE(store_, nullptr);
  EXPECT_TRUE(store_->open_report().torn_tails_cut.empty());
  EXPECT_TRUE(store_->open_report().damaged_regions.empty());
  EXPECT_EQ(testing::PackSizes(dir_), packs);
  EXPECT_EQ(testing::ListFiles(dir_ + "/volumes"), manifests_before);
  ExpectVerifies();
  auto again = ImportMeta(img, testing::NewMeta(group_));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, again->uuid, img, tmp_.Sub("out")));
}

// The same, without closing in between: the store rolled back and takes the next import.
TEST_P(BadInputTest, FullDiskThenRetryInTheSameSession) {
  const std::string img = tmp_.Sub("img");
  testing::WriteTextFile(img, 6 * kMiB, 5);
  const auto packs = testing::PackSizes(dir_);
  uint64_t largest = 0;
  for (const auto& [name, size] : packs) largest = std::max(largest, size);
  {
    testing::ScopedFileSizeLimit limit(largest + 64 * 1024);
    ASSERT_TRUE(limit.ok());
    auto m = ImportMeta(img, testing::NewMeta(group_));
    ASSERT_FALSE(m.ok());
  }
  EXPECT_EQ(testing::PackSizes(dir_), packs);
  auto again = ImportMeta(img, testing::NewMeta(group_));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(testing::RestoresIdentical(*store_, pool_, again->uuid, img, tmp_.Sub("out")));
  EXPECT_TRUE(
      testing::RestoresIdentical(*store_, pool_, first_, tmp_.Sub("first"), tmp_.Sub("out-first")));
}

// ImportVolume promises that on error "no manifest or group changes". A damaged group record
// makes the group update fail after the volume's data is in: the import must fail without
// leaving a manifest behind.
TEST_P(BadInputTest, ImportIntoADamagedGroupFailsWithoutLeavingAManifest) {
  const std::string group_file = dir_ + "/groups/" + group_ + ".group";
  ASSERT_TRUE(testing::FileExists(group_file));
  testing::FlipByte(group_file, 10, 0x01);
  const std::string img = tmp_.Sub("img");
  testing::WriteRandomFile(img, 1 * kMiB, 6);
  const auto manifests = testing::ListFiles(dir_ + "/volumes");
  engine::VolumeBackupMeta meta = testing::NewMeta(group_);
  auto m = ImportMeta(img, meta);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << m.status();
  EXPECT_EQ(testing::ListFiles(dir_ + "/volumes"), manifests)
      << "the failed import left the manifest of " << meta.uuid;
}

INSTANTIATE_TEST_SUITE_P(Backends, BadInputTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

// ---- The CLI. ----

std::string Cli() { return CHUNKFERRY_CLI; }

TEST(BadInputCliTest, UnknownFlagsAreUsageErrors) {
  TempDir tmp;
  const std::string store = tmp.Sub("s");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"verify", "--store", store, "--no-such-flag"},
           {"import", "--bogus=1"},
           {"restore", "--store", store, "--backup"},  // missing value
           {"copy", "--from", store},                  // missing required flags
           {"store", "init", "--store", store, "--chunker", "fixed:3k"},
           {"store", "init", "--store", store, "--zstd-level", "99"},
           {"store", "init", "--store", store, "--data-pool", "ec"},  // a directory has none
           {"store", "init", "--store", "rados:chunkferry/x", "--data-pool", "e c"},
           {"repair", "--store", "tcp://127.0.0.1:1", "--from", store},
           {"verify", "--store", store, "--verify", "sometimes"},
           {"ls", "--store", "rados:chunkferry", "--ceph-timeout", "0"},
           {"ls", "--store", "rados:chunkferry", "--ceph-timeout", "soon"},
           {"frobnicate"},
       }) {
    std::vector<std::string> argv = {Cli()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = testing::RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_FALSE(r.err.empty()) << absl::StrJoin(args, " ");
  }
  EXPECT_FALSE(testing::FileExists(store));
  const auto none = testing::RunProcess({Cli()});
  EXPECT_EQ(none.exit_code, 2);
}

TEST(BadInputCliTest, MissingStoreFailsWithExitCode1) {
  TempDir tmp;
  const std::string store = tmp.Sub("missing");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"verify", "--store", store},
           {"ls", "--store", store},
           {"restore", "--store", store, "--backup", engine::NewUuid(), "--output", tmp.Sub("out")},
           {"import", "--store", store, "--image", "/dev/null", "--group", engine::NewUuid(),
            "--volume", engine::NewUuid()},
       }) {
    std::vector<std::string> argv = {Cli()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = testing::RunProcess(argv);
    EXPECT_EQ(r.exit_code, 1) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "not a chunkferry store")) << r.err;
  }
  EXPECT_FALSE(testing::FileExists(store));
  EXPECT_FALSE(testing::FileExists(tmp.Sub("out")));
}

TEST(BadInputCliTest, BadUuidOnTheCommandLineIsAUsageError) {
  TempDir tmp;
  const std::string store = tmp.Sub("s");
  ASSERT_EQ(testing::RunProcess({Cli(), "store", "init", "--store", store, "--quiet"}).exit_code,
            0);
  const auto files = testing::ListFiles(store);
  const std::string img = tmp.Sub("img");
  testing::WriteRandomFile(img, 64 << 10, 1);
  const auto r = testing::RunProcess({Cli(), "import", "--store", store, "--image", img, "--group",
                                      "G1", "--volume", engine::NewUuid()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "groupUuid")) << r.err;
  EXPECT_EQ(testing::ListFiles(store), files);
}

}  // namespace
}  // namespace chunkferry
