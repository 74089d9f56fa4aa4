#include "io/queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "io/buffer.h"
#include "io/fd.h"
#include "io/internal/test_util.h"

namespace chunkferry::io {

// Names backends in test output (gtest would print the enum's byte).
void PrintTo(Backend backend, std::ostream* os) { *os << BackendName(backend); }

namespace {

using ::chunkferry::io::testing::Pattern;
using ::chunkferry::io::testing::TempDir;

Request Read(int fd, uint8_t* buf, uint32_t len, uint64_t offset, uint64_t tag) {
  return Request{Request::Op::kRead, fd, buf, len, offset, tag, -1};
}
Request Write(int fd, const uint8_t* buf, uint32_t len, uint64_t offset, uint64_t tag) {
  // The queue never writes through a write request's buffer.
  return Request{Request::Op::kWrite, fd, const_cast<uint8_t*>(buf), len, offset, tag, -1};
}
Request FsyncRequest(int fd, uint64_t tag) {
  return Request{Request::Op::kFsync, fd, nullptr, 0, 0, tag, -1};
}

// Reaps until `n` completions have arrived.
std::vector<Completion> ReapN(Queue& queue, size_t n) {
  std::vector<Completion> all;
  std::vector<Completion> batch(16);
  while (all.size() < n) {
    absl::StatusOr<size_t> got = queue.Reap(absl::MakeSpan(batch), 1);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) break;
    all.insert(all.end(), batch.begin(), batch.begin() + *got);
  }
  return all;
}

// Sets an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = old;
    had_old_ = old != nullptr;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_old_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_old_ = false;
};

// Returns an io_uring queue, or an error when this machine cannot set one up.
absl::StatusOr<std::unique_ptr<Queue>> MakeUring(unsigned depth) {
  return MakeQueue(QueueOptions{Backend::kUring, depth, 4});
}

// Every test runs on both backends; the io_uring run is skipped where io_uring is unavailable.
class QueueTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "cannot make a temp dir";
    absl::StatusOr<std::unique_ptr<Queue>> queue = NewQueue(32);
    if (!queue.ok() && GetParam() == Backend::kUring) {
      GTEST_SKIP() << "io_uring unavailable here: " << queue.status();
    }
    ASSERT_TRUE(queue.ok()) << queue.status();
    queue_ = *std::move(queue);
    ASSERT_EQ(queue_->backend(), GetParam());
    ASSERT_EQ(queue_->depth(), 32u);
  }

  absl::StatusOr<std::unique_ptr<Queue>> NewQueue(unsigned depth) {
    return MakeQueue(QueueOptions{GetParam(), depth, 4});
  }

  // Creates dir/name holding `data`; returns a read-write descriptor.
  Fd MakeFile(const std::string& name, const std::vector<uint8_t>& data) {
    absl::StatusOr<Fd> fd = OpenFile(dir_.File(name), O_RDWR | O_CREAT | O_TRUNC);
    EXPECT_TRUE(fd.ok()) << fd.status();
    if (!fd.ok()) return Fd();
    EXPECT_TRUE(PwriteFull(fd->get(), data, 0).ok());
    return *std::move(fd);
  }

  TempDir dir_;
  std::unique_ptr<Queue> queue_;
};

