// Records of 16 x 4 KiB chunks: encode (zstd level 1, raw fallback) and decode (with and
// without full id verification), on text-like, binary-like and random data. Bytes are raw bytes.
#include <benchmark/benchmark.h>

#include <vector>

#include "codec/chunk_id.h"
#include "codec/compressor.h"
#include "codec/internal/test_data.h"
#include "codec/record.h"

namespace chunkferry::codec {
namespace {

constexpr size_t kChunks = 16;
constexpr size_t kChunkSize = 4096;
constexpr size_t kRecordRaw = kChunks * kChunkSize;
// Distinct records per pass, so one record is not served hot from L1 every time.
constexpr size_t kRecordsPerPass = 64;

enum DataKind : int64_t { kText = 0, kBinary = 1, kRandom = 2 };

std::vector<uint8_t> MakeData(int64_t kind) {
  constexpr size_t size = kRecordRaw * kRecordsPerPass;
  if (kind == kText) return internal::TextLikeBytes(size, 5);
  if (kind == kBinary) return internal::BinaryLikeBytes(size, 5);
  return internal::RandomBytes(size, 5);
}

const char* KindName(int64_t kind) {
  return kind == kText ? "text" : kind == kBinary ? "binary" : "random";
}

struct Records {
  std::vector<uint8_t> data;
  std::vector<std::vector<ChunkRef>> refs;
  std::vector<std::vector<absl::Span<const uint8_t>>> chunks;
  std::vector<std::vector<uint8_t>> encoded;
  size_t stored = 0;
};

Records MakeRecords(int64_t kind, Compressor& compressor) {
  Records r;
  r.data = MakeData(kind);
  const ChunkHasher hasher;
  for (size_t i = 0; i < kRecordsPerPass; ++i) {
    std::vector<ChunkRef> refs;
    std::vector<absl::Span<const uint8_t>> chunks;
    for (size_t c = 0; c < kChunks; ++c) {
      const auto chunk =
          absl::MakeConstSpan(r.data).subspan((i * kChunks + c) * kChunkSize, kChunkSize);
      chunks.push_back(chunk);
      refs.push_back({hasher.Hash(chunk), kChunkSize});
    }
    std::vector<uint8_t> out(MaxRecordSize(kChunks, kRecordRaw));
    const absl::StatusOr<size_t> size =
        EncodeRecord(refs, chunks, &compressor, absl::MakeSpan(out));
    out.resize(size.ok() ? *size : 0);
    r.stored += out.size();
    r.refs.push_back(std::move(refs));
    r.chunks.push_back(std::move(chunks));
    r.encoded.push_back(std::move(out));
  }
  return r;
}

void BM_EncodeRecord(benchmark::State& state) {
  Compressor compressor(1);
  const Records r = MakeRecords(state.range(0), compressor);
  std::vector<uint8_t> out(MaxRecordSize(kChunks, kRecordRaw));
  for (auto _ : state) {
    for (size_t i = 0; i < kRecordsPerPass; ++i) {
      const absl::StatusOr<size_t> size =
          EncodeRecord(r.refs[i], r.chunks[i], &compressor, absl::MakeSpan(out));
      if (!size.ok()) {
        state.SkipWithError("EncodeRecord failed");
        break;
      }
      benchmark::DoNotOptimize(*size);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRecordsPerPass * kRecordRaw));
  state.SetLabel(KindName(state.range(0)));
  state.counters["ratio"] =
      static_cast<double>(kRecordsPerPass * kRecordRaw) / static_cast<double>(r.stored);
}

void DecodeRecords(benchmark::State& state, bool verify) {
  Compressor compressor(1);
  const Records r = MakeRecords(state.range(0), compressor);
  Decompressor decompressor;
  const ChunkHasher hasher;
  std::vector<uint8_t> raw(kRecordRaw);
  for (auto _ : state) {
    for (size_t i = 0; i < kRecordsPerPass; ++i) {
      const absl::StatusOr<RecordView> view = ParseRecord(r.encoded[i]);
      if (!view.ok() ||
          !DecodeRecord(*view, decompressor, verify ? &hasher : nullptr, absl::MakeSpan(raw))
               .ok()) {
        state.SkipWithError("decode failed");
        break;
      }
      benchmark::DoNotOptimize(raw.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRecordsPerPass * kRecordRaw));
  state.SetLabel(KindName(state.range(0)));
}

void BM_DecodeRecord(benchmark::State& state) { DecodeRecords(state, /*verify=*/false); }
void BM_DecodeRecordVerifyIds(benchmark::State& state) { DecodeRecords(state, /*verify=*/true); }

// The Compressor alone on one contiguous 64 KiB input (no record around it).
void BM_ZstdCompress64K(benchmark::State& state) {
  Compressor compressor(1);
  const std::vector<uint8_t> data = MakeData(state.range(0));
  std::vector<uint8_t> out(CompressBound(kRecordRaw));
  size_t stored = 0;
  for (auto _ : state) {
    stored = 0;
    for (size_t i = 0; i < kRecordsPerPass; ++i) {
      const absl::Span<const uint8_t> in =
          absl::MakeConstSpan(data).subspan(i * kRecordRaw, kRecordRaw);
      const absl::StatusOr<size_t> size = compressor.Compress({in}, absl::MakeSpan(out));
      stored += size.ok() ? *size : 0;
    }
    benchmark::DoNotOptimize(stored);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRecordsPerPass * kRecordRaw));
  state.SetLabel(KindName(state.range(0)));
  state.counters["ratio"] =
      static_cast<double>(kRecordsPerPass * kRecordRaw) / static_cast<double>(stored);
}

BENCHMARK(BM_EncodeRecord)->Arg(kText)->Arg(kBinary)->Arg(kRandom);
BENCHMARK(BM_DecodeRecord)->Arg(kText)->Arg(kBinary)->Arg(kRandom);
BENCHMARK(BM_DecodeRecordVerifyIds)->Arg(kText)->Arg(kBinary)->Arg(kRandom);
BENCHMARK(BM_ZstdCompress64K)->Arg(kText)->Arg(kBinary);

}  // namespace
}  // namespace chunkferry::codec
