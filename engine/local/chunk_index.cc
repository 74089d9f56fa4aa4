#include "engine/local/chunk_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "engine/format/byte_io.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr char kStateMagic[4] = {'C', 'F', 'I', 'S'};
constexpr uint16_t kStateVersion = 1;
constexpr char kStateFile[] = "STATE";
constexpr char kRecordsFile[] = "records";
constexpr char kRunSuffix[] = ".run";
// The snapshot of earlier versions (one file, loaded whole): an index that finds it rebuilds
// from the packs and removes it.
constexpr char kLegacySnapshot[] = "chunks.idx";
// How many lookups pass between two looks at the resident set (the mapped filters and bucket
// tables, ~1.3 bytes an entry, which only a store of more than ~100 M chunks fills).
constexpr uint64_t kTrimCheckEvery = 16384;
// How many ids ahead batched lookups prefetch: enough to cover a memory latency.
constexpr size_t kPrefetchAhead = 8;

struct SavedState {
  uint64_t next_run_id = 1;
  uint64_t records = 0;
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // id, entries
  std::map<uint32_t, uint64_t> coverage;
};

absl::StatusOr<SavedState> ParseState(const std::string& data, const std::string& path) {
  auto damaged = [&path](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("index state ", path, " is damaged: ", why));
  };
  constexpr size_t kFixed = 4 + 2 + 2 + 8 + 8 + 4 + 4;
  if (data.size() < kFixed + 8 || std::memcmp(data.data(), kStateMagic, 4) != 0) {
    return damaged("bad magic or too short");
  }
  const absl::string_view body(data.data(), data.size() - 8);
  if (codec::Checksum64(AsBytes(body)) !=
      LoadU64(reinterpret_cast<const uint8_t*>(data.data() + body.size()))) {
    return damaged("checksum mismatch");
  }
  ByteReader r(body);
  r.Take(4);
  if (r.U16() != kStateVersion) return damaged("unknown version");
  r.U16();
  SavedState s;
  s.next_run_id = r.U64();
  s.records = r.U64();
  const uint64_t runs = r.U32();
  const uint64_t packs = r.U32();
  if (!r.ok() || runs * 16 + packs * 12 != r.remaining()) return damaged("sizes do not add up");
  for (uint64_t i = 0; i < runs; ++i) {
    const uint64_t id = r.U64();
    s.runs.emplace_back(id, r.U64());
  }
  for (uint64_t i = 0; i < packs; ++i) {
    const uint32_t pack = r.U32();
    s.coverage[pack] = r.U64();
  }
  return s;
}