TEST_P(QueueTest, ConcurrentWritesThenConcurrentReadsRoundTrip) {
  constexpr uint32_t kBlock = 64 * 1024;
  constexpr uint32_t kBlocks = 256;
  const std::vector<uint8_t> data = Pattern(size_t{kBlock} * kBlocks, 7);
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("data"), O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_TRUE(fd.ok()) << fd.status();

  // Blocks in a scrambled order (97 is coprime with 256), keeping the queue full.
  std::vector<uint32_t> order(kBlocks);
  for (uint32_t i = 0; i < kBlocks; ++i) order[i] = (i * 97) % kBlocks;
  std::vector<int> seen(kBlocks, 0);
  size_t next = 0;
  size_t completed = 0;
  std::vector<Completion> batch(8);
  while (completed < kBlocks) {
    while (next < kBlocks && queue_->in_flight() < queue_->depth()) {
      const uint32_t block = order[next++];
      ASSERT_TRUE(queue_
                      ->Submit(Write(fd->get(), data.data() + size_t{block} * kBlock, kBlock,
                                     uint64_t{block} * kBlock, block))
                      .ok());
    }
    absl::StatusOr<size_t> got = queue_->Reap(absl::MakeSpan(batch), 1);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_GE(*got, 1u);
    for (size_t i = 0; i < *got; ++i) {
      ASSERT_LT(batch[i].tag, kBlocks);
      EXPECT_EQ(batch[i].result, kBlock) << "block " << batch[i].tag;
      ++seen[batch[i].tag];
    }
    completed += *got;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kBlocks);
  absl::StatusOr<int64_t> synced = RunOne(*queue_, FsyncRequest(fd->get(), 999));
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(*synced, 0);

  // What landed, checked without the queue.
  std::vector<uint8_t> plain(data.size());
  ASSERT_TRUE(PreadFull(fd->get(), absl::MakeSpan(plain), 0).ok());
  ASSERT_TRUE(plain == data);

  // Read it all back through the queue, all blocks in flight at once as far as depth allows.
  std::vector<uint8_t> back(data.size(), 0);
  next = 0;
  completed = 0;
  std::fill(seen.begin(), seen.end(), 0);
  while (completed < kBlocks) {
    while (next < kBlocks && queue_->in_flight() < queue_->depth()) {
      const uint32_t block = order[next++];
      ASSERT_TRUE(queue_
                      ->Submit(Read(fd->get(), back.data() + size_t{block} * kBlock, kBlock,
                                    uint64_t{block} * kBlock, block))
                      .ok());
    }
    absl::StatusOr<size_t> got = queue_->Reap(absl::MakeSpan(batch), 1);
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < *got; ++i) {
      EXPECT_EQ(batch[i].result, kBlock);
      ++seen[batch[i].tag];
    }
    completed += *got;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kBlocks);
  EXPECT_TRUE(back == data);
  EXPECT_EQ(queue_->in_flight(), 0u);
}

TEST_P(QueueTest, ReadReachingEofReturnsShortCount) {
  const std::vector<uint8_t> data = Pattern(10000, 1);
  Fd fd = MakeFile("f", data);
  std::vector<uint8_t> buf(16384, 0xee);
  absl::StatusOr<int64_t> n = RunOne(*queue_, Read(fd.get(), buf.data(), 16384, 8192, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 10000 - 8192);
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + *n, data.begin() + 8192));
  EXPECT_EQ(buf[*n], 0xee);  // nothing written past what was read
}

