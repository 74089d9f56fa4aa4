// Fuzzes opening the chunk index (engine/local/chunk_index.h) read-only, as `verify`, `ls` and a
// daemon's readers do: ChunkIndex::Open on a directory whose STATE file is the input, then
// lookups, ForEach, CheckRuns and the record table behind them.
//
// Input: up to three parts separated by kSplitMarker (tests/fuzz/fuzz_util.h):
//   0. the STATE file;
//   1. optional: the bytes of run 3 (0000000000000003.run);
//   2. optional: the record table ("records"); absent, a valid table of kFixedRecords slots.
// The directory also holds two valid runs written once by IndexRunWriter (ids 1 and 2, with
// kFixedRun1Entries and kFixedRun2Entries entries naming records below kFixedRecords), so a STATE
// that names them opens. Each input is opened as given, and again with STATE's counts made to
// fit its size and its checksum recomputed, run 3's header fixed (FixRunHeader) and every record
// slot's check recomputed.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/local/chunk_index.h"
#include "engine/local/index_run.h"
#include "engine/local/record_table.h"
#include "io/fd.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

std::string IndexDir() { return ScratchDir() + "/index"; }
std::string RunPath(uint64_t id) { return absl::StrFormat("%s/%016x.run", IndexDir(), id); }

void WriteFixedRun(uint64_t run_id, size_t count) {
  std::vector<engine::IndexEntry> entries;
  for (size_t i = 0; i < count; ++i) {
    const codec::ChunkId id = FixedIndexId(run_id, i);
    entries.push_back(engine::IndexEntry{id.hi, id.lo, static_cast<uint32_t>(i % kFixedRecords),
                                         static_cast<uint16_t>(i % 7), 0});
  }
  std::sort(entries.begin(), entries.end());
  auto w = engine::IndexRunWriter::Create(RunPath(run_id), count, run_id);
  FUZZ_CHECK(w.ok());
  for (const auto& e : entries) FUZZ_CHECK((*w)->Add(e).ok());
  FUZZ_CHECK((*w)->Finish().ok());
}

// The default record table: kFixedRecords valid slots, made by RecordTable itself.
const std::string& DefaultRecords() {
  static const std::string bytes = [] {
    const std::string path = ScratchDir() + "/records.default";
    engine::RecordTable t = engine::RecordTable::Fresh(path);
    for (uint32_t i = 0; i < kFixedRecords; ++i) {
      t.Append(engine::RecordLocation{1 + i / 100, 1000 + i, uint64_t{32} + i * 4096});
    }
    FUZZ_CHECK(t.Persist().ok());
    auto b = io::ReadFileToString(path);
    FUZZ_CHECK(b.ok());
    return *b;
  }();
  return bytes;
}

void Setup() {
  static const bool done = [] {
    FUZZ_CHECK(::mkdir(IndexDir().c_str(), 0755) == 0);
    WriteFixedRun(1, kFixedRun1Entries);
    WriteFixedRun(2, kFixedRun2Entries);
    DefaultRecords();
    return true;
  }();
  (void)done;
}

// Makes STATE's run and pack counts fit its size, then recomputes its checksum.
void FixState(std::vector<uint8_t>* state) {
  constexpr size_t kFixed = 32;
  if (state->size() < kFixed + 8) return;
  std::memcpy(state->data(), "CFIS", 4);
  const size_t rest = state->size() - 8 - kFixed;
  const uint64_t runs = std::min<uint64_t>(engine::LoadU32(state->data() + 24), rest / 16);
  const uint64_t packs = (rest - runs * 16) / 12;
  engine::StoreU32(state->data() + 24, static_cast<uint32_t>(runs));
  engine::StoreU32(state->data() + 28, static_cast<uint32_t>(packs));
  state->resize(kFixed + runs * 16 + packs * 12 + 8);
  FixTailChecksum(absl::MakeSpan(*state));
}