// Pages of file-backed memory the process has resident (mapped files: the index's runs and
// record table, and the program's own code). 0 when unknown.
uint64_t ResidentFileBytes() {
  FILE* f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0, shared = 0;
  const int n = std::fscanf(f, "%lu %lu %lu", &size, &resident, &shared);
  std::fclose(f);
  return n == 3 ? uint64_t{shared} * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

ChunkIndex::ChunkIndex() = default;
ChunkIndex::~ChunkIndex() = default;
ChunkIndex::ChunkIndex(ChunkIndex&&) noexcept = default;
ChunkIndex& ChunkIndex::operator=(ChunkIndex&&) noexcept = default;

std::string ChunkIndex::RunPath(uint64_t id) const {
  return absl::StrFormat("%s/%016x%s", dir_, id, kRunSuffix);
}

absl::StatusOr<ChunkIndex> ChunkIndex::Open(const std::string& dir,
                                            const ChunkIndexOptions& options, bool writable,
                                            std::string* problem) {
  problem->clear();
  ChunkIndex index;
  index.dir_ = dir;  // for RunPath
  index.options_ = options;
  index.writable_ = writable;
  const std::string state_path = absl::StrCat(dir, "/", kStateFile);
  if (writable && ::access(dir.c_str(), F_OK) != 0) {
    // Removed by an operator to force a rebuild (what verify advises for a damaged index).
    CF_RETURN_IF_ERROR(io::MakeDir(dir));
    CF_RETURN_IF_ERROR(io::FsyncDir(dir.substr(0, dir.rfind('/') + 1)));
  }
  // A reader may read a state whose runs a writer then merges away: read it again.
  for (int attempt = 0;; ++attempt) {
    problem->clear();
    index.runs_.clear();
    auto data = io::ReadFileToString(state_path);
    if (absl::IsNotFound(data.status())) {
      *problem = "no index state";
      break;
    }
    CF_RETURN_IF_ERROR(data.status());
    auto state = ParseState(*data, state_path);
    if (!state.ok()) {
      *problem = std::string(state.status().message());
      break;
    }
    index.next_run_id_ = state->next_run_id;
    index.coverage_ = std::move(state->coverage);
    absl::Status runs_ok;
    for (const auto& [id, entries] : state->runs) {
      auto run = IndexRun::Open(index.RunPath(id), id);
      if (run.ok() && (*run)->entries() != entries) {
        run = absl::DataLossError(absl::StrCat("index run ", (*run)->path(), " holds ",
                                               (*run)->entries(), " entries, not ", entries));
      }
      if (!run.ok()) {
        runs_ok = run.status();
        break;
      }
      index.runs_.push_back(*std::move(run));
    }
    if (absl::IsNotFound(runs_ok) && !writable && attempt < 3) continue;
    if (!runs_ok.ok()) {
      if (!absl::IsNotFound(runs_ok) && !absl::IsDataLoss(runs_ok)) return runs_ok;
      *problem = std::string(runs_ok.message());
      break;
    }
    auto records =
        RecordTable::Open(absl::StrCat(dir, "/", kRecordsFile), state->records, writable);
    if (!records.ok()) {
      if (!absl::IsDataLoss(records.status())) return records.status();
      *problem = std::string(records.status().message());
      break;
    }
    index.records_ = *std::move(records);
    break;
  }
  if (!problem->empty()) {
    index.runs_.clear();
    index.coverage_.clear();
    if (writable) {
      // Rebuilt from the packs; the old files go once a new state is saved.
      index.records_ = RecordTable::Fresh(absl::StrCat(dir, "/", kRecordsFile));
    } else {
      index.records_ = RecordTable::InMemory();
      index.dir_.clear();  // in memory only
    }
  }
  if (writable) {
    // Never reuse the name of a file left by a save that did not finish: a reader could map it.
    CF_ASSIGN_OR_RETURN(std::vector<std::string> names, io::ListDir(dir, kRunSuffix));
    for (const std::string& n : names) {
      uint64_t id = 0;
      if (absl::SimpleHexAtoi(n, &id)) {
        index.next_run_id_ = std::max(index.next_run_id_, id + 1);
      }
    }
    if (problem->empty()) index.RemoveObsoleteFiles();
  }
  return index;
}

template <typename Found>
void ChunkIndex::Lookup(absl::Span<const codec::ChunkId> ids, bool pin, Found found) const {
  // Two stages: the memtable slot, filter line and bucket start 2d ids ahead, then (the bucket
  // start having arrived) the entry a run held in memory will look at first, d ids ahead.
  auto prefetch = [&](size_t i) {
    memtable_.prefetch(ids[i]);
    for (const auto& run : runs_) run->Prefetch(ids[i]);
  };
  auto prefetch_entry = [&](size_t i) {
    for (const auto& run : runs_) run->PrefetchEntry(ids[i]);
  };
  for (size_t i = 0; i < ids.size() && i < 2 * kPrefetchAhead; ++i) prefetch(i);
  for (size_t i = 0; i < ids.size() && i < kPrefetchAhead; ++i) prefetch_entry(i);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i + 2 * kPrefetchAhead < ids.size()) prefetch(i + 2 * kPrefetchAhead);
    if (i + kPrefetchAhead < ids.size()) prefetch_entry(i + kPrefetchAhead);
    auto it = memtable_.find(ids[i]);
    if (it != memtable_.end()) {
      if (pin) Pin(it->second.record);
      found(i, it->second.record, it->second.slot);
      continue;
    }
    // Oldest first: merging keeps each run at least twice the size of the newer ones together,
    // so most present ids are found at the first run, without reading a false positive's bucket
    // elsewhere.
    for (const auto& run : runs_) {
      IndexEntry e;
      if (!run->MayHave(ids[i])) continue;
      if (!run->cache_tried()) MaybeCache(*run);
      if (!run->Find(ids[i], &e)) continue;
      if (pin) Pin(e.record);
      found(i, e.record, e.slot);
      break;
    }
  }
  NoteLookups(ids.size());
}