TEST_P(QueueTest, ReadPastEofReturnsZero) {
  Fd fd = MakeFile("f", Pattern(10000, 1));
  std::vector<uint8_t> buf(4096);
  absl::StatusOr<int64_t> n = RunOne(*queue_, Read(fd.get(), buf.data(), 4096, 20000, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
  n = RunOne(*queue_, Read(fd.get(), buf.data(), 4096, 10000, 2));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
}

TEST_P(QueueTest, ZeroLengthRequestsComplete) {
  Fd fd = MakeFile("f", Pattern(100, 1));
  uint8_t byte = 0;
  absl::StatusOr<int64_t> n = RunOne(*queue_, Read(fd.get(), &byte, 0, 0, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
  n = RunOne(*queue_, Write(fd.get(), &byte, 0, 0, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
}

TEST_P(QueueTest, OperationErrorsComeBackAsNegativeErrno) {
  std::vector<uint8_t> buf(4096);
  absl::StatusOr<int64_t> n = RunOne(*queue_, Read(-1, buf.data(), 4096, 0, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, -EBADF);

  Fd fd = MakeFile("f", Pattern(100, 1));
  absl::StatusOr<Fd> read_only = OpenFile(dir_.File("f"), O_RDONLY);
  ASSERT_TRUE(read_only.ok()) << read_only.status();
  n = RunOne(*queue_, Write(read_only->get(), buf.data(), 4096, 0, 2));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, -EBADF);

  n = RunOne(*queue_, FsyncRequest(-1, 3));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, -EBADF);

  // Reading a directory: EISDIR. The queue stays usable after all of these.
  absl::StatusOr<Fd> dir = OpenFile(dir_.path(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir.ok()) << dir.status();
  n = RunOne(*queue_, Read(dir->get(), buf.data(), 4096, 0, 4));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, -EISDIR);
  n = RunOne(*queue_, Read(fd.get(), buf.data(), 4096, 0, 5));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 100);
}

TEST_P(QueueTest, MixedBatchReportsEachRequestOnItsOwn) {
  Fd fd = MakeFile("f", Pattern(8192, 4));
  std::vector<uint8_t> a(4096), b(4096);
  ASSERT_TRUE(queue_->Submit(Read(fd.get(), a.data(), 4096, 0, 10)).ok());
  ASSERT_TRUE(queue_->Submit(Read(-1, b.data(), 4096, 0, 11)).ok());
  ASSERT_TRUE(queue_->Submit(Read(fd.get(), b.data(), 4096, 4096, 12)).ok());
  std::map<uint64_t, int64_t> results;
  for (const Completion& c : ReapN(*queue_, 3)) results[c.tag] = c.result;
  EXPECT_EQ(results, (std::map<uint64_t, int64_t>{{10, 4096}, {11, -EBADF}, {12, 4096}}));
}

TEST_P(QueueTest, SubmitBeyondDepthIsResourceExhausted) {
  absl::StatusOr<std::unique_ptr<Queue>> queue = NewQueue(4);
  ASSERT_TRUE(queue.ok()) << queue.status();
  Fd fd = MakeFile("f", Pattern(4 * 4096, 1));
  std::vector<uint8_t> buf(5 * 4096);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE((*queue)->Submit(Read(fd.get(), buf.data() + i * 4096, 4096, i * 4096, i)).ok());
  }
  EXPECT_EQ((*queue)->in_flight(), 4u);
  absl::Status full = (*queue)->Submit(Read(fd.get(), buf.data() + 4 * 4096, 4096, 0, 4));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  // Completed but not reaped still counts.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ((*queue)->Submit(Read(fd.get(), buf.data() + 4 * 4096, 4096, 0, 4)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReapN(**queue, 4).size(), 4u);
  EXPECT_EQ((*queue)->in_flight(), 0u);
  EXPECT_TRUE((*queue)->Submit(Read(fd.get(), buf.data() + 4 * 4096, 4096, 0, 4)).ok());
  EXPECT_EQ(ReapN(**queue, 1).at(0).tag, 4u);
}

TEST_P(QueueTest, BadRequestsAreRefusedAtSubmit) {
  EXPECT_EQ(queue_->Submit(Read(0, nullptr, 10, 0, 1)).code(), absl::StatusCode::kInvalidArgument);
  uint8_t byte;
  Request unregistered = Read(0, &byte, 1, 0, 1);
  unregistered.buf_index = 0;
  EXPECT_EQ(queue_->Submit(unregistered).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(queue_->in_flight(), 0u);
}

TEST_P(QueueTest, FsyncCompletes) {
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("f"), O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::vector<uint8_t> data = Pattern(100000, 5);
  ASSERT_TRUE(queue_->Submit(Write(fd->get(), data.data(), 100000, 0, 1)).ok());
  std::vector<Completion> done = ReapN(*queue_, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, 100000);
  absl::StatusOr<int64_t> n = RunOne(*queue_, FsyncRequest(fd->get(), 2));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
}

TEST_P(QueueTest, RegisteredBuffersByIndex) {
  AlignedBuffer out(64 * 1024);
  AlignedBuffer in(64 * 1024);
  const std::vector<iovec> iovecs = {{out.data(), out.size()}, {in.data(), in.size()}};
  absl::Status registered = queue_->RegisterBuffers(iovecs);
  ASSERT_TRUE(registered.ok()) << registered;
  EXPECT_EQ(queue_->RegisterBuffers(iovecs).code(), absl::StatusCode::kFailedPrecondition);

  const std::vector<uint8_t> data = Pattern(40000, 6);
  std::copy(data.begin(), data.end(), out.data() + 1000);  // a part of the buffer
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("f"), O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_TRUE(fd.ok()) << fd.status();
  Request write = Write(fd->get(), out.data() + 1000, 40000, 5000, 1);
  write.buf_index = 0;
  absl::StatusOr<int64_t> n = RunOne(*queue_, write);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 40000);

  std::fill(in.data(), in.data() + in.size(), 0);
  Request read = Read(fd->get(), in.data() + 8, 50000, 5000, 2);  // runs into EOF
  read.buf_index = 1;
  n = RunOne(*queue_, read);
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 40000);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), in.data() + 8));

  Request beyond = read;
  beyond.buf_index = 2;
  EXPECT_EQ(queue_->Submit(beyond).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(QueueTest, ThousandRequestsThroughDepthEightCompleteOnceWithTheirTags) {
  constexpr uint32_t kRequests = 1000;
  constexpr uint32_t kBlock = 4096;
  std::vector<uint8_t> data(size_t{kRequests} * kBlock);
  for (uint32_t i = 0; i < kRequests; ++i) {
    std::fill_n(data.begin() + size_t{i} * kBlock, kBlock, static_cast<uint8_t>(i * 7 + 1));
  }
  Fd fd = MakeFile("f", data);
  absl::StatusOr<std::unique_ptr<Queue>> queue = NewQueue(8);
  ASSERT_TRUE(queue.ok()) << queue.status();
  std::vector<uint8_t> back(data.size(), 0);
  std::vector<int> seen(kRequests, 0);
  uint32_t next = 0;
  size_t completed = 0;
  std::vector<Completion> batch(3);  // smaller than the depth: Reap must keep the rest
  while (completed < kRequests) {
    while (next < kRequests && (*queue)->in_flight() < 8) {
      const uint64_t tag = 1'000'000 + next;
      ASSERT_TRUE((*queue)
                      ->Submit(Read(fd.get(), back.data() + size_t{next} * kBlock, kBlock,
                                    uint64_t{next} * kBlock, tag))
                      .ok());
      ++next;
    }
    if ((*queue)->in_flight() == 8) {
      EXPECT_EQ((*queue)->Submit(Read(fd.get(), back.data(), 1, 0, 0)).code(),
                absl::StatusCode::kResourceExhausted);
    }
    absl::StatusOr<size_t> got = (*queue)->Reap(absl::MakeSpan(batch), 2);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_GE(*got, 1u);
    for (size_t i = 0; i < *got; ++i) {
      ASSERT_GE(batch[i].tag, 1'000'000u);
      const uint64_t index = batch[i].tag - 1'000'000;
      ASSERT_LT(index, next);
      EXPECT_EQ(batch[i].result, kBlock);
      ++seen[index];
    }
    completed += *got;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kRequests);
  EXPECT_TRUE(back == data);
  EXPECT_EQ((*queue)->in_flight(), 0u);
}

TEST_P(QueueTest, DirectReadsWithAlignedBuffers) {
  constexpr uint32_t kChunk = 512 * 1024;
  const std::vector<uint8_t> data = Pattern(8 * kChunk + 1000, 8);
  Fd writer = MakeFile("direct", data);
  ASSERT_TRUE(Fsync(writer.get(), "direct").ok());
  bool direct = false;
  absl::StatusOr<Fd> fd = OpenMaybeDirect(dir_.File("direct"), O_RDONLY, &direct);
  ASSERT_TRUE(fd.ok()) << fd.status();
  if (!direct) GTEST_SKIP() << "the file system under " << dir_.path() << " refuses O_DIRECT";

  std::vector<AlignedBuffer> buffers;
  for (int i = 0; i < 9; ++i) buffers.emplace_back(kChunk);
  for (uint32_t i = 0; i < 9; ++i) {
    ASSERT_TRUE(
        queue_->Submit(Read(fd->get(), buffers[i].data(), kChunk, uint64_t{i} * kChunk, i)).ok());
  }
  for (const Completion& c : ReapN(*queue_, 9)) {
    // The last chunk holds the file's unaligned 1000-byte tail.
    ASSERT_EQ(c.result, c.tag == 8 ? 1000 : kChunk) << "chunk " << c.tag;
    EXPECT_TRUE(std::equal(buffers[c.tag].data(), buffers[c.tag].data() + c.result,
                           data.begin() + c.tag * kChunk))
        << "chunk " << c.tag;
  }
  // A misaligned direct read is the kernel's EINVAL, reported in the completion.
  absl::StatusOr<int64_t> n = RunOne(*queue_, Read(fd->get(), buffers[0].data() + 1, 4096, 0, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, -EINVAL);
}

TEST_P(QueueTest, ShortReadsFromPipeAreResubmitted) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);
  const std::vector<uint8_t> data = Pattern(3000, 9);
  std::vector<uint8_t> buf(3000, 0);
  ASSERT_TRUE(queue_->Submit(Read(reader.get(), buf.data(), 3000, 0, 42)).ok());
  std::thread producer([&] {
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ASSERT_EQ(::write(writer.get(), data.data() + i * 1000, 1000), 1000);
    }
  });
  std::vector<Completion> done = ReapN(*queue_, 1);
  producer.join();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].tag, 42u);
  EXPECT_EQ(done[0].result, 3000);
  EXPECT_TRUE(buf == data);
}

