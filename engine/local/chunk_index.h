// The chunk index: chunk id → where its record lives. Held in memory while a store is open and
// saved as a snapshot file that also says how much of each pack it covers; whatever the snapshot
// does not cover is recovered by scanning the packs' tails, and a lost or damaged snapshot is
// rebuilt from the packs. Records are kept once in a table, and each chunk names its record by
// number, so an entry costs 24 bytes of slot (16-byte id, record number, slot) rather than
// repeating the record's location for each of its chunks. Layout in docs/FORMATS.md:
//
//   "CFIX", u16 version, u16 reserved, u32 pack count, u64 record count, u64 entry count,
//   pack count × (u32 pack id, u64 covered bytes),
//   record count × (u32 pack, u64 offset, u32 size),
//   entry count × (16-byte id, u32 record number, u16 slot),
//   u64 XXH3-64 of everything before it
#ifndef CHUNKFERRY_ENGINE_LOCAL_CHUNK_INDEX_H_
#define CHUNKFERRY_ENGINE_LOCAL_CHUNK_INDEX_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "engine/format/pack.h"

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

// Not thread-safe: owned by one LocalStore.
class ChunkIndex {
 public:
  // Returns the chunk's location, if the index has it.
  std::optional<ChunkLocation> Find(const codec::ChunkId& id) const {
    auto it = map_.find(id);
    if (it == map_.end()) return std::nullopt;
    Pin(it->second.record);
    return ChunkLocation{records_[it->second.record], it->second.slot};
  }
  bool Contains(const codec::ChunkId& id) const {
    auto it = map_.find(id);
    if (it == map_.end()) return false;
    Pin(it->second.record);
    return true;
  }
  // While a garbage collection runs, every lookup that finds a chunk (Find, Contains, FindAll,
  // ContainsAll, CountLacking) sets its record's bit in `pins`: a chunk the store has just
  // answered "have" for, or that an import deduplicated against, survives the collection.
  // nullptr stops pinning. `pins` must outlive its use here.
  void SetPins(RecordBitmap* pins) { pins_ = pins; }
  // The record number of each id's chunk (-1 when absent), for marking. Pins like Find.
  void FindRecordNumbers(absl::Span<const codec::ChunkId> ids, absl::Span<int64_t> out) const;
  // Where record `number` lives (numbers below record_count()).
  const RecordLocation& record(size_t number) const { return records_[number]; }
  // Moves record `number` to `loc` (a byte-for-byte copy of it): its chunks follow at once.
  void Relocate(size_t number, const RecordLocation& loc) { records_[number] = loc; }
  // Forgets every chunk whose record `dead` says is gone; the records keep their numbers.
  void EraseChunksOf(const std::function<bool(uint32_t record)>& dead);
  // Find and Contains for many ids at once: on an index larger than the CPU caches this is
  // several times faster than a loop, as the memory later ids need is fetched meanwhile.
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
  // every record inserted since, then TruncateRecords(first).
  void ForgetChunksOf(const codec::RecordView& record, size_t first);
  void TruncateRecords(size_t first) { records_.resize(first); }
  size_t record_count() const { return records_.size(); }
  // Forgets the chunks whose record `drop` says is gone (after a rollback).
  void RemoveIf(const std::function<bool(const RecordLocation&)>& drop);
  size_t size() const { return map_.size(); }
  void Clear() {
    map_.clear();
    records_.clear();
    coverage_.clear();
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [id, e] : map_) fn(id, ChunkLocation{records_[e.record], e.slot});
  }

  // Bytes of each pack that the entries account for.
  std::map<uint32_t, uint64_t>& coverage() { return coverage_; }
  const std::map<uint32_t, uint64_t>& coverage() const { return coverage_; }

  // Writes the snapshot atomically (temp file, fsync, rename).
  [[nodiscard]] absl::Status Save(const std::string& path) const;
  // Reads a snapshot. NotFound when absent; DataLoss when damaged.
  [[nodiscard]] static absl::StatusOr<ChunkIndex> Load(const std::string& path);

 private:
  struct Entry {
    uint32_t record;  // in records_
    uint16_t slot;    // in the record's chunk table
  };
  // Calls visit(i) for each of `ids` in order, with the memory of ids a few places ahead
  // prefetched.
  template <typename Visit>
  void VisitPrefetched(absl::Span<const codec::ChunkId> ids, Visit visit) const;
  void Pin(uint32_t record) const {
    if (pins_ != nullptr) pins_->Set(record);
  }
  absl::flat_hash_map<codec::ChunkId, Entry> map_;
  RecordBitmap* pins_ = nullptr;
  std::vector<RecordLocation> records_;
  std::map<uint32_t, uint64_t> coverage_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_CHUNK_INDEX_H_
