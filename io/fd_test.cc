#include "io/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "io/internal/test_util.h"

namespace chunkferry::io {
namespace {

using ::chunkferry::io::testing::Pattern;
using ::chunkferry::io::testing::TempDir;

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

class FdTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "cannot make a temp dir"; }
  TempDir dir_;
};

TEST_F(FdTest, FdClosesOnDestructionAndMoves) {
  int raw;
  {
    Fd fd(::open("/dev/null", O_RDONLY));
    ASSERT_TRUE(fd.valid());
    raw = fd.get();
    Fd moved(std::move(fd));
    EXPECT_FALSE(fd.valid());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(moved.get(), raw);
    EXPECT_GE(::fcntl(raw, F_GETFD), 0);
  }
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_F(FdTest, MoveAssignClosesTheOldDescriptor) {
  Fd a(::open("/dev/null", O_RDONLY));
  Fd b(::open("/dev/null", O_RDONLY));
  const int old_a = a.get();
  const int old_b = b.get();
  a = std::move(b);
  EXPECT_EQ(a.get(), old_b);
  EXPECT_EQ(::fcntl(old_a, F_GETFD), -1);
}

TEST_F(FdTest, ReleaseKeepsDescriptorOpen) {
  Fd fd(::open("/dev/null", O_RDONLY));
  const int raw = fd.Release();
  EXPECT_FALSE(fd.valid());
  EXPECT_GE(::fcntl(raw, F_GETFD), 0);
  ::close(raw);
}

TEST_F(FdTest, CloseReportsErrors) {
  Fd fd(::open("/dev/null", O_RDONLY));
  EXPECT_TRUE(fd.Close().ok());
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(fd.Close().ok());  // nothing to close
  // A descriptor someone else already closed: close(2) says EBADF.
  const int raw = ::open("/dev/null", O_RDONLY);
  ::close(raw);
  Fd stale(raw);
  absl::Status status = stale.Close();
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "close fd")) << status;
}

TEST_F(FdTest, ErrnoStatusMapsCodesAndFormatsMessage) {
  absl::Status s = ErrnoStatus(ENOENT, "open", "/no/such");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "open /no/such: No such file or directory");
  EXPECT_EQ(ErrnoStatus(EEXIST, "op", "x").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrnoStatus(EACCES, "op", "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(EPERM, "op", "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(ENOSPC, "op", "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(EDQUOT, "op", "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(EINVAL, "op", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrnoStatus(EIO, "op", "x").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrnoStatus(EBADF, "op", "x").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrnoStatus(EIO, "pread", "fd 3").message(), "pread fd 3: Input/output error");
}

TEST_F(FdTest, OpenFileMissingIsNotFoundAndNamesThePath) {
  const std::string path = dir_.File("missing");
  absl::StatusOr<Fd> fd = OpenFile(path, O_RDONLY);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(fd.status().message(), path)) << fd.status();
}

TEST_F(FdTest, OpenFileSetsCloexec) {
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_NE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST_F(FdTest, OpenMaybeDirectReportsWhatItGot) {
  bool direct = false;
  absl::StatusOr<Fd> fd = OpenMaybeDirect(dir_.File("d"), O_RDWR | O_CREAT, &direct);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const int flags = ::fcntl(fd->get(), F_GETFL);
  EXPECT_EQ((flags & O_DIRECT) != 0, direct);
  // Errors other than "no O_DIRECT here" are not retried and come back as they are.
  absl::StatusOr<Fd> missing = OpenMaybeDirect(dir_.File("nope"), O_RDONLY, &direct);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FdTest, PwriteThenPreadFullRoundTrips) {
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::vector<uint8_t> data = Pattern(300000, 1);
  ASSERT_TRUE(PwriteFull(fd->get(), data, 1000).ok());
  absl::StatusOr<uint64_t> size = FileSize(fd->get(), "f");
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 301000u);
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(PreadFull(fd->get(), absl::MakeSpan(back), 1000).ok());
  EXPECT_EQ(back, data);
  EXPECT_TRUE(Fsync(fd->get(), "f").ok());
}

TEST_F(FdTest, PreadFullPastEofIsOutOfRange) {
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::vector<uint8_t> data = Pattern(100, 2);
  ASSERT_TRUE(PwriteFull(fd->get(), data, 0).ok());

  std::vector<uint8_t> back(50);
  ASSERT_TRUE(PreadFull(fd->get(), absl::MakeSpan(back), 25).ok());
  EXPECT_EQ(back, std::vector<uint8_t>(data.begin() + 25, data.begin() + 75));

  std::vector<uint8_t> too_long(200);
  absl::Status status = PreadFull(fd->get(), absl::MakeSpan(too_long), 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  // What was there is still delivered.
  EXPECT_EQ(std::vector<uint8_t>(too_long.begin(), too_long.begin() + 100), data);

  std::vector<uint8_t> beyond(1);
  EXPECT_EQ(PreadFull(fd->get(), absl::MakeSpan(beyond), 1000).code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(FdTest, PreadFullOnBadFdNamesIt) {
  std::vector<uint8_t> buf(10);
  absl::Status status = PreadFull(-1, absl::MakeSpan(buf), 0);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "pread fd -1")) << status;
  EXPECT_FALSE(PwriteFull(-1, buf, 0).ok());
  EXPECT_FALSE(Fsync(-1, "nothing").ok());
  EXPECT_FALSE(FileSize(-1, "nothing").ok());
}

TEST_F(FdTest, ReadFullyOnPipeCollectsPiecesUntilEof) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);
  const std::vector<uint8_t> data = Pattern(3 * 1000, 3);
  std::thread producer([&] {
    // Three separate writes with pauses, so the reader sees short reads.
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(::write(writer.get(), data.data() + i * 1000, 1000), 1000);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    writer.Reset();
  });
  // First a buffer smaller than the stream: filled exactly.
  std::vector<uint8_t> first(1500);
  absl::StatusOr<size_t> n = ReadFully(reader.get(), absl::MakeSpan(first));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1500u);
  // Then a larger one: gets the rest, then EOF.
  std::vector<uint8_t> rest(4000);
  n = ReadFully(reader.get(), absl::MakeSpan(rest));
  producer.join();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1500u);
  first.insert(first.end(), rest.begin(), rest.begin() + 1500);
  EXPECT_EQ(first, data);
}