TEST_P(QueueTest, ShortWritesToPipeAreResubmitted) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);
  const std::vector<uint8_t> data = Pattern(1 << 20, 10);  // 16 times the pipe's capacity
  std::vector<uint8_t> got;
  std::thread consumer([&] {
    std::vector<uint8_t> buf(10000);
    for (;;) {
      const ssize_t n = ::read(reader.get(), buf.data(), buf.size());
      if (n <= 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + n);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  absl::StatusOr<int64_t> n = RunOne(*queue_, Write(writer.get(), data.data(), 1 << 20, 0, 1));
  writer.Reset();
  consumer.join();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1 << 20);
  EXPECT_TRUE(got == data);
}

TEST_P(QueueTest, ReapWithZeroMinCollectsWithoutWaiting) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);
  uint8_t byte = 0;
  ASSERT_TRUE(queue_->Submit(Read(reader.get(), &byte, 1, 0, 5)).ok());
  Completion c;
  absl::StatusOr<size_t> got = queue_->Reap(absl::MakeSpan(&c, 1), 0);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 0u);  // nothing to read yet, and it did not block
  ASSERT_EQ(::write(writer.get(), "x", 1), 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (*got == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    got = queue_->Reap(absl::MakeSpan(&c, 1), 0);
    ASSERT_TRUE(got.ok()) << got.status();
  }
  ASSERT_EQ(*got, 1u);
  EXPECT_EQ(c.tag, 5u);
  EXPECT_EQ(c.result, 1);
  EXPECT_EQ(byte, 'x');
}

