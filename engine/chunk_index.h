// The chunk index: chunk id → where its record lives. Held in memory while a store is open
// (about 40 bytes per unique chunk) and saved as a snapshot file that also says how much of
// each pack it covers; whatever the snapshot does not cover is recovered by scanning the packs'
// tails, and a lost or damaged snapshot is rebuilt from the packs. Layout in docs/FORMATS.md:
//
//   "CFIX", u16 version, u16 reserved, u32 pack count, u64 entry count,
//   pack count × (u32 pack id, u64 covered bytes),
//   entry count × (16-byte id, u32 pack, u64 offset, u32 record size, u16 slot),
//   u64 XXH3-64 of everything before it
#ifndef CHUNKFERRY_ENGINE_CHUNK_INDEX_H_
#define CHUNKFERRY_ENGINE_CHUNK_INDEX_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/chunk_id.h"
#include "engine/pack.h"

namespace chunkferry::engine {

// Not thread-safe: owned by one LocalStore.
class ChunkIndex {
 public:
  // Returns the chunk's location, or nullptr.
  const ChunkLocation* Find(const codec::ChunkId& id) const {
    auto it = map_.find(id);
    return it == map_.end() ? nullptr : &it->second;
  }
  bool Contains(const codec::ChunkId& id) const { return map_.contains(id); }
  // Adds a chunk; a chunk already present keeps its first location. Returns true when added.
  bool Insert(const codec::ChunkId& id, const ChunkLocation& loc) {
    return map_.try_emplace(id, loc).second;
  }
  // Adds every chunk of a record found at `loc`.
  void InsertRecord(const RecordLocation& loc, const codec::RecordView& record);
  size_t size() const { return map_.size(); }
  void Clear() {
    map_.clear();
    coverage_.clear();
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [id, loc] : map_) fn(id, loc);
  }

  // Bytes of each pack that the entries account for.
  std::map<uint32_t, uint64_t>& coverage() { return coverage_; }
  const std::map<uint32_t, uint64_t>& coverage() const { return coverage_; }

  // Writes the snapshot atomically (temp file, fsync, rename).
  [[nodiscard]] absl::Status Save(const std::string& path) const;
  // Reads a snapshot. NotFound when absent; DataLoss when damaged.
  [[nodiscard]] static absl::StatusOr<ChunkIndex> Load(const std::string& path);

 private:
  absl::flat_hash_map<codec::ChunkId, ChunkLocation> map_;
  std::map<uint32_t, uint64_t> coverage_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_CHUNK_INDEX_H_
