// The chunk index at scale: inserts N random ids in import order (records of 16 chunks, saved
// whenever the memtable fills, as a store does), reopens the index, then asks batched have-
// questions for absent and present ids. Prints one JSON object: rates, open time and the
// process's peak RSS. Not a Google Benchmark: peak RSS and open time are per process.
//
//   index_bench --dir DIR --entries 10000000 [--lookups 4000000] [--batch 4096]
//               [--memtable ENTRIES] [--mapped-mb MB] [--reuse 1]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "engine/local/chunk_index.h"

namespace chunkferry::engine {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
// Uniform like the hashes they stand for; id(n) for n ≥ entries are absent.
codec::ChunkId Id(uint64_t n) {
  return codec::ChunkId{SplitMix(n), SplitMix(n ^ 0x5555555555555555ULL)};
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}
long PeakRssKiB() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}
[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "index_bench: %s\n", why.c_str());
  std::exit(1);
}

int Main(int argc, char** argv) {
  std::string dir;
  uint64_t entries = 10'000'000, lookups = 4'000'000, batch = 4096, reuse = 0;
  ChunkIndexOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    uint64_t v = 0;
    if (flag == "--dir") {
      dir = value;
      continue;
    }
    if (!absl::SimpleAtoi(value, &v)) Fail("bad number for " + flag);
    if (flag == "--entries")
      entries = v;
    else if (flag == "--lookups")
      lookups = v;
    else if (flag == "--reuse")
      reuse = v;
    else if (flag == "--batch")
      batch = v;
    else if (flag == "--memtable")
      options.memtable_entries = v;
    else if (flag == "--mapped-mb")
      options.mapped_bytes_max = v << 20;
    else
      Fail("unknown flag " + flag);
  }
  if (dir.empty() || batch == 0) Fail("usage: index_bench --dir DIR [--entries N] ...");
  // --reuse 1: measure lookups on the index an earlier run left in DIR (same --entries).
  const bool insert = reuse == 0 || !std::filesystem::exists(dir + "/STATE");
  if (insert) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  std::string problem;

  // Insert, saving as a store does (a save is what bounds the memtable).
  auto t = std::chrono::steady_clock::now();
  uint64_t saves = 0;
  if (insert) {
    auto index = ChunkIndex::Open(dir, options, true, &problem);
    if (!index.ok()) Fail(std::string(index.status().message()));
    for (uint64_t n = 0; n < entries; ++n) {
      const uint64_t record = n / 16;
      const ChunkLocation loc{RecordLocation{static_cast<uint32_t>(1 + record / 16384), 65536,
                                             (record % 16384) * 65536},
                              static_cast<uint16_t>(n % 16)};
      if (!index->Insert(Id(n), loc)) Fail("an absent id was found while inserting");
      if (index->WantsSave()) {
        if (!index->Save().ok()) Fail("save failed");
        ++saves;
      }
    }
    if (!index->Save().ok()) Fail("save failed");
  }
  const double insert_s = Seconds(t);
  const long insert_rss = PeakRssKiB();

  t = std::chrono::steady_clock::now();
  auto index = ChunkIndex::Open(dir, options, false, &problem);
  const double open_ms = Seconds(t) * 1e3;
  if (!index.ok() || !problem.empty()) Fail("reopen: " + problem);
  if (index->size() != entries) Fail("reopened index holds the wrong count");

  std::vector<codec::ChunkId> ids(batch);
  std::vector<bool> have;
  auto run = [&](bool present) {
    uint64_t wrong = 0, x = present ? 1 : 2;
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t done = 0; done < lookups; done += batch) {
      for (auto& id : ids) {
        x = SplitMix(x);
        id = present ? Id(x % entries) : Id(entries + x % (uint64_t{1} << 62));
      }
      index->ContainsAll(ids, &have);
      for (bool h : have) wrong += h != present;
    }
    if (wrong != 0) Fail(present ? "present ids not found" : "absent ids found");
    return static_cast<double>(lookups) / Seconds(start);
  };
  const double absent_rate = run(false);
  const double present_rate = run(true);

  uint64_t index_bytes = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) index_bytes += f.file_size();
  std::printf(
      "{\"entries\": %llu, \"insert_per_s\": %.0f, \"insert_s\": %.1f, \"saves\": %llu, "
      "\"runs\": %zu, \"open_ms\": %.2f, \"absent_per_s\": %.0f, \"present_per_s\": %.0f, "
      "\"batch\": %llu, \"peak_rss_mib_after_insert\": %.1f, \"peak_rss_mib\": %.1f, "
      "\"index_mib\": %.1f}\n",
      static_cast<unsigned long long>(entries),
      insert ? static_cast<double>(entries) / insert_s : 0.0, insert_s,
      static_cast<unsigned long long>(saves), index->run_count(), open_ms, absent_rate,
      present_rate, static_cast<unsigned long long>(batch), insert_rss / 1024.0,
      PeakRssKiB() / 1024.0, static_cast<double>(index_bytes) / (1 << 20));
  return 0;
}

}  // namespace
}  // namespace chunkferry::engine

int main(int argc, char** argv) { return chunkferry::engine::Main(argc, argv); }