void ChunkIndex::MaybeCache(IndexRun& run) const {
  uint64_t cached = 0;
  for (const auto& r : runs_) cached += r->cached_bytes();
  run.CacheEntries(cached + run.entries() * sizeof(IndexEntry) <= options_.cached_entries_bytes);
}

void ChunkIndex::NoteLookups(size_t n) const {
  lookups_since_trim_check_ += n;
  if (lookups_since_trim_check_ < kTrimCheckEvery) return;
  lookups_since_trim_check_ = 0;
  if (ResidentFileBytes() <= options_.mapped_bytes_max) return;
  // All at once: what is in use comes back at the next touch, from the page cache.
  for (const auto& run : runs_) run->DropResidentPages();
}

bool ChunkIndex::Has(const codec::ChunkId& id) const {
  bool found = false;
  Lookup(absl::MakeConstSpan(&id, 1), /*pin=*/false,
         [&](size_t, uint32_t, uint16_t) { found = true; });
  return found;
}

std::optional<ChunkLocation> ChunkIndex::Find(const codec::ChunkId& id) const {
  std::optional<ChunkLocation> out;
  Lookup(absl::MakeConstSpan(&id, 1), /*pin=*/true, [&](size_t, uint32_t record, uint16_t slot) {
    out = ChunkLocation{records_.Get(record), slot};
  });
  return out;
}

bool ChunkIndex::Contains(const codec::ChunkId& id) const {
  bool found = false;
  Lookup(absl::MakeConstSpan(&id, 1), /*pin=*/true,
         [&](size_t, uint32_t, uint16_t) { found = true; });
  return found;
}

void ChunkIndex::FindAll(absl::Span<const codec::ChunkId> ids,
                         absl::Span<std::optional<ChunkLocation>> out) const {
  for (auto& o : out) o.reset();
  Lookup(ids, /*pin=*/true, [&](size_t i, uint32_t record, uint16_t slot) {
    out[i] = ChunkLocation{records_.Get(record), slot};
  });
}

void ChunkIndex::ContainsAll(absl::Span<const codec::ChunkId> ids, std::vector<bool>* out) const {
  out->assign(ids.size(), false);
  Lookup(ids, /*pin=*/true, [&](size_t i, uint32_t, uint16_t) { (*out)[i] = true; });
}

void ChunkIndex::FindRecordNumbers(absl::Span<const codec::ChunkId> ids,
                                   absl::Span<int64_t> out) const {
  for (auto& o : out) o = -1;
  Lookup(ids, /*pin=*/true, [&](size_t i, uint32_t record, uint16_t) { out[i] = record; });
}

absl::Span<const codec::ChunkId> ChunkIndex::IdsOf(const codec::RecordView& record) const {
  scratch_ids_.clear();
  for (uint32_t i = 0; i < record.chunk_count; ++i) scratch_ids_.push_back(record.chunk(i).id);
  return scratch_ids_;
}

size_t ChunkIndex::CountLacking(const codec::RecordView& record) const {
  // All of the record's chunks in one batch, so that their memory is fetched together.
  size_t found = 0;
  Lookup(IdsOf(record), /*pin=*/true, [&](size_t, uint32_t, uint16_t) { ++found; });
  return record.chunk_count - found;
}

void ChunkIndex::InsertRecord(const RecordLocation& loc, const codec::RecordView& record) {
  const uint32_t number = static_cast<uint32_t>(records_.size());
  scratch_present_.assign(record.chunk_count, false);
  Lookup(IdsOf(record), /*pin=*/false,
         [&](size_t i, uint32_t, uint16_t) { scratch_present_[i] = true; });
  bool used = false;
  for (uint32_t i = 0; i < record.chunk_count; ++i) {
    if (scratch_present_[i]) continue;
    // try_emplace: a chunk twice in one record keeps its first slot.
    used |= memtable_.try_emplace(record.chunk(i).id, MemEntry{number, static_cast<uint16_t>(i)})
                .second;
  }
  // A record all of whose chunks were known already is not referenced: do not keep it.
  if (used) records_.Append(loc);
}

bool ChunkIndex::Insert(const codec::ChunkId& id, const ChunkLocation& loc) {
  if (Has(id)) return false;
  // Chunks usually arrive record by record: reuse the last record's number when it matches.
  if (records_.size() == 0 || !(records_.Get(records_.size() - 1) == loc.record)) {
    records_.Append(loc.record);
  }
  memtable_.emplace(id, MemEntry{static_cast<uint32_t>(records_.size() - 1), loc.slot});
  return true;
}

