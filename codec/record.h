// The chunk record: the one format chunks have at rest (in pack files) and on the wire. A record
// holds one or more consecutive chunks, compressed together as one zstd frame (or stored raw when
// compression does not pay), behind a header that names every chunk it holds. Grouping small
// chunks into one frame keeps small-chunk dedupe while paying one header, one frame and one
// index-locality unit per group. Layout in docs/FORMATS.md:
//
//   offset size  field
//   0      4     magic "CFRC" (0x43 0x46 0x52 0x43)
//   4      1     version (1)
//   5      1     codec (0 raw, 1 zstd)
//   6      2     chunk_count (1..kMaxRecordChunks), little-endian
//   8      4     raw_length: sum of the chunks' raw lengths
//   12     4     stored_length: payload bytes
//   16     8     payload_checksum: XXH3-64 of the payload
//   24     8     header_checksum: XXH3-64 of bytes [0,24) followed by the chunk table
//   32     20*n  chunk table: per chunk, its id (16 bytes) and raw length (4 bytes)
//   ...    stored_length bytes of payload
#ifndef CHUNKFERRY_CODEC_RECORD_H_
#define CHUNKFERRY_CODEC_RECORD_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "codec/compressor.h"

namespace chunkferry::codec {

inline constexpr uint8_t kRecordMagic[4] = {'C', 'F', 'R', 'C'};
inline constexpr uint8_t kRecordVersion = 1;
inline constexpr size_t kRecordFixedHeaderSize = 32;
inline constexpr size_t kRecordChunkEntrySize = 20;
inline constexpr uint32_t kMaxRecordChunks = 1024;
inline constexpr uint32_t kMaxRecordRawLength = 16u << 20;

// A chunk as a record's table names it.
struct ChunkRef {
  ChunkId id;
  uint32_t raw_length = 0;
};

// Bytes of header (fixed part and chunk table) for `chunk_count` chunks.
constexpr size_t RecordHeaderSize(size_t chunk_count) {
  return kRecordFixedHeaderSize + chunk_count * kRecordChunkEntrySize;
}
// Largest record that EncodeRecord can produce for these chunks: RecordHeaderSize(chunk_count)
// + raw_length, since a zstd frame is kept only when it is smaller than the raw bytes.
size_t MaxRecordSize(size_t chunk_count, size_t raw_length);

// Encodes one record holding `chunks` (raw bytes, in order) named by `refs` (same length; each
// ref's raw_length equals its chunk's size) into `out`, which must hold
// MaxRecordSize(chunks.size(), total). Compresses with `compressor` when compressor != nullptr
// and the frame is smaller than the raw bytes; else stores raw. Returns the record's size.
// InvalidArgument when the chunk count or raw length is out of bounds, a chunk is empty or does
// not match its ref's raw_length, or `out` is too small; a compressor failure other than "the
// frame would not be smaller" is passed on (Internal). The ids in `refs` are written as given,
// not recomputed.
[[nodiscard]] absl::StatusOr<size_t> EncodeRecord(
    absl::Span<const ChunkRef> refs, absl::Span<const absl::Span<const uint8_t>> chunks,
    Compressor* compressor, absl::Span<uint8_t> out);

// A parsed record; points into the bytes it was parsed from, which must outlive it.
struct RecordView {
  Codec codec = Codec::kRaw;
  uint32_t chunk_count = 0;
  uint32_t raw_length = 0;
  uint32_t stored_length = 0;
  uint64_t payload_checksum = 0;
  const uint8_t* table = nullptr;  // chunk_count entries of kRecordChunkEntrySize
  absl::Span<const uint8_t> payload;
  size_t size = 0;  // header + table + payload

  ChunkRef chunk(size_t i) const;
  // Offset of chunk i within the raw (decompressed) bytes.
  uint32_t raw_offset(size_t i) const;
};

// Reads the fixed header at the start of `bytes` (at least kRecordFixedHeaderSize) and returns
// the record's total size, after checking magic, version, codec and bounds (not checksums).
// OutOfRange when `bytes` is shorter than the fixed header; DataLoss for a damaged header;
// FailedPrecondition for a version newer than this build.
[[nodiscard]] absl::StatusOr<size_t> PeekRecordSize(absl::Span<const uint8_t> bytes);

// Parses the record at the start of `bytes` and checks its header checksum (not the payload).
// OutOfRange when `bytes` ends before the record does (a torn tail); DataLoss when the header is
// damaged (including a table whose lengths are zero or do not sum to raw_length);
// FailedPrecondition for a newer version. Bytes after the record are ignored (view.size says
// where the next record starts).
[[nodiscard]] absl::StatusOr<RecordView> ParseRecord(absl::Span<const uint8_t> bytes);

// Checks the payload against payload_checksum: the cheap check of stored bytes. DataLoss.
[[nodiscard]] absl::Status CheckPayload(const RecordView& record);

// Decodes the payload into `raw_out` (exactly raw_length bytes), after checking the payload
// checksum. With `hasher`, also recomputes every chunk's id and compares it with the table: the
// full verification. DataLoss naming the first chunk (index and id) that does not match, or for
// a damaged payload; InvalidArgument when raw_out.size() != raw_length.
[[nodiscard]] absl::Status DecodeRecord(const RecordView& record, Decompressor& decompressor,
                                        const ChunkHasher* hasher, absl::Span<uint8_t> raw_out);

// Checks a record that arrived from elsewhere (a peer store, the wire) before it is stored:
// parses it as ParseRecord does, refuses bytes after its end (DataLoss "record has trailing
// bytes"), then checks its payload. With `full`, decodes it into *scratch (resized to its raw
// length) and recomputes every chunk id with `hasher`, which must then not be null (the full
// verification, DecodeRecord); else checks the payload checksum only (CheckPayload). Returns the
// view, which points into `bytes`. Thread-safe given a decompressor and scratch per thread.
[[nodiscard]] absl::StatusOr<RecordView> CheckReceivedRecord(absl::Span<const uint8_t> bytes,
                                                             bool full, Decompressor& decompressor,
                                                             const ChunkHasher* hasher,
                                                             std::vector<uint8_t>* scratch);

}  // namespace chunkferry::codec

#endif  // CHUNKFERRY_CODEC_RECORD_H_
