#include "engine/store/scratch_manifest.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A process that has ended (and been reaped): its pid names nobody.
pid_t DeadPid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/cf-scratch-test-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    base_ = templ;
  }
  void TearDown() override { std::system(absl::StrCat("rm -rf '", base_, "'").c_str()); }

  // A scratch directory of `pid` holding a manifest.tmp, everything `age` seconds old.
  std::string Leftover(pid_t pid, const std::string& tail, int age) {
    const std::string dir = absl::StrCat(base_, "/chunkferry-", pid, "-", tail);
    EXPECT_EQ(::mkdir(dir.c_str(), 0700), 0);
    const std::string file = dir + "/manifest.tmp";
    std::FILE* f = std::fopen(file.c_str(), "w");
    EXPECT_NE(f, nullptr);
    std::fputs("half a manifest", f);
    std::fclose(f);
    timeval then[2] = {{::time(nullptr) - age, 0}, {::time(nullptr) - age, 0}};
    EXPECT_EQ(::utimes(file.c_str(), then), 0);
    EXPECT_EQ(::utimes(dir.c_str(), then), 0);
    return dir;
  }

  std::string base_;
};

TEST_F(ScratchDirTest, OnlyQuietDirectoriesOfEndedProcessesAreRemoved) {
  const pid_t dead = DeadPid();
  const std::string abandoned = Leftover(dead, "aaaaaa", 3600);
  const std::string recent = Leftover(dead, "bbbbbb", 5);  // may be another namespace's
  const std::string alive = Leftover(::getppid(), "cccccc", 3600);
  const std::string mine = Leftover(::getpid(), "dddddd", 3600);
  const std::string other = base_ + "/unrelated-1-eeeeee";
  ASSERT_EQ(::mkdir(other.c_str(), 0700), 0);
  RemoveAbandonedScratchDirs(base_, kAbandonedAfter);
  EXPECT_FALSE(Exists(abandoned));
  EXPECT_TRUE(Exists(recent + "/manifest.tmp"));
  EXPECT_TRUE(Exists(alive + "/manifest.tmp"));
  EXPECT_TRUE(Exists(mine + "/manifest.tmp"));
  EXPECT_TRUE(Exists(other));
}

TEST_F(ScratchDirTest, MakingOneSweepsAndItsOwnGoesWithIt) {
  const std::string abandoned = Leftover(DeadPid(), "ffffff", 3600);
  ::setenv("TMPDIR", base_.c_str(), 1);
  std::string file;
  {
    auto dir = ScratchDir::Make();
    ::unsetenv("TMPDIR");
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_FALSE(Exists(abandoned));
    file = dir->File("manifest");
    EXPECT_EQ(file.rfind(absl::StrCat(base_, "/chunkferry-", ::getpid(), "-"), 0), 0u) << file;
    std::FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  EXPECT_FALSE(Exists(file));
}

}  // namespace
}  // namespace chunkferry::engine
