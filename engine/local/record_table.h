// The record table of the chunk index: record number → where the record lives in the packs.
// Index entries name a record by number, so a record's location is kept once however many
// chunks it holds, and a garbage collection that moves a record rewrites one slot. The file is
// an array of 16-byte slots, mapped (never read whole); records added since the last Persist and
// moves of persisted ones wait in memory. Slot: u32 pack, u32 size, 48-bit offset, u16 check
// (the top 16 bits of XXH3-64 of the 14 bytes before it): a slot read while another process
// rewrites it, or a damaged one, is seen as such.
#ifndef CHUNKFERRY_ENGINE_LOCAL_RECORD_TABLE_H_
#define CHUNKFERRY_ENGINE_LOCAL_RECORD_TABLE_H_

#include <cstdint>
#include <string>
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
  ~RecordTable() { Unmap(); }
  RecordTable(RecordTable&& other) noexcept { *this = std::move(other); }
  RecordTable& operator=(RecordTable&& other) noexcept;

  // Opens `path` holding `count` persisted slots (created when writable and absent). A writable
  // table drops slots past `count` (written after the last saved state). DataLoss when the file
  // holds fewer.
  [[nodiscard]] static absl::StatusOr<RecordTable> Open(const std::string& path, uint64_t count,
                                                        bool writable);
  // A table in memory only (a read-only store that rebuilds its index).
  static RecordTable InMemory() { return RecordTable(); }
  // An empty table that replaces the file at `path` at the first Persist (a new file: a reader
  // may still map the old one). Nothing is written before.
  static RecordTable Fresh(const std::string& path);

  uint64_t size() const { return persisted_ + tail_.size(); }
  uint64_t persisted() const { return persisted_; }
  // The location of record `n` (< size()). A damaged slot reads as pack 0, which no store has.
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
  // Lets the kernel drop the mapping's resident pages.
  void DropResidentPages() const;

 private:
  void Unmap();
  [[nodiscard]] absl::Status Map();

  std::string path_;
  io::Fd fd_;
  bool writable_ = false;
  uint64_t persisted_ = 0;
  bool cut_ = false;  // the file is to be replaced at the next Persist
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<RecordLocation> tail_;
  absl::flat_hash_map<uint64_t, RecordLocation> moved_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_RECORD_TABLE_H_
