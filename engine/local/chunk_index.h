// The chunk index: chunk id → where its record lives. On disk, in the store's index/ directory,
// with memory bounded by ChunkIndexOptions rather than by the store:
//
//   - new entries go to a table in memory (the memtable) that Save writes out as a sorted run;
//     runs are merged so that there are O(log n) of them (a run is merged with the newer ones
//     once they add up to half its size), each entry rewritten O(log n) times;
//   - each run is a file of entries sorted by id, cut into buckets by the id's top bits, with one
//     cache line of Bloom filter per bucket (index_run.h); lookups map the filters (letting go
//     of their pages beyond a budget) and read a bucket's entries, or keep small runs in memory;
//   - records are kept once in a table (record_table.h); entries name them by number, so a
//     collection that moves a record rewrites one slot;
//   - the file STATE names the runs, the record count and how much of each pack the index
//     covers; it is replaced atomically after the files it names are durable. Whatever it does
//     not cover is recovered by scanning the packs' tails, and a lost or damaged index is rebuilt
//     from the packs.
//
// Opening reads STATE and the runs' headers: the same cost at any size. Layout in docs/FORMATS.md.
//
//   STATE: "CFIS", u16 version, u16 reserved, u64 next run id, u64 record count,
//          u32 run count, u32 pack count, runs × (u64 run id, u64 entries),
//          packs × (u32 pack id, u64 covered bytes), u64 XXH3-64 of everything before it
#ifndef CHUNKFERRY_ENGINE_LOCAL_CHUNK_INDEX_H_
#define CHUNKFERRY_ENGINE_LOCAL_CHUNK_INDEX_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "engine/format/pack.h"
#include "engine/local/index_run.h"
#include "engine/local/record_table.h"

namespace chunkferry::engine {

// One bit per record number below a limit: the records a garbage collection keeps. Bounded by
// the records of the store (1 bit each, ~2 MiB per TiB of 64 KiB records), not by its chunks.
class RecordBitmap {
 public:
  explicit RecordBitmap(size_t limit) : limit_(limit), bits_((limit + 63) / 64) {}
  size_t limit() const { return limit_; }
  // Records at or past the limit are outside the bitmap: setting them is a no-op and they read
  // as set (a collection keeps every record newer than its cutoff).
  void Set(uint64_t record) {
    if (record < limit_) bits_[record / 64] |= uint64_t{1} << (record % 64);
  }
  bool Get(uint64_t record) const {
    return record >= limit_ || (bits_[record / 64] >> (record % 64)) & 1;
  }

 private:
  size_t limit_;
  std::vector<uint64_t> bits_;
};

struct ChunkIndexOptions {
  // Entries held in memory before Save is wanted (ChunkIndex::WantsSave): ~32 bytes each.
  size_t memtable_entries = 768 * 1024;
  // Resident pages of the mapped filters and bucket tables the process keeps before it lets go of
  // them (checked every few thousand lookups). A store whose filters and bucket tables are
  // larger still works, with more page faults.
  uint64_t mapped_bytes_max = uint64_t{160} << 20;
  // Runs whose entries fit in this many bytes together are read into memory at their first
  // lookup, so that a store of up to ~2 M chunks answers from RAM rather than with a read per
  // chunk found. Opening still reads nothing.
  uint64_t cached_entries_bytes = uint64_t{48} << 20;
};

// Not thread-safe: owned by one LocalStore.
class ChunkIndex {
 public:
  // An index in memory only: it never saves (a read-only store rebuilding its index).
  ChunkIndex();
  ~ChunkIndex();
  ChunkIndex(ChunkIndex&&) noexcept;
  ChunkIndex& operator=(ChunkIndex&&) noexcept;

  // Opens the index in `dir`. A missing or damaged index is not an error: the index comes back
  // empty with the reason in *problem (the caller rebuilds it from the packs). Errors are I/O
  // failures. A writable index removes files no saved state names.
  [[nodiscard]] static absl::StatusOr<ChunkIndex> Open(const std::string& dir,
                                                       const ChunkIndexOptions& options,
                                                       bool writable, std::string* problem);

