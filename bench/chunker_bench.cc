// Chunk boundary finding: fixed-size and FastCDC, over incompressible data held in memory.
#include <benchmark/benchmark.h>

#include <vector>

#include "codec/chunker.h"
#include "codec/internal/test_data.h"

namespace chunkferry::codec {
namespace {

constexpr size_t kStreamSize = 16 << 20;

// Cuts a 16 MiB in-memory stream into chunks, as the importer does with each read window.
void CutStream(benchmark::State& state, std::string_view spec_text) {
  const absl::StatusOr<ChunkerSpec> spec = ChunkerSpec::Parse(spec_text);
  if (!spec.ok()) {
    state.SkipWithError(std::string(spec.status().message()).c_str());
    return;
  }
  const std::unique_ptr<Chunker> chunker = MakeChunker(*spec);
  const std::vector<uint8_t> data = internal::RandomBytes(kStreamSize, 1);
  size_t chunks = 0;
  for (auto _ : state) {
    absl::Span<const uint8_t> rest(data);
    chunks = 0;
    while (!rest.empty()) {
      const size_t cut = chunker->FindBoundary(rest, /*last=*/true);
      rest.remove_prefix(cut);
      ++chunks;
    }
    benchmark::DoNotOptimize(chunks);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
  state.counters["avg_chunk"] = static_cast<double>(data.size()) / static_cast<double>(chunks);
}

void BM_FixedChunker4K(benchmark::State& state) { CutStream(state, "fixed:4k"); }
void BM_FastCdc_2K_8K_64K(benchmark::State& state) { CutStream(state, "cdc:2k:8k:64k"); }
void BM_FastCdc_16K_64K_256K(benchmark::State& state) { CutStream(state, "cdc:16k:64k:256k"); }
void BM_FastCdc_256K_1M_4M(benchmark::State& state) { CutStream(state, "cdc:256k:1m:4m"); }

BENCHMARK(BM_FixedChunker4K);
BENCHMARK(BM_FastCdc_2K_8K_64K);
BENCHMARK(BM_FastCdc_16K_64K_256K);
BENCHMARK(BM_FastCdc_256K_1M_4M);

}  // namespace
}  // namespace chunkferry::codec
