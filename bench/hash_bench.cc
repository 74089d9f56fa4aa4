// Chunk ids (XXH3-128, unkeyed and keyed) per 4 KiB chunk, and the XXH3-64 record checksum.
#include <benchmark/benchmark.h>

#include <vector>

#include "codec/chunk_id.h"
#include "codec/internal/test_data.h"

namespace chunkferry::codec {
namespace {

// Hashes a 1 MiB buffer in chunks of state.range(0) bytes, one id per chunk.
void HashChunks(benchmark::State& state, const ChunkHasher& hasher) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> data = internal::RandomBytes(1 << 20, 2);
  for (auto _ : state) {
    for (size_t offset = 0; offset + chunk <= data.size(); offset += chunk) {
      benchmark::DoNotOptimize(hasher.Hash(absl::MakeConstSpan(data).subspan(offset, chunk)));
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (data.size() / chunk) * chunk));
}

void BM_ChunkIdUnkeyed(benchmark::State& state) { HashChunks(state, ChunkHasher()); }

void BM_ChunkIdKeyed(benchmark::State& state) {
  const absl::StatusOr<ChunkHasher> hasher = ChunkHasher::Make(internal::RandomBytes(32, 3));
  if (!hasher.ok()) {
    state.SkipWithError("ChunkHasher::Make failed");
    return;
  }
  HashChunks(state, *hasher);
}

void BM_Checksum64(benchmark::State& state) {
  const std::vector<uint8_t> data = internal::RandomBytes(static_cast<size_t>(state.range(0)), 4);
  for (auto _ : state) benchmark::DoNotOptimize(Checksum64(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}

BENCHMARK(BM_ChunkIdUnkeyed)->Arg(4096)->Arg(65536);
BENCHMARK(BM_ChunkIdKeyed)->Arg(4096)->Arg(65536);
BENCHMARK(BM_Checksum64)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace
}  // namespace chunkferry::codec
