// Fuzzes one sorted run of the chunk index (engine/local/index_run.h): IndexRun::Open on a file
// holding the input, then Check, lookups (from the file and from memory) and a scan, as a store
// opens the runs its index STATE names.
//
// The run id Open expects is the one the header names. Each input is opened as given and again
// with its header made consistent: the entry count set to what the file's size allows for the
// header's bucket count (the file cut to a whole entry), then the header checksum recomputed.
// For a run that passes Check, every entry must be found with its record and slot (by reads and
// from memory) and ids next to them must not be.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/local/index_run.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

constexpr size_t kHeaderSize = kRunHeaderSize;

// Looks up `id` both ways it can be: MayHave, then Find.
bool Lookup(const engine::IndexRun& run, const codec::ChunkId& id, engine::IndexEntry* e) {
  run.Prefetch(id);
  run.PrefetchEntry(id);
  const bool may = run.MayHave(id);
  const bool found = run.Find(id, e);
  if (found) FUZZ_CHECK(e->Is(id));
  return may && found;
}

void Exercise(const std::vector<uint8_t>& file) {
  if (file.size() < kHeaderSize) return;
  const std::string path = ScratchDir() + "/input.run";
  WriteFile(path, file);
  const uint64_t id = engine::LoadU64(file.data() + 28);
  auto opened = engine::IndexRun::Open(path, id);
  Note("IndexRun::Open", opened.status());
  if (!opened.ok()) return;
  engine::IndexRun& run = **opened;
  FUZZ_CHECK(run.id() == id && run.entries() <= file.size() / 24);
  const uint64_t buckets = engine::LoadU64(file.data() + 20);
  const uint64_t data_offset = RunDataOffset(buckets);
  FUZZ_CHECK(data_offset + run.entries() * 24 == file.size());

  std::vector<engine::IndexEntry> entries(run.entries());
  if (!entries.empty()) {
    std::memcpy(entries.data(), file.data() + data_offset, entries.size() * 24);
  }
  // The scanner reads what the file holds, in order.
  auto scanner = engine::IndexRunScanner::Open(run);
  FUZZ_CHECK(scanner.ok());
  for (const auto& want : entries) {
    engine::IndexEntry e;
    auto more = scanner->Next(&e);
    FUZZ_CHECK(more.ok() && *more);
    FUZZ_CHECK(std::memcmp(&e, &want, sizeof(e)) == 0);
  }
  engine::IndexEntry past;
  auto end = scanner->Next(&past);
  FUZZ_CHECK(end.ok() && !*end);

  const absl::Status check = run.Check();
  Note("Check", check);
  const bool checked = check.ok();
  // Every bucket of a checked run holds the entries BucketOf puts there, sorted: Find reads a
  // bucket of up to 65536 entries.
  std::set<std::pair<uint64_t, uint64_t>> present;
  std::map<uint64_t, size_t> per_bucket;
  for (const auto& e : entries) {
    present.emplace(e.hi, e.lo);
    ++per_bucket[engine::BucketOf(e.hi, buckets)];
  }
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) run.CacheEntries(true);  // then Find searches memory
    for (size_t i = 0; i < entries.size() && i < 4096; ++i) {
      const engine::IndexEntry& want = entries[i];
      engine::IndexEntry got;
      const bool found = Lookup(run, want.id(), &got);
      if (checked && per_bucket[engine::BucketOf(want.hi, buckets)] <= 65536) {
        FUZZ_CHECK(found);
        FUZZ_CHECK(got.record == want.record && got.slot == want.slot);
      }
      // An id the run does not hold is never found, damaged or not.
      codec::ChunkId other = want.id();
      other.lo += 1;
      if (!present.count({other.hi, other.lo})) FUZZ_CHECK(!run.Find(other, &got));
    }
    // Ids from the file's other bytes: present only if the run holds them.
    for (size_t off = 0; off + 16 <= file.size() && off < 4096; off += 16) {
      const codec::ChunkId probe = codec::ChunkId::DecodeFrom(file.data() + off);
      engine::IndexEntry got;
      if (run.Find(probe, &got)) FUZZ_CHECK(present.count({probe.hi, probe.lo}));
    }
  }
  run.DropResidentPages();
  FUZZ_CHECK(run.cache_tried());
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size > (4u << 20)) return 0;
  std::vector<uint8_t> file = Bytes(data, size);
  Exercise(file);
  if (FixRunHeader(&file, std::nullopt)) Exercise(file);
  return 0;
}