TEST_P(QueueTest, ReapForReturnsWhatHasArrivedWhenTheTimeIsUp) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);
  Fd fd = MakeFile("f", Pattern(4096, 13));
  std::vector<uint8_t> buf(4096);
  uint8_t byte = 0;
  ASSERT_TRUE(queue_->Submit(Read(reader.get(), &byte, 1, 0, 1)).ok());  // no data coming yet
  ASSERT_TRUE(queue_->Submit(Read(fd.get(), buf.data(), 4096, 0, 2)).ok());
  std::vector<Completion> out(4);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<size_t> got = queue_->ReapFor(absl::MakeSpan(out), 2, 30);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(*got, 1u);  // the file read, not the pipe's
  EXPECT_EQ(out[0].tag, 2u);
  EXPECT_EQ(out[0].result, 4096);
  EXPECT_GE(elapsed, std::chrono::milliseconds(25));
  EXPECT_EQ(queue_->in_flight(), 1u);

  ASSERT_EQ(::write(writer.get(), "y", 1), 1);
  got = queue_->ReapFor(absl::MakeSpan(out), 1, 5000);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(*got, 1u);
  EXPECT_EQ(out[0].tag, 1u);
  EXPECT_EQ(out[0].result, 1);
  EXPECT_EQ(byte, 'y');
}

