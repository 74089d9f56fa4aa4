// Micro-benchmarks of the engine's hot paths: chunk index lookups (the dedupe question asked for
// every chunk) and pack appends (every fresh record), in bytes/s or items/s.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "codec/record.h"
#include "engine/local/chunk_index.h"
#include "engine/local/local_store.h"

namespace chunkferry::engine {
namespace {

std::vector<codec::ChunkId> RandomIds(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<codec::ChunkId> ids(n);
  for (auto& id : ids) id = codec::ChunkId{rng(), rng()};
  return ids;
}

void BM_IndexLookup(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const bool present = state.range(1) != 0;
  ChunkIndex index;
  const auto ids = RandomIds(n, 1);
  for (size_t i = 0; i < n; ++i) {
    index.Insert(ids[i], ChunkLocation{RecordLocation{1, 4096, i * 4096}, 0});
  }
  const auto probes = present ? ids : RandomIds(n, 2);
  size_t i = 0, hits = 0;
  for (auto _ : state) {
    hits += index.Contains(probes[i]);
    if (++i == probes.size()) i = 0;
  }
  benchmark::DoNotOptimize(hits);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_IndexLookup)->Args({1 << 20, 1})->Args({1 << 20, 0})->Args({1 << 23, 1});

// Appends 64 KiB raw records (random, so stored raw) and flushes them to disk.
void BM_PackAppend(benchmark::State& state) {
  const auto dir = std::filesystem::current_path() / ("bench-store-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  if (!LocalStore::Init(dir.string(), StoreInitOptions{}).ok()) {
    state.SkipWithError("store init failed");
    return;
  }
  LocalStoreOptions options;
  options.queue.backend = state.range(0) ? io::Backend::kUring : io::Backend::kThreads;
  auto store = LocalStore::Open(dir.string(), options);
  if (!store.ok()) {
    state.SkipWithError("store open failed (io_uring unavailable?)");
    return;
  }
  std::mt19937_64 rng(3);
  std::vector<uint8_t> raw(64 << 10);
  std::vector<uint8_t> record(codec::MaxRecordSize(16, raw.size()));
  constexpr size_t kRecordsPerFlush = 512;  // 32 MiB
  int64_t bytes = 0;
  for (auto _ : state) {
    for (size_t r = 0; r < kRecordsPerFlush; ++r) {
      for (auto& b : raw) b = static_cast<uint8_t>(rng());
      std::vector<codec::ChunkRef> refs;
      std::vector<absl::Span<const uint8_t>> parts;
      for (size_t c = 0; c < 16; ++c) {
        refs.push_back(codec::ChunkRef{codec::ChunkId{rng(), rng()}, 4096});
        parts.push_back(absl::MakeConstSpan(raw.data() + c * 4096, 4096));
      }
      auto size = codec::EncodeRecord(refs, parts, nullptr, absl::MakeSpan(record));
      auto view = codec::ParseRecord(absl::MakeConstSpan(record.data(), *size));
      if (!(*store)->AppendRecord(absl::MakeConstSpan(record.data(), *size), *view).ok()) {
        state.SkipWithError("append failed");
        return;
      }
      bytes += static_cast<int64_t>(*size);
    }
    if (!(*store)->Flush().ok()) {
      state.SkipWithError("flush failed");
      return;
    }
  }
  state.SetBytesProcessed(bytes);
  (void)(*store)->Close();
  store->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_PackAppend)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("uring")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace chunkferry::engine
