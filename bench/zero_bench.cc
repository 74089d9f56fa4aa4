// Zero-chunk detection on 4 KiB chunks: all zero (full scan), non-zero at the start (the usual
// early exit) and non-zero only in the last byte (the worst case).
#include <benchmark/benchmark.h>

#include <vector>

#include "codec/internal/test_data.h"
#include "codec/zero.h"

namespace chunkferry::codec {
namespace {

constexpr size_t kChunk = 4096;
constexpr size_t kChunks = 256;  // 1 MiB per pass

void Scan(benchmark::State& state, const std::vector<uint8_t>& data) {
  for (auto _ : state) {
    size_t zero = 0;
    for (size_t offset = 0; offset < data.size(); offset += kChunk) {
      zero += IsAllZero(absl::MakeConstSpan(data).subspan(offset, kChunk)) ? 1 : 0;
    }
    benchmark::DoNotOptimize(zero);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}

void BM_IsAllZero4KZero(benchmark::State& state) {
  Scan(state, std::vector<uint8_t>(kChunk * kChunks, 0));
}

void BM_IsAllZero4KRandom(benchmark::State& state) {
  Scan(state, internal::RandomBytes(kChunk * kChunks, 6));
}

void BM_IsAllZero4KLastByteSet(benchmark::State& state) {
  std::vector<uint8_t> data(kChunk * kChunks, 0);
  for (size_t offset = kChunk - 1; offset < data.size(); offset += kChunk) data[offset] = 1;
  Scan(state, data);
}

BENCHMARK(BM_IsAllZero4KZero);
BENCHMARK(BM_IsAllZero4KRandom);
BENCHMARK(BM_IsAllZero4KLastByteSet);

}  // namespace
}  // namespace chunkferry::codec