TEST_P(QueueTest, ReapClampsMinCompleteToInFlight) {
  Fd fd = MakeFile("f", Pattern(8192, 1));
  std::vector<uint8_t> buf(8192);
  ASSERT_TRUE(queue_->Submit(Read(fd.get(), buf.data(), 4096, 0, 1)).ok());
  ASSERT_TRUE(queue_->Submit(Read(fd.get(), buf.data() + 4096, 4096, 4096, 2)).ok());
  std::vector<Completion> out(10);
  absl::StatusOr<size_t> got = queue_->Reap(absl::MakeSpan(out), 100);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 2u);
  got = queue_->Reap(absl::MakeSpan(out), 5);  // nothing in flight: returns at once
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 0u);
}

TEST_P(QueueTest, DestructorWaitsForRequestsInFlight) {
  constexpr uint32_t kBlock = 64 * 1024;
  const std::vector<uint8_t> data = Pattern(32 * kBlock, 11);
  absl::StatusOr<Fd> fd = OpenFile(dir_.File("f"), O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_TRUE(fd.ok()) << fd.status();
  for (uint32_t i = 0; i < 32; ++i) {
    ASSERT_TRUE(
        queue_->Submit(Write(fd->get(), data.data() + i * kBlock, kBlock, i * kBlock, i)).ok());
  }
  Completion c;
  ASSERT_TRUE(queue_->Reap(absl::MakeSpan(&c, 1), 0).ok());  // hand them to the kernel
  queue_.reset();  // must not return before every write is done
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(PreadFull(fd->get(), absl::MakeSpan(back), 0).ok());
  EXPECT_TRUE(back == data);
}

TEST_P(QueueTest, RunOneRefusesABusyQueue) {
  Fd fd = MakeFile("f", Pattern(4096, 1));
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE(queue_->Submit(Read(fd.get(), buf.data(), 4096, 0, 1)).ok());
  absl::StatusOr<int64_t> n = RunOne(*queue_, Read(fd.get(), buf.data(), 4096, 0, 2));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReapN(*queue_, 1).at(0).tag, 1u);
}

TEST_P(QueueTest, QueueMayBeUsedOnAnotherThreadThanItsMaker) {
  Fd fd = MakeFile("f", Pattern(4096, 12));
  std::vector<uint8_t> buf(4096);
  absl::StatusOr<int64_t> n;
  std::thread user([&] { n = RunOne(*queue_, Read(fd.get(), buf.data(), 4096, 0, 1)); });
  user.join();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4096);
  EXPECT_TRUE(buf == Pattern(4096, 12));
}

INSTANTIATE_TEST_SUITE_P(Backends, QueueTest, ::testing::Values(Backend::kUring, Backend::kThreads),
                         [](const ::testing::TestParamInfo<Backend>& param) {
                           return std::string(BackendName(param.param));
                         });

TEST(UringQueueTest, DestructorCancelsAReadThatWouldNeverFinish) {
  absl::StatusOr<std::unique_ptr<Queue>> queue = MakeUring(4);
  if (!queue.ok()) GTEST_SKIP() << "io_uring unavailable here: " << queue.status();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Fd reader(fds[0]);
  Fd writer(fds[1]);  // kept open: the read has no EOF coming
  uint8_t byte;
  ASSERT_TRUE((*queue)->Submit(Read(reader.get(), &byte, 1, 0, 1)).ok());
  Completion c;
  absl::StatusOr<size_t> got = (*queue)->Reap(absl::MakeSpan(&c, 1), 0);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(*got, 0u);
  const auto start = std::chrono::steady_clock::now();
  queue->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(UringQueueTest, ReapFromASecondThreadIsFailedPrecondition) {
  absl::StatusOr<std::unique_ptr<Queue>> made = MakeUring(4);
  if (!made.ok()) GTEST_SKIP() << "io_uring unavailable here: " << made.status();
  std::unique_ptr<Queue> queue = *std::move(made);
  TempDir dir;
  absl::StatusOr<Fd> fd = OpenFile(dir.File("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::vector<uint8_t> buf(100, 1);

  // The owner thread uses the queue first, then destroys it when told to.
  std::promise<void> used;
  std::promise<void> may_destroy;
  std::thread owner([&] {
    absl::StatusOr<int64_t> n = RunOne(*queue, Write(fd->get(), buf.data(), 100, 0, 1));
    EXPECT_TRUE(n.ok() && *n == 100);
    used.set_value();
    may_destroy.get_future().wait();
    queue.reset();
  });
  used.get_future().wait();
  absl::StatusOr<int64_t> n = RunOne(*queue, Write(fd->get(), buf.data(), 100, 100, 2));
  // A ring set up without SINGLE_ISSUER (older kernels) is not bound to a thread.
  if (!n.ok()) {
    EXPECT_EQ(n.status().code(), absl::StatusCode::kFailedPrecondition) << n.status();
    EXPECT_TRUE(absl::StrContains(n.status().message(), "thread")) << n.status();
  }
  may_destroy.set_value();
  owner.join();
}

TEST(MakeQueueTest, ParsesAndNamesBackends) {
  for (Backend b : {Backend::kAuto, Backend::kUring, Backend::kThreads}) {
    absl::StatusOr<Backend> parsed = ParseBackend(BackendName(b));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, b);
  }
  absl::StatusOr<Backend> bad = ParseBackend("epoll");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "epoll"));
}

