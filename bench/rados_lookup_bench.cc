// Batched have-queries against a RADOS store's chunk index of many chunks: how many ids per
// second RadosStore::HaveChunks answers, the way the copier asks (16384 ids per call, half of them
// held). Not a Google Benchmark: filling the index is most of the run and is timed too.
//
//   rados_lookup_bench --ceph-conf DIR/ceph.conf --chunks 10000000 [--batches 64] [--shards 64]
//
// Makes a store in a fresh namespace of pool `chunkferry`, fills its index shards directly with
// `--chunks` entries of random ids (the layout's own encoders, 64 shards written in parallel, 4 k
// entries per omap_set), then times --batches HaveChunks calls. Prints one JSON object.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/rados/rados_aio.h"
#include "engine/rados/rados_store.h"

namespace {

using namespace chunkferry;  // NOLINT: a benchmark's main
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

codec::ChunkId IdOf(uint64_t n) {
  // Deterministic, uniform: n-th id of the fill.
  std::mt19937_64 g(n * 0x9e3779b97f4a7c15ull + 1);
  return codec::ChunkId{g(), g()};
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "rados_lookup_bench: %s\n", std::string(st.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string conf;
  uint64_t chunks = 1'000'000, batches = 64, shards = engine::rados::kDefaultIndexShards;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    bool ok = true;
    if (flag == "--ceph-conf") {
      conf = value;
    } else if (flag == "--chunks") {
      ok = absl::SimpleAtoi(value, &chunks);
    } else if (flag == "--batches") {
      ok = absl::SimpleAtoi(value, &batches);
    } else if (flag == "--shards") {
      ok = absl::SimpleAtoi(value, &shards);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "usage: %s --ceph-conf FILE [--chunks N] [--batches N] [--shards N]\n",
                   argv[0]);
      return 2;
    }
  }
  engine::rados::RadosUrl url{"chunkferry", absl::StrCat("lookup-", engine::NewUuid())};
  engine::rados::RadosClientOptions client;
  client.conf_path = conf;
  client.timeout_ms = 120'000;
  engine::StoreInitOptions init;
  engine::rados::RadosInitOptions rinit;
  rinit.index_shards = static_cast<uint32_t>(shards);
  if (absl::Status st = engine::rados::RadosStore::Init(url, client, init, rinit); !st.ok()) {
    return Fail(st);
  }
  engine::rados::RadosStoreOptions o;
  o.client = client;
  o.writable = false;
  auto store = engine::rados::RadosStore::Open(url, o);
  if (!store.ok()) return Fail(store.status());
  librados::IoCtx& io = (*store)->rados().io();

  // Fill: per round, up to 4 k entries for each shard, all shards in flight.
  const auto fill_start = Clock::now();
  constexpr uint64_t kPerOp = 4'000;
  // One value for every entry, shared: a bufferlist appended to would take a page per entry.
  std::string value = engine::rados::EncodeIndexValue({1, 4096, 32});
  for (uint64_t next = 0; next < chunks;) {
    std::vector<std::map<std::string, librados::bufferlist>> by_shard(shards);
    const uint64_t end = std::min(chunks, next + kPerOp * shards);
    for (; next < end; ++next) {
      const codec::ChunkId id = IdOf(next);
      by_shard[engine::rados::IndexShard(id, static_cast<uint32_t>(shards))]
              [engine::rados::IndexKey(id)] =
                  librados::bufferlist::static_from_mem(value.data(), value.size());
    }
    std::vector<engine::rados::Aio> writes(shards);
    for (uint32_t s = 0; s < shards; ++s) {
      if (by_shard[s].empty()) continue;
      librados::ObjectWriteOperation op;
      op.omap_set(by_shard[s]);
      writes[s].Submit([&](librados::AioCompletion* c) {
        return io.aio_operate(engine::rados::IndexObject(s), c, &op);
      });
    }
    for (auto& w : writes) {
      if (const int r = w.Wait(); r < 0) {
        return Fail(engine::rados::RadosError(r, "fill", "index", url.ToString()));
      }
    }
  }
  const double fill_s = Since(fill_start);

  // Query: batches of 16384 ids, every other one held.
  constexpr size_t kBatch = 16384;
  std::mt19937_64 pick(7);
  std::vector<codec::ChunkId> ids(kBatch);
  std::vector<bool> have;
  uint64_t held = 0;
  const auto query_start = Clock::now();
  for (uint64_t b = 0; b < batches; ++b) {
    for (size_t i = 0; i < kBatch; ++i) {
      ids[i] = i % 2 == 0 ? IdOf(pick() % chunks) : codec::ChunkId{pick(), pick()};
    }
    if (absl::Status st = (*store)->HaveChunks(ids, &have); !st.ok()) return Fail(st);
    for (bool h : have) held += h ? 1 : 0;
  }
  const double query_s = Since(query_start);
  const uint64_t asked = batches * kBatch;
  if (held != asked / 2) {
    std::fprintf(stderr, "rados_lookup_bench: %llu of %llu ids held, expected half\n",
                 static_cast<unsigned long long>(held), static_cast<unsigned long long>(asked));
    return 1;
  }
  std::printf(
      "{\"chunks\": %llu, \"shards\": %llu, \"fill_seconds\": %.2f, \"fill_entries_per_s\": %.0f, "
      "\"ids_asked\": %llu, \"query_seconds\": %.3f, \"ids_per_s\": %.0f}\n",
      static_cast<unsigned long long>(chunks), static_cast<unsigned long long>(shards), fill_s,
      static_cast<double>(chunks) / fill_s, static_cast<unsigned long long>(asked), query_s,
      static_cast<double>(asked) / query_s);
  return 0;
}