void Exercise(const std::vector<uint8_t>& state, const std::optional<std::vector<uint8_t>>& run3,
              const std::optional<std::vector<uint8_t>>& records, bool small_cache) {
  WriteFile(IndexDir() + "/STATE", state);
  if (run3.has_value()) {
    WriteFile(RunPath(3), *run3);
  } else {
    ::unlink(RunPath(3).c_str());
  }
  if (records.has_value()) {
    WriteFile(IndexDir() + "/records", *records);
  } else {
    WriteFile(IndexDir() + "/records", DefaultRecords());
  }

  engine::ChunkIndexOptions options;
  if (small_cache) options.cached_entries_bytes = 0;  // Find reads buckets, not memory
  std::string problem;
  auto opened = engine::ChunkIndex::Open(IndexDir(), options, /*writable=*/false, &problem);
  FUZZ_CHECK(opened.ok());  // damage is a problem to report, never an error
  Note(
      "ChunkIndex::Open problem",
      absl::Status(problem.empty() ? absl::StatusCode::kOk : absl::StatusCode::kDataLoss, problem));
  engine::ChunkIndex& index = *opened;
  if (!problem.empty()) {
    // Refused: an empty index in memory, to be rebuilt from the packs.
    FUZZ_CHECK(index.size() == 0 && index.run_count() == 0 && index.record_count() == 0);
    FUZZ_CHECK(index.coverage().empty());
    return;
  }
  for (const auto& [pack, covered] : index.coverage()) (void)pack, (void)covered;
  for (size_t n = 0; n < index.record_count() && n < 600; ++n) (void)index.record(n);

  std::vector<codec::ChunkId> ids;
  size_t listed = 0;
  FUZZ_CHECK(index
                 .ForEach([&](const codec::ChunkId& id, const engine::ChunkLocation&) {
                   ++listed;
                   if (ids.size() < 2048) ids.push_back(id);
                 })
                 .ok());
  FUZZ_CHECK(listed == index.size());
  const absl::Status runs_checked = index.CheckRuns();
  Note("CheckRuns", runs_checked);
  const bool runs_ok = runs_checked.ok();
  // Ids nobody put there, next to the listed ones.
  const size_t listed_ids = ids.size();
  for (size_t i = 0; i < listed_ids && i < 64; ++i) ids.push_back({ids[i].lo + 1, ids[i].hi});
  std::vector<std::optional<engine::ChunkLocation>> found(ids.size());
  index.FindAll(ids, absl::MakeSpan(found));
  std::vector<bool> contains;
  index.ContainsAll(ids, &contains);
  std::vector<int64_t> numbers(ids.size());
  index.FindRecordNumbers(ids, absl::MakeSpan(numbers));
  for (size_t i = 0; i < ids.size(); ++i) {
    FUZZ_CHECK(found[i].has_value() == contains[i]);
    FUZZ_CHECK(contains[i] == (numbers[i] >= 0));
    FUZZ_CHECK(index.Contains(ids[i]) == contains[i]);
    const auto one = index.Find(ids[i]);
    FUZZ_CHECK(one.has_value() == contains[i]);
    if (one.has_value()) {
      FUZZ_CHECK(one->record == found[i]->record && one->slot == found[i]->slot);
    }
    // Checked runs find what they list (Find reads buckets of up to 65536 entries).
    if (runs_ok && i < listed_ids && index.size() <= 65536) FUZZ_CHECK(contains[i]);
  }
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size > (4u << 20)) return 0;
  Setup();
  const auto parts = SplitInput(absl::MakeConstSpan(data, size));
  std::vector<uint8_t> state(parts[0].begin(), parts[0].end());
  std::optional<std::vector<uint8_t>> run3, records;
  if (parts.size() > 1) run3.emplace(parts[1].begin(), parts[1].end());
  if (parts.size() > 2) records.emplace(parts[2].begin(), parts[2].end());
  const bool small_cache = (size & 1) != 0;
  Exercise(state, run3, records, small_cache);

  FixState(&state);
  if (run3.has_value()) FixRunHeader(&*run3, 3);
  if (records.has_value()) FixSlots(absl::MakeSpan(*records));
  Exercise(state, run3, records, small_cache);
  return 0;
}