  // Returns the chunk's location, if the index has it.
  std::optional<ChunkLocation> Find(const codec::ChunkId& id) const;
  bool Contains(const codec::ChunkId& id) const;
  // While a garbage collection runs, every lookup that finds a chunk (Find, Contains, FindAll,
  // ContainsAll, CountLacking, FindRecordNumbers) sets its record's bit in `pins`: a chunk the
  // store has just answered "have" for, or that an import deduplicated against, survives the
  // collection. nullptr stops pinning. `pins` must outlive its use here.
  void SetPins(RecordBitmap* pins) { pins_ = pins; }
  // The record number of each id's chunk (-1 when absent), for marking. Pins like Find.
  void FindRecordNumbers(absl::Span<const codec::ChunkId> ids, absl::Span<int64_t> out) const;
  // Where record `number` lives (numbers below record_count()).
  RecordLocation record(size_t number) const { return records_.Get(number); }
  // Moves record `number` to `loc` (a byte-for-byte copy of it): its chunks follow at once. On
  // disk from the next Save or PersistRecords, which must come after the copy is durable.
  void Relocate(size_t number, const RecordLocation& loc) { records_.Set(number, loc); }
  // Forgets every chunk whose record `dead` says is gone (rewriting the runs into one); the
  // records keep their numbers. On disk from the next Save.
  [[nodiscard]] absl::Status EraseChunksOf(const std::function<bool(uint32_t record)>& dead);
  // Find and Contains for many ids at once, with the memory later ids need fetched meanwhile.
  void FindAll(absl::Span<const codec::ChunkId> ids,
               absl::Span<std::optional<ChunkLocation>> out) const;
  void ContainsAll(absl::Span<const codec::ChunkId> ids, std::vector<bool>* out) const;
  // How many chunks of `record` the index lacks.
  size_t CountLacking(const codec::RecordView& record) const;
  // Adds one chunk; a chunk already present keeps its first location. Returns true when added.
  bool Insert(const codec::ChunkId& id, const ChunkLocation& loc);
  // Adds every chunk of a record found at `loc`; chunks already present keep their first place.
  void InsertRecord(const RecordLocation& loc, const codec::RecordView& record);
  // Undoes InsertRecord calls: records numbered `first` and later (record_count() before the
  // first of them) are forgotten, with the chunks of `record` that named them. Call it for
  // every record inserted since, then TruncateRecords(first). Only what no Save has written
  // can be undone.
  void ForgetChunksOf(const codec::RecordView& record, size_t first);
  void TruncateRecords(size_t first) { records_.Truncate(first); }
  size_t record_count() const { return records_.size(); }
  // Forgets the chunks not yet saved whose record `drop` says is gone (after a rollback).
  void RemoveIf(const std::function<bool(const RecordLocation&)>& drop);
  // Entries (chunks) indexed.
  size_t size() const;
  // Forgets everything; the files follow at the next Save.
  void Clear();
  // Calls fn(id, location) for every chunk, in no particular order.
  [[nodiscard]] absl::Status ForEach(
      const std::function<void(const codec::ChunkId&, const ChunkLocation&)>& fn) const;
  // Checks every run's structure (for verify).
  [[nodiscard]] absl::Status CheckRuns() const;

  // Bytes of each pack that the entries account for.
  std::map<uint32_t, uint64_t>& coverage() { return coverage_; }
  const std::map<uint32_t, uint64_t>& coverage() const { return coverage_; }

  // The memtable is full: Save (once what it indexes is durable) keeps memory bounded.
  bool WantsSave() const { return memtable_.size() >= options_.memtable_entries; }
  // Entries added since the last Save.
  size_t unsaved() const { return memtable_.size(); }
  // Writes what changed: records, the memtable as a run, merges, then STATE. Everything the
  // index names must be durable in the packs first.
  [[nodiscard]] absl::Status Save();
  // Writes new records and relocations only (durable copies); a cheap step between Saves.
  [[nodiscard]] absl::Status PersistRecords() { return records_.Persist(); }
  size_t run_count() const { return runs_.size(); }

 private:
  struct MemEntry {
    uint32_t record;
    uint16_t slot;
  };
  // Looks each id up (memtable, then runs oldest first) and calls found(i, record, slot) for
  // each one present; pins when `pin`.
  template <typename Found>
  void Lookup(absl::Span<const codec::ChunkId> ids, bool pin, Found found) const;
  // One id, without pinning.
  bool Has(const codec::ChunkId& id) const;
  // The ids of a record's chunks, in a buffer of the index's (valid until the next call).
  absl::Span<const codec::ChunkId> IdsOf(const codec::RecordView& record) const;
  void Pin(uint32_t record) const {
    if (pins_ != nullptr) pins_->Set(record);
  }
  // Reads the entries of `run` into memory if they fit in what cached_entries_bytes leaves
  // (decided once per run).
  void MaybeCache(IndexRun& run) const;
  // Counts lookups; every so often lets go of mapped pages beyond the budget.
  void NoteLookups(size_t n) const;
  // Writes `sources` (runs, and the memtable when `with_memtable`) merged into one new run,
  // without the entries `drop` names. Returns the new run (nullptr when it would be empty).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<IndexRun>> Merge(
      absl::Span<const IndexRun* const> sources, bool with_memtable,
      const std::function<bool(uint32_t record)>& drop);
  // Merges the newest runs while the one before them is at most twice their sum.
  [[nodiscard]] absl::Status Compact();
  [[nodiscard]] absl::Status WriteState();
  // Removes the files of runs no longer named, and files of older formats.
  void RemoveObsoleteFiles();
  std::string RunPath(uint64_t id) const;

  std::string dir_;  // empty: in memory only
  ChunkIndexOptions options_;
  bool writable_ = false;
  absl::flat_hash_map<codec::ChunkId, MemEntry> memtable_;
  std::vector<std::unique_ptr<IndexRun>> runs_;     // oldest first
  std::vector<std::unique_ptr<IndexRun>> retired_;  // replaced, removed after the next STATE
  uint64_t next_run_id_ = 1;
  RecordTable records_;
  std::map<uint32_t, uint64_t> coverage_;
  RecordBitmap* pins_ = nullptr;
  mutable uint64_t lookups_since_trim_check_ = 0;
  mutable std::vector<codec::ChunkId> scratch_ids_;
  std::vector<bool> scratch_present_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_CHUNK_INDEX_H_