void ChunkIndex::ForgetChunksOf(const codec::RecordView& record, size_t first) {
  for (uint32_t i = 0; i < record.chunk_count; ++i) {
    auto it = memtable_.find(record.chunk(i).id);
    if (it != memtable_.end() && it->second.record >= first) memtable_.erase(it);
  }
}

void ChunkIndex::RemoveIf(const std::function<bool(const RecordLocation&)>& drop) {
  absl::flat_hash_map<uint32_t, bool> gone;
  absl::erase_if(memtable_, [&](const auto& kv) {
    auto [it, fresh] = gone.try_emplace(kv.second.record, false);
    if (fresh) it->second = drop(records_.Get(kv.second.record));
    return it->second;
  });
}

size_t ChunkIndex::size() const {
  size_t n = memtable_.size();
  for (const auto& run : runs_) n += run->entries();
  return n;
}

void ChunkIndex::Clear() {
  memtable_.clear();
  for (auto& run : runs_) retired_.push_back(std::move(run));
  runs_.clear();
  records_.Clear();
  coverage_.clear();
}

absl::Status ChunkIndex::ForEach(
    const std::function<void(const codec::ChunkId&, const ChunkLocation&)>& fn) const {
  for (const auto& [id, e] : memtable_) fn(id, ChunkLocation{records_.Get(e.record), e.slot});
  for (const auto& run : runs_) {
    CF_ASSIGN_OR_RETURN(IndexRunScanner scan, IndexRunScanner::Open(*run));
    IndexEntry e;
    for (;;) {
      CF_ASSIGN_OR_RETURN(bool more, scan.Next(&e));
      if (!more) break;
      fn(e.id(), ChunkLocation{records_.Get(e.record), e.slot});
    }
  }
  return absl::OkStatus();
}