TEST_F(FdTest, WriteFileAtomicReplacesContentAndLeavesNoTemp) {
  const std::string path = dir_.File("manifest");
  ASSERT_TRUE(WriteFileAtomic(path, "old content that is longer").ok());
  absl::StatusOr<std::string> content = ReadFileToString(path);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "old content that is longer");

  ASSERT_TRUE(WriteFileAtomic(path, "new").ok());
  content = ReadFileToString(path);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "new");
  EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{"manifest"});

  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  content = ReadFileToString(path);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "");
}

TEST_F(FdTest, WriteFileOnceNeverReplacesOtherBytes) {
  const std::string path = dir_.File("group");
  absl::StatusOr<bool> first = WriteFileOnce(path, "published");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);

  // The same bytes again: a no-op success that says nothing was new.
  absl::StatusOr<bool> again = WriteFileOnce(path, "published");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);

  // Other bytes, shorter or of the same length: refused, the file as it was, no temp left.
  for (const char* other : {"other", "PUBLISHED"}) {
    absl::StatusOr<bool> replaced = WriteFileOnce(path, other);
    EXPECT_EQ(replaced.status().code(), absl::StatusCode::kAlreadyExists) << replaced.status();
    EXPECT_TRUE(absl::StrContains(replaced.status().message(), path)) << replaced.status();
    absl::StatusOr<std::string> content = ReadFileToString(path);
    ASSERT_TRUE(content.ok()) << content.status();
    EXPECT_EQ(*content, "published");
    EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{"group"});
  }
}

TEST_F(FdTest, PublishFileOnceConsumesTheTemporaryFileEitherWay) {
  const std::string path = dir_.File("manifest"), tmp = dir_.File("tmp");
  ASSERT_TRUE(WriteFileAtomic(tmp, std::string(3 << 20, 'a')).ok());
  absl::StatusOr<bool> published = PublishFileOnce(tmp, path);
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_TRUE(*published);
  EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{"manifest"});

  // Differs only in its last byte, past the first MiB compared.
  std::string almost(3 << 20, 'a');
  almost.back() = 'b';
  ASSERT_TRUE(WriteFileAtomic(tmp, almost).ok());
  EXPECT_EQ(PublishFileOnce(tmp, path).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{"manifest"});
  absl::StatusOr<bool> equal = FilesEqual(path, path);
  ASSERT_TRUE(equal.ok()) << equal.status();
  EXPECT_TRUE(*equal);

  ASSERT_TRUE(WriteFileAtomic(tmp, std::string(3 << 20, 'a')).ok());
  published = PublishFileOnce(tmp, path);
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_FALSE(*published);
  EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{"manifest"});

  EXPECT_EQ(PublishFileOnce(dir_.File("missing"), dir_.File("x")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(FdTest, WriteFileAtomicWithRelativePath) {
  const std::filesystem::path old_cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_.path());
  absl::Status status = WriteFileAtomic("relative", "x");
  std::filesystem::current_path(old_cwd);
  ASSERT_TRUE(status.ok()) << status;
  absl::StatusOr<std::string> content = ReadFileToString(dir_.File("relative"));
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "x");
}

TEST_F(FdTest, WriteFileAtomicFailureRemovesTempAndKeepsTarget) {
  // rename(2) cannot replace a non-empty directory: the write fails at the last step.
  const std::string path = dir_.File("target");
  ASSERT_TRUE(std::filesystem::create_directory(path));
  ASSERT_TRUE(WriteFileAtomic(path + "/inside", "keep").ok());
  absl::Status status = WriteFileAtomic(path, "data");
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "rename")) << status;
  EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{"target"});
  EXPECT_TRUE(std::filesystem::is_directory(path));
}

TEST_F(FdTest, WriteFileAtomicIntoMissingDirIsNotFound) {
  absl::Status status = WriteFileAtomic(dir_.File("no/such/file"), "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(ListDir(dir_.path()).empty());
}

TEST_F(FdTest, ReadFileToStringReadsProcFiles) {
  // st_size is 0 for /proc files; the content is not.
  absl::StatusOr<std::string> content = ReadFileToString("/proc/self/status");
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_TRUE(absl::StrContains(*content, "Name:"));
  EXPECT_EQ(ReadFileToString(dir_.File("missing")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FdTest, FsyncDir) {
  EXPECT_TRUE(FsyncDir(dir_.path()).ok());
  EXPECT_EQ(FsyncDir(dir_.File("missing")).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace chunkferry::io
