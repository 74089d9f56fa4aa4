// Manifest deltas: a volume backup's manifest written as the difference from a base manifest (an
// earlier backup of the same volume that the receiver holds), so that an incremental sync sends
// the entries that changed instead of every entry. Used by PUT_MANIFEST_DELTA
// (docs/PROTOCOL.md, which specifies the format):
//
//   header  "CFMD", u16 version (1), u16 flags (0)
//   meta    KV block (engine/kv_block.h) of the new manifest's VolumeBackupMeta
//   ops     0x01 COPY  varint n: the next n entries are the base's entries at the same byte
//                      offsets (the base must have an entry starting at the current offset, and
//                      the n base entries that follow it one after another)
//           0x02 LIT   varint n, then n entries: varint (length << 1 | zero), 16-byte id when
//                      not zero
//           0x00 END   u64 entry count, u64 XXH3-64 of the new entries (EntriesHash below)
//   u64 XXH3-64 (codec::Checksum64) of every byte before it
//
// Both sides walk the base by byte offset, not by entry index, so entries that were rewritten,
// holes that grew or shrank and a volume that grew all keep the rest of the base aligned.
// Encoding and decoding stream: memory does not grow with the volume.
#ifndef CHUNKFERRY_ENGINE_FORMAT_MANIFEST_DELTA_H_
#define CHUNKFERRY_ENGINE_FORMAT_MANIFEST_DELTA_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/format/manifest.h"
#include "engine/format/volume_backup.h"
#include "io/fd.h"

namespace chunkferry::engine {

inline constexpr uint16_t kManifestDeltaVersion = 1;

// Walks a base manifest in step with another one by byte offset. Not thread-safe.
class BaseCursor {
 public:
  // Rewinds `base`, which must outlive the cursor.
  explicit BaseCursor(ManifestSource* base);
  // The base entry that starts exactly at byte `offset`, or nullptr when no entry starts there
  // (or the base ends before). `offset` must not decrease from one call to the next. The pointer
  // is valid until the next call.
  [[nodiscard]] absl::StatusOr<const ManifestEntry*> At(uint64_t offset);

 private:
  ManifestSource* base_;
  std::vector<ManifestEntry> batch_;
  size_t pos_ = 0;
  uint64_t start_ = 0;  // byte offset of batch_[pos_]
  bool end_ = false;
};

// True when `a` and `b` are the same entry (same kind and length, and same id for data).
inline bool SameEntry(const ManifestEntry& a, const ManifestEntry& b) {
  return a.zero == b.zero && a.length == b.length && (a.zero || a.id == b.id);
}

struct DeltaStats {
  uint64_t entries = 0;
  uint64_t copied = 0;   // entries taken from the base
  uint64_t literal = 0;  // entries carried in the delta
  uint64_t bytes = 0;    // delta size
};

// Writes the delta of `entries` (the new manifest, meta `meta`) against `base` to `out`, in
// pieces (each piece valid only during the call). Rewinds both sources first.
[[nodiscard]] absl::Status EncodeManifestDelta(
    const VolumeBackupMeta& meta, ManifestSource& entries, ManifestSource& base,
    const std::function<absl::Status(absl::string_view)>& out, DeltaStats* stats = nullptr);

// Reads a delta from a file and merges it with its base into the new manifest's entries. Open()
// checks the checksum, header and meta up front; the ops are checked as they are read, so Next()
// fails (InvalidArgument "manifest delta … is malformed: …", DataLoss when the entries do not hash
// to what the delta says) on an op running past the base, a bad count, a truncated or trailing
// part — a PutManifest fed from it then publishes nothing. Not thread-safe.
class ManifestDeltaSource final : public ManifestSource {
 public:
  // `base` must outlive the source. `what` names the delta in errors.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ManifestDeltaSource>> Open(
      const std::string& path, ManifestSource* base, std::string what);

  const VolumeBackupMeta& meta() const override { return meta_; }
  absl::StatusOr<size_t> Next(std::vector<ManifestEntry>* out, size_t max) override;
  void Rewind() override;

 private:
  ManifestDeltaSource(io::Fd fd, ManifestSource* base, std::string what)
      : fd_(std::move(fd)), base_(base), what_(std::move(what)), cursor_(base) {}
  // Makes at least min(n, end_ - position) bytes available in buf_.
  absl::Status Ensure(size_t n);
  absl::Status Malformed(absl::string_view why) const;
  absl::StatusOr<uint64_t> Varint(absl::string_view field);

  io::Fd fd_;
  ManifestSource* base_;
  std::string what_;
  VolumeBackupMeta meta_;
  uint64_t ops_begin_ = 0;  // file offset of the first op
  uint64_t end_ = 0;        // file offset of the checksum
  std::string buf_;
  size_t buf_pos_ = 0;
  uint64_t buf_file_ = 0;  // file offset of buf_[0]
  BaseCursor cursor_;
  uint64_t offset_ = 0;  // byte offset of the next entry
  uint64_t copy_left_ = 0;
  uint64_t literal_left_ = 0;
  uint64_t emitted_ = 0;
  uint64_t hash_ = 0;  // running EntriesHash
  bool done_ = false;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_FORMAT_MANIFEST_DELTA_H_
