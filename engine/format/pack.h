// Pack files: append-only files of chunk records (codec/record.h) behind a small header. Packs
// are the source of truth; the chunk index is derived from them and can always be rebuilt by
// scanning. Layout in docs/FORMATS.md:
//
//   header  "CFPK", u16 version, u16 reserved, u32 pack id, u32 reserved, 16-byte store uuid
//           (the uuid's 32 hex characters as 16 bytes), then records back to back.
#ifndef CHUNKFERRY_ENGINE_FORMAT_PACK_H_
#define CHUNKFERRY_ENGINE_FORMAT_PACK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/record.h"

namespace chunkferry::engine {

inline constexpr size_t kPackHeaderSize = 32;

// Where a record lives.
struct RecordLocation {
  uint32_t pack = 0;
  uint32_t size = 0;
  uint64_t offset = 0;

  friend bool operator==(const RecordLocation& a, const RecordLocation& b) {
    return a.pack == b.pack && a.offset == b.offset;
  }
  friend bool operator<(const RecordLocation& a, const RecordLocation& b) {
    return a.pack != b.pack ? a.pack < b.pack : a.offset < b.offset;
  }
  template <typename H>
  friend H AbslHashValue(H h, const RecordLocation& l) {
    return H::combine(std::move(h), l.pack, l.offset);
  }
};

// Where a chunk lives: its record and its position in the record's table.
struct ChunkLocation {
  RecordLocation record;
  uint16_t slot = 0;
};

// "0000002a.pack"
std::string PackFileName(uint32_t pack_id);
std::string EncodePackHeader(uint32_t pack_id, const std::string& store_uuid);
// Checks magic, version, id and store uuid; `path` names the file in errors.
[[nodiscard]] absl::Status CheckPackHeader(absl::Span<const uint8_t> header, uint32_t pack_id,
                                           const std::string& store_uuid, const std::string& path);

// What a scan found.
struct PackScan {
  uint64_t valid_end = 0;  // end of the last intact record before any torn tail
  bool torn_tail = false;  // bytes after valid_end do not hold an intact record up to EOF
  // Damaged regions followed by intact records again (corruption, not a crash): [begin, end).
  std::vector<std::pair<uint64_t, uint64_t>> damaged;
};

// Called for each intact record with its parsed view and its bytes (valid during the call).
using RecordVisitor = std::function<void(const RecordLocation&, const codec::RecordView&,
                                         absl::Span<const uint8_t> bytes)>;

// What a scan accepts as an intact record.
enum class ScanCheck {
  kHeader,   // the header checksum (verify checks payloads itself, more deeply)
  kPayload,  // and the payload checksum: what crash recovery indexes must be whole
};

// Reads the pack `fd` (id `pack_id`, `file_size` bytes) from `start` (kPackHeaderSize or the end
// of what an index already covers) and calls `visit` for every intact record (by `check`). A
// record whose intact header says it runs past the end of the file, or a header cut by the end
// of the file, is a torn tail. A damaged record (a damaged header, or with kPayload an intact
// header over a damaged payload) starts a damaged region when an intact record follows (found by
// the damaged header's size when it can be trusted, else by searching for the next valid
// header), else a torn tail: a power loss can keep a record's header and lose its payload.
[[nodiscard]] absl::StatusOr<PackScan> ScanPack(int fd, uint32_t pack_id, uint64_t start,
                                                uint64_t file_size, ScanCheck check,
                                                const RecordVisitor& visit);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_FORMAT_PACK_H_
