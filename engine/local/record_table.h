// The record table of the chunk index: record number → where the record lives in the packs.
// Index entries name a record by number, so a record's location is kept once however many
// chunks it holds, and a garbage collection that moves a record rewrites one slot. The file is
// an array of 16-byte slots, read 4 KiB at a time into a small cache (never read whole: chunks
// that follow each other in a volume mostly name neighbouring records); records added since the
// last Persist and moves of persisted ones wait in memory. Slot: u32 pack, u32 size, 48-bit offset,
// u16 check (the top 16 bits of XXH3-64 of the 14 bytes before it): a slot read while another
// process rewrites it, or a damaged one, is seen as such.
#ifndef CHUNKFERRY_ENGINE_LOCAL_RECORD_TABLE_H_
#define CHUNKFERRY_ENGINE_LOCAL_RECORD_TABLE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/format/pack.h"
#include "io/fd.h"

namespace chunkferry::engine {

class RecordTable {
 public:
  RecordTable() = default;
  RecordTable(RecordTable&&) noexcept = default;
  RecordTable& operator=(RecordTable&&) noexcept = default;

  // Opens `path` holding `count` persisted slots (created when writable and absent). A writable
  // table drops slots past `count` (written after the last saved state). DataLoss when the file
  // holds fewer.
  [[nodiscard]] static absl::StatusOr<RecordTable> Open(const std::string& path, uint64_t count,
                                                        bool writable);
  // A table in memory only (a read-only store that rebuilds its index).
  static RecordTable InMemory() { return RecordTable(); }
  // An empty table that replaces the file at `path` at the first Persist (a new file, never the
  // old one cut: a reader may still be reading it). Nothing is written before.
  static RecordTable Fresh(const std::string& path);

  uint64_t size() const { return persisted_ + tail_.size(); }
  uint64_t persisted() const { return persisted_; }
  // The location of record `n`. A damaged slot, or a number past size() (named by a damaged
  // run), reads as pack 0, which no store has.
  RecordLocation Get(uint64_t n) const;
  void Append(const RecordLocation& loc) { tail_.push_back(loc); }
  // Forgets records `first` and later; only records not yet persisted can go.
  void Truncate(uint64_t first);
  // Moves record `n`; persisted slots are rewritten at the next Persist.
  void Set(uint64_t n, const RecordLocation& loc);
  // Forgets every record; the file is replaced at the next Persist.
  void Clear();
  bool dirty() const { return !tail_.empty() || !moved_.empty() || cut_; }
  // Writes the new records and the moves, then makes them durable.
  [[nodiscard]] absl::Status Persist();

 private:
  static constexpr size_t kBlockSlots = 256;  // 4 KiB
  static constexpr size_t kCachedBlocks = 64;
  struct Block {
    uint64_t number = UINT64_MAX;
    uint8_t bytes[kBlockSlots * 16];
  };
  // The block holding slot `n` (< persisted_), read if it is not cached; nullptr on error.
  const uint8_t* Slot(uint64_t n, bool reread) const;

  std::string path_;
  io::Fd fd_;
  bool writable_ = false;
  uint64_t persisted_ = 0;
  bool cut_ = false;                  // the file is to be replaced at the next Persist
  mutable std::vector<Block> cache_;  // direct-mapped by block number
  std::vector<RecordLocation> tail_;
  absl::flat_hash_map<uint64_t, RecordLocation> moved_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_RECORD_TABLE_H_