absl::Status ChunkIndex::CheckRuns() const {
  for (const auto& run : runs_) CF_RETURN_IF_ERROR(run->Check());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<IndexRun>> ChunkIndex::Merge(
    absl::Span<const IndexRun* const> sources, bool with_memtable,
    const std::function<bool(uint32_t record)>& drop) {
  uint64_t upper = with_memtable ? memtable_.size() : 0;
  for (const IndexRun* run : sources) upper += run->entries();
  if (upper == 0) return nullptr;
  // The inputs: the memtable sorted, then each run read in order.
  std::vector<IndexEntry> mem;
  if (with_memtable) {
    mem.reserve(memtable_.size());
    for (const auto& [id, e] : memtable_) {
      mem.push_back(IndexEntry{id.hi, id.lo, e.record, e.slot, 0});
    }
    std::sort(mem.begin(), mem.end());
  }
  std::vector<IndexRunScanner> scans;
  for (const IndexRun* run : sources) {
    CF_ASSIGN_OR_RETURN(IndexRunScanner s, IndexRunScanner::Open(*run));
    scans.push_back(std::move(s));
  }
  const size_t inputs = scans.size() + 1;  // input 0 is the memtable
  std::vector<IndexEntry> head(inputs);
  std::vector<bool> live(inputs, false);
  size_t mem_pos = 0;
  auto advance = [&](size_t k) -> absl::Status {
    if (k == 0) {
      live[0] = mem_pos < mem.size();
      if (live[0]) head[0] = mem[mem_pos++];
      return absl::OkStatus();
    }
    CF_ASSIGN_OR_RETURN(bool more, scans[k - 1].Next(&head[k]));
    live[k] = more;
    return absl::OkStatus();
  };
  for (size_t k = 0; k < inputs; ++k) CF_RETURN_IF_ERROR(advance(k));

  const uint64_t id = next_run_id_++;
  const std::string path = RunPath(id);
  CF_ASSIGN_OR_RETURN(auto writer, IndexRunWriter::Create(path, upper, id));
  absl::Status st = [&]() -> absl::Status {
    for (;;) {
      size_t min = inputs;
      for (size_t k = 0; k < inputs; ++k) {
        if (live[k] && (min == inputs || head[k] < head[min])) min = k;
      }
      if (min == inputs) return absl::OkStatus();
      const IndexEntry e = head[min];
      // The same id in two inputs (a damaged filter once let a chunk in twice): keep one.
      for (size_t k = 0; k < inputs; ++k) {
        if (live[k] && head[k].hi == e.hi && head[k].lo == e.lo) CF_RETURN_IF_ERROR(advance(k));
      }
      if (drop && drop(e.record)) continue;
      CF_RETURN_IF_ERROR(writer->Add(e));
    }
  }();
  absl::StatusOr<uint64_t> written = st.ok() ? writer->Finish() : st;
  if (!written.ok() || *written == 0) {
    ::unlink(path.c_str());
    if (!written.ok()) return written.status();
    return nullptr;
  }
  return IndexRun::Open(path, id);
}

absl::Status ChunkIndex::Compact() {
  const size_t n = runs_.size();
  if (n < 2) return absl::OkStatus();
  size_t first = n - 1;
  uint64_t sum = runs_[first]->entries();
  while (first > 0 && runs_[first - 1]->entries() <= 2 * sum) {
    --first;
    sum += runs_[first]->entries();
  }
  if (first == n - 1) return absl::OkStatus();
  std::vector<const IndexRun*> sources;
  for (size_t i = first; i < n; ++i) sources.push_back(runs_[i].get());
  CF_ASSIGN_OR_RETURN(std::unique_ptr<IndexRun> merged, Merge(sources, false, nullptr));
  for (size_t i = first; i < n; ++i) retired_.push_back(std::move(runs_[i]));
  runs_.resize(first);
  if (merged != nullptr) runs_.push_back(std::move(merged));
  return absl::OkStatus();
}

absl::Status ChunkIndex::EraseChunksOf(const std::function<bool(uint32_t record)>& dead) {
  absl::erase_if(memtable_, [&](const auto& kv) { return dead(kv.second.record); });
  if (runs_.empty()) return absl::OkStatus();
  std::vector<const IndexRun*> sources;
  for (const auto& run : runs_) sources.push_back(run.get());
  CF_ASSIGN_OR_RETURN(std::unique_ptr<IndexRun> merged, Merge(sources, false, dead));
  for (auto& run : runs_) retired_.push_back(std::move(run));
  runs_.clear();
  if (merged != nullptr) runs_.push_back(std::move(merged));
  return absl::OkStatus();
}

absl::Status ChunkIndex::WriteState() {
  std::string out(kStateMagic, 4);
  PutU16(&out, kStateVersion);
  PutU16(&out, 0);
  PutU64(&out, next_run_id_);
  PutU64(&out, records_.persisted());
  PutU32(&out, static_cast<uint32_t>(runs_.size()));
  PutU32(&out, static_cast<uint32_t>(coverage_.size()));
  for (const auto& run : runs_) {
    PutU64(&out, run->id());
    PutU64(&out, run->entries());
  }
  for (const auto& [pack, len] : coverage_) {
    PutU32(&out, pack);
    PutU64(&out, len);
  }
  PutU64(&out, codec::Checksum64(AsBytes(out)));
  // The runs' names must be durable before a state that names them.
  CF_RETURN_IF_ERROR(io::FsyncDir(dir_));
  return io::WriteFileAtomic(absl::StrCat(dir_, "/", kStateFile), out);
}

absl::Status ChunkIndex::Save() {
  if (!writable_ || dir_.empty()) return absl::OkStatus();
  CF_RETURN_IF_ERROR(records_.Persist());
  if (!memtable_.empty()) {
    CF_ASSIGN_OR_RETURN(std::unique_ptr<IndexRun> run, Merge({}, true, nullptr));
    if (run != nullptr) runs_.push_back(std::move(run));
    memtable_.clear();
  }
  CF_RETURN_IF_ERROR(Compact());
  CF_RETURN_IF_ERROR(WriteState());
  RemoveObsoleteFiles();
  return absl::OkStatus();
}

void ChunkIndex::RemoveObsoleteFiles() {
  retired_.clear();  // unmapped; their files go with the others no state names
  ::unlink(absl::StrCat(dir_, "/", kLegacySnapshot).c_str());
  auto names = io::ListDir(dir_, kRunSuffix);
  if (!names.ok()) return;  // only space is lost; the next save tries again
  absl::flat_hash_set<std::string> named;
  for (const auto& run : runs_) named.insert(run->path());
  for (const std::string& n : *names) {
    const std::string path = absl::StrCat(dir_, "/", n, kRunSuffix);
    if (!named.contains(path)) ::unlink(path.c_str());
  }
}

}  // namespace chunkferry::engine
