// Sequential file reads through io::Queue: 1 MiB requests over a 256 MiB file at queue depth
// 1, 4 and 16, on both backends, buffered (page cache dropped before each pass, so the disk is
// read) and O_DIRECT. Bytes/s is the figure to compare.
//
// The file is made once in CHUNKFERRY_BENCH_DIR (env), else the build directory (compiled in),
// never /tmp, which may be tmpfs.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "io/buffer.h"
#include "io/fd.h"
#include "io/queue.h"

#ifndef CHUNKFERRY_BENCH_DIR
#define CHUNKFERRY_BENCH_DIR "."
#endif

namespace chunkferry::io {
namespace {

constexpr uint64_t kFileSize = uint64_t{256} << 20;
constexpr uint32_t kRequestSize = 1 << 20;

std::string BenchDir() {
  const char* dir = std::getenv("CHUNKFERRY_BENCH_DIR");
  return dir != nullptr && dir[0] != '\0' ? dir : CHUNKFERRY_BENCH_DIR;
}

// Returns the path of the benchmark file, writing it (non-zero, incompressible bytes) if it is
// missing or has the wrong size.
absl::StatusOr<std::string> BenchFile() {
  const std::string path = BenchDir() + "/queue_bench.data";
  {
    absl::StatusOr<Fd> existing = OpenFile(path, O_RDONLY);
    if (existing.ok()) {
      absl::StatusOr<uint64_t> size = FileSize(existing->get(), path);
      if (size.ok() && *size == kFileSize) return path;
    }
  }
  absl::StatusOr<Fd> fd = OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC);
  if (!fd.ok()) return fd.status();
  std::vector<uint8_t> block(kRequestSize);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (uint64_t offset = 0; offset < kFileSize; offset += block.size()) {
    for (uint8_t& b : block) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
    if (absl::Status s = PwriteFull(fd->get(), block, offset); !s.ok()) return s;
  }
  if (absl::Status s = Fsync(fd->get(), path); !s.ok()) return s;
  return path;
}

// Args: backend (as int), depth, direct (0/1).
void BM_SequentialRead(benchmark::State& state) {
  const auto backend = static_cast<Backend>(state.range(0));
  const auto depth = static_cast<unsigned>(state.range(1));
  const bool want_direct = state.range(2) != 0;

  absl::StatusOr<std::string> path = BenchFile();
  if (!path.ok()) {
    state.SkipWithError(std::string(path.status().message()).c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<Queue>> queue =
      MakeQueue(QueueOptions{backend, depth, depth});  // a thread per request in flight
  if (!queue.ok()) {
    state.SkipWithError(std::string(queue.status().message()).c_str());
    return;
  }
  bool direct = false;
  absl::StatusOr<Fd> fd =
      want_direct ? OpenMaybeDirect(*path, O_RDONLY, &direct) : OpenFile(*path, O_RDONLY);
  if (!fd.ok() || direct != want_direct) {
    state.SkipWithError(fd.ok() ? "O_DIRECT not supported here"
                                : std::string(fd.status().message()).c_str());
    return;
  }
  std::vector<AlignedBuffer> buffers;
  for (unsigned i = 0; i < depth; ++i) buffers.emplace_back(kRequestSize);
  std::vector<Completion> completions(depth);
  constexpr uint64_t kRequests = kFileSize / kRequestSize;

  for (auto _ : state) {
    if (!want_direct) {
      // Measure the disk, not the page cache.
      state.PauseTiming();
      ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_DONTNEED);
      state.ResumeTiming();
    }
    uint64_t next = 0;
    uint64_t done = 0;
    std::vector<unsigned> free_buffers;
    for (unsigned i = 0; i < depth; ++i) free_buffers.push_back(i);
    while (done < kRequests) {
      while (next < kRequests && !free_buffers.empty()) {
        const unsigned b = free_buffers.back();
        free_buffers.pop_back();
        const Request request{Request::Op::kRead,
                              fd->get(),
                              buffers[b].data(),
                              kRequestSize,
                              next * kRequestSize,
                              b,
                              -1};
        if (!(*queue)->Submit(request).ok()) {
          state.SkipWithError("Submit failed");
          return;
        }
        ++next;
      }
      absl::StatusOr<size_t> got = (*queue)->Reap(absl::MakeSpan(completions), 1);
      if (!got.ok()) {
        state.SkipWithError(std::string(got.status().message()).c_str());
        return;
      }
      for (size_t i = 0; i < *got; ++i) {
        if (completions[i].result != kRequestSize) {
          state.SkipWithError("short or failed read");
          return;
        }
        free_buffers.push_back(static_cast<unsigned>(completions[i].tag));
      }
      done += *got;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kFileSize));
  state.SetLabel(std::string(BackendName((*queue)->backend())) +
                 (want_direct ? " direct" : " buffered"));
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"backend", "depth", "direct"});
  for (Backend backend : {Backend::kUring, Backend::kThreads}) {
    for (int direct : {0, 1}) {
      for (int depth : {1, 4, 16}) b->Args({static_cast<int>(backend), depth, direct});
    }
  }
}

BENCHMARK(BM_SequentialRead)->Apply(Args)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace chunkferry::io