TEST(MakeQueueTest, RejectsBadOptions) {
  for (Backend b : {Backend::kAuto, Backend::kUring, Backend::kThreads}) {
    EXPECT_EQ(MakeQueue(QueueOptions{b, 0, 4}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(MakeQueue(QueueOptions{b, 65536, 4}).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(MakeQueue(QueueOptions{Backend::kThreads, 8, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MakeQueueTest, AutoPrefersUringWhenAvailable) {
  absl::StatusOr<std::unique_ptr<Queue>> uring = MakeUring(8);
  absl::StatusOr<std::unique_ptr<Queue>> automatic = MakeQueue(QueueOptions{Backend::kAuto, 8, 4});
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ((*automatic)->backend(), uring.ok() ? Backend::kUring : Backend::kThreads);
  if (!uring.ok()) {
    EXPECT_EQ(uring.status().code(), absl::StatusCode::kUnavailable) << uring.status();
  }
}

TEST(MakeQueueTest, DisablingUringByEnvironmentFallsBackToThreads) {
  ScopedEnv env("CHUNKFERRY_DISABLE_URING", "1");
  absl::StatusOr<std::unique_ptr<Queue>> uring = MakeUring(8);
  ASSERT_FALSE(uring.ok());
  EXPECT_EQ(uring.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(uring.status().message(), "io_uring unavailable"))
      << uring.status();
  EXPECT_TRUE(absl::StrContains(uring.status().message(), "CHUNKFERRY_DISABLE_URING"))
      << uring.status();

  absl::StatusOr<std::unique_ptr<Queue>> queue = MakeQueue(QueueOptions{Backend::kAuto, 8, 2});
  ASSERT_TRUE(queue.ok()) << queue.status();
  ASSERT_EQ((*queue)->backend(), Backend::kThreads);
  // And the fallback does real I/O.
  TempDir dir;
  absl::StatusOr<Fd> fd = OpenFile(dir.File("f"), O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::vector<uint8_t> data = Pattern(5000, 13);
  absl::StatusOr<int64_t> n = RunOne(**queue, Write(fd->get(), data.data(), 5000, 0, 1));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5000);
  std::vector<uint8_t> back(5000);
  n = RunOne(**queue, Read(fd->get(), back.data(), 5000, 0, 2));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5000);
  EXPECT_TRUE(back == data);
}

TEST(MakeQueueTest, DisableVariableSetToZeroDisablesNothing) {
  absl::StatusOr<std::unique_ptr<Queue>> before = MakeUring(8);
  if (!before.ok()) GTEST_SKIP() << "io_uring unavailable here: " << before.status();
  ScopedEnv env("CHUNKFERRY_DISABLE_URING", "0");
  absl::StatusOr<std::unique_ptr<Queue>> queue = MakeQueue(QueueOptions{Backend::kAuto, 8, 2});
  ASSERT_TRUE(queue.ok()) << queue.status();
  EXPECT_EQ((*queue)->backend(), Backend::kUring);
}

}  // namespace
}  // namespace chunkferry::io
