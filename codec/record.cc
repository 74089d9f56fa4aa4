#include "codec/record.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "codec/internal/endian.h"

// The header checksum streams two separate byte ranges through one XXH3 state. The inline build
// of xxHash makes XXH3_state_t a complete type in this file (so it lives on the stack), without
// depending on the shared library's private struct layout. Its output is XXH3-64, identical to
// the library's; the large payload checksum still goes through Checksum64 (the library's
// runtime-dispatched SIMD code).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace chunkferry::codec {
namespace {

using internal::LoadLE16;
using internal::LoadLE32;
using internal::LoadLE64;
using internal::StoreLE16;
using internal::StoreLE32;
using internal::StoreLE64;

// Offsets of the fixed header's fields (record.h).
constexpr size_t kMagicOffset = 0;
constexpr size_t kVersionOffset = 4;
constexpr size_t kCodecOffset = 5;
constexpr size_t kChunkCountOffset = 6;
constexpr size_t kRawLengthOffset = 8;
constexpr size_t kStoredLengthOffset = 12;
constexpr size_t kPayloadChecksumOffset = 16;
constexpr size_t kHeaderChecksumOffset = 24;
static_assert(kHeaderChecksumOffset + 8 == kRecordFixedHeaderSize);
static_assert(kChunkIdSize + 4 == kRecordChunkEntrySize);

// XXH3-64 of header bytes [0, 24) followed by the chunk table.
uint64_t HeaderChecksum(const uint8_t* header, const uint8_t* table, size_t chunk_count) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, kHeaderChecksumOffset);
  XXH3_64bits_update(&state, table, chunk_count * kRecordChunkEntrySize);
  return XXH3_64bits_digest(&state);
}

// The fixed header's fields once their bounds are checked.
struct FixedHeader {
  Codec codec = Codec::kRaw;
  uint32_t chunk_count = 0;
  uint32_t raw_length = 0;
  uint32_t stored_length = 0;
  uint64_t payload_checksum = 0;
  uint64_t header_checksum = 0;
  size_t record_size = 0;
};

// Reads and bound-checks the fixed header (no checksums): what PeekRecordSize promises.
absl::StatusOr<FixedHeader> ReadFixedHeader(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kRecordFixedHeaderSize) {
    return absl::OutOfRangeError(absl::StrCat("record header needs ", kRecordFixedHeaderSize,
                                              " bytes, only ", bytes.size(), " available"));
  }
  const uint8_t* p = bytes.data();
  if (std::memcmp(p + kMagicOffset, kRecordMagic, sizeof(kRecordMagic)) != 0) {
    return absl::DataLossError(absl::StrCat(
        "bad record magic 0x", absl::Hex(LoadLE32(p + kMagicOffset)), " (expected \"CFRC\")"));
  }
  const uint8_t version = p[kVersionOffset];
  if (version == 0) return absl::DataLossError("record version 0 is invalid");
  if (version > kRecordVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "record version ", version, " is newer than this build (", kRecordVersion, ")"));
  }
  FixedHeader h;
  const uint8_t codec = p[kCodecOffset];
  if (codec > static_cast<uint8_t>(Codec::kZstd)) {
    return absl::DataLossError(
        absl::StrCat("unknown record codec ", codec, " (known: 0 raw, 1 zstd)"));
  }
  h.codec = static_cast<Codec>(codec);
  h.chunk_count = LoadLE16(p + kChunkCountOffset);
  h.raw_length = LoadLE32(p + kRawLengthOffset);
  h.stored_length = LoadLE32(p + kStoredLengthOffset);
  h.payload_checksum = LoadLE64(p + kPayloadChecksumOffset);
  h.header_checksum = LoadLE64(p + kHeaderChecksumOffset);
  if (h.chunk_count == 0 || h.chunk_count > kMaxRecordChunks) {
    return absl::DataLossError(absl::StrCat("record chunk count ", h.chunk_count,
                                            " is out of range 1..", kMaxRecordChunks));
  }
  // Every chunk is at least one byte, so raw_length >= chunk_count.
  if (h.raw_length < h.chunk_count || h.raw_length > kMaxRecordRawLength) {
    return absl::DataLossError(absl::StrCat("record raw length ", h.raw_length, " is out of range ",
                                            h.chunk_count, "..", kMaxRecordRawLength, " for ",
                                            h.chunk_count, " chunks"));
  }
  if (h.codec == Codec::kRaw && h.stored_length != h.raw_length) {
    return absl::DataLossError(absl::StrCat("raw record stores ", h.stored_length,
                                            " bytes but its raw length is ", h.raw_length));
  }
  if (h.codec == Codec::kZstd && h.stored_length > CompressBound(h.raw_length)) {
    return absl::DataLossError(
        absl::StrCat("zstd record stores ", h.stored_length, " bytes, more than zstd's bound ",
                     CompressBound(h.raw_length), " for ", h.raw_length, " raw bytes"));
  }
  h.record_size = RecordHeaderSize(h.chunk_count) + h.stored_length;
  return h;
}

}  // namespace

size_t MaxRecordSize(size_t chunk_count, size_t raw_length) {
  // EncodeRecord stores a frame only when it is smaller than the raw bytes.
  return RecordHeaderSize(chunk_count) + raw_length;
}

absl::StatusOr<size_t> EncodeRecord(absl::Span<const ChunkRef> refs,
                                    absl::Span<const absl::Span<const uint8_t>> chunks,
                                    Compressor* compressor, absl::Span<uint8_t> out) {
  if (refs.size() != chunks.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeRecord got ", refs.size(), " refs but ", chunks.size(), " chunks"));
  }
  const size_t count = refs.size();
  if (count == 0 || count > kMaxRecordChunks) {
    return absl::InvalidArgumentError(
        absl::StrCat("record chunk count ", count, " is out of range 1..", kMaxRecordChunks));
  }
  size_t raw_length = 0;
  for (size_t i = 0; i < count; ++i) {
    if (chunks[i].size() != refs[i].raw_length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk ", i, " has ", chunks[i].size(), " bytes but its ref says ", refs[i].raw_length));
    }
    if (chunks[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", i, " is empty"));
    }
    raw_length += chunks[i].size();
    if (raw_length > kMaxRecordRawLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("record raw length exceeds ", kMaxRecordRawLength, " bytes at chunk ", i));
    }
  }
  const size_t header_size = RecordHeaderSize(count);
  if (out.size() < header_size + raw_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("record buffer has ", out.size(),
                     " bytes, needs MaxRecordSize = ", MaxRecordSize(count, raw_length)));
  }
  uint8_t* const header = out.data();
  uint8_t* const table = header + kRecordFixedHeaderSize;
  uint8_t* const payload = header + header_size;

  Codec codec = Codec::kRaw;
  size_t stored_length = raw_length;
  if (compressor != nullptr && raw_length > 1) {
    // Capacity raw_length - 1: zstd gives up (ResourceExhausted) as soon as the frame cannot
    // be smaller than the raw bytes.
    absl::StatusOr<size_t> frame =
        compressor->Compress(chunks, absl::Span<uint8_t>(payload, raw_length - 1));
    if (frame.ok()) {
      codec = Codec::kZstd;
      stored_length = *frame;
    } else if (frame.status().code() != absl::StatusCode::kResourceExhausted) {
      return frame.status();
    }
  }
  if (codec == Codec::kRaw) {
    uint8_t* dst = payload;
    for (const absl::Span<const uint8_t> chunk : chunks) {
      std::memcpy(dst, chunk.data(), chunk.size());
      dst += chunk.size();
    }
  }

  std::memcpy(header + kMagicOffset, kRecordMagic, sizeof(kRecordMagic));
  header[kVersionOffset] = kRecordVersion;
  header[kCodecOffset] = static_cast<uint8_t>(codec);
  StoreLE16(header + kChunkCountOffset, static_cast<uint16_t>(count));
  StoreLE32(header + kRawLengthOffset, static_cast<uint32_t>(raw_length));
  StoreLE32(header + kStoredLengthOffset, static_cast<uint32_t>(stored_length));
  StoreLE64(header + kPayloadChecksumOffset,
            Checksum64(absl::Span<const uint8_t>(payload, stored_length)));
  for (size_t i = 0; i < count; ++i) {
    uint8_t* entry = table + i * kRecordChunkEntrySize;
    refs[i].id.EncodeTo(entry);
    StoreLE32(entry + kChunkIdSize, refs[i].raw_length);
  }
  StoreLE64(header + kHeaderChecksumOffset, HeaderChecksum(header, table, count));
  return header_size + stored_length;
}

ChunkRef RecordView::chunk(size_t i) const {
  const uint8_t* entry = table + i * kRecordChunkEntrySize;
  ChunkRef ref;
  ref.id = ChunkId::DecodeFrom(entry);
  ref.raw_length = LoadLE32(entry + kChunkIdSize);
  return ref;
}

uint32_t RecordView::raw_offset(size_t i) const {
  uint32_t offset = 0;
  for (size_t j = 0; j < i; ++j)
    offset += LoadLE32(table + j * kRecordChunkEntrySize + kChunkIdSize);
  return offset;
}

absl::StatusOr<size_t> PeekRecordSize(absl::Span<const uint8_t> bytes) {
  absl::StatusOr<FixedHeader> header = ReadFixedHeader(bytes);
  if (!header.ok()) return header.status();
  return header->record_size;
}

absl::StatusOr<RecordView> ParseRecord(absl::Span<const uint8_t> bytes) {
  absl::StatusOr<FixedHeader> header = ReadFixedHeader(bytes);
  if (!header.ok()) return header.status();
  const size_t header_size = RecordHeaderSize(header->chunk_count);
  if (bytes.size() < header_size) {
    return absl::OutOfRangeError(absl::StrCat("record header and chunk table need ", header_size,
                                              " bytes, only ", bytes.size(), " available"));
  }
  const uint8_t* table = bytes.data() + kRecordFixedHeaderSize;
  const uint64_t checksum = HeaderChecksum(bytes.data(), table, header->chunk_count);
  if (checksum != header->header_checksum) {
    return absl::DataLossError(absl::StrCat("record header checksum mismatch: stored 0x",
                                            absl::Hex(header->header_checksum, absl::kZeroPad16),
                                            ", computed 0x",
                                            absl::Hex(checksum, absl::kZeroPad16)));
  }
  // The checksum matched, so a bad table here is a writer's bug, still refused as damage.
  uint64_t sum = 0;
  for (size_t i = 0; i < header->chunk_count; ++i) {
    const uint32_t length = LoadLE32(table + i * kRecordChunkEntrySize + kChunkIdSize);
    if (length == 0) return absl::DataLossError(absl::StrCat("record chunk ", i, " is empty"));
    sum += length;
  }
  if (sum != header->raw_length) {
    return absl::DataLossError(absl::StrCat("record chunk lengths sum to ", sum,
                                            " but its raw length is ", header->raw_length));
  }
  if (bytes.size() < header->record_size) {
    return absl::OutOfRangeError(absl::StrCat("record needs ", header->record_size, " bytes, only ",
                                              bytes.size(), " available"));
  }
  RecordView view;
  view.codec = header->codec;
  view.chunk_count = header->chunk_count;
  view.raw_length = header->raw_length;
  view.stored_length = header->stored_length;
  view.payload_checksum = header->payload_checksum;
  view.table = table;
  view.payload = bytes.subspan(header_size, header->stored_length);
  view.size = header->record_size;
  return view;
}

absl::Status CheckPayload(const RecordView& record) {
  const uint64_t checksum = Checksum64(record.payload);
  if (checksum != record.payload_checksum) {
    return absl::DataLossError(absl::StrCat("record payload checksum mismatch: stored 0x",
                                            absl::Hex(record.payload_checksum, absl::kZeroPad16),
                                            ", computed 0x",
                                            absl::Hex(checksum, absl::kZeroPad16)));
  }
  return absl::OkStatus();
}

absl::Status DecodeRecord(const RecordView& record, Decompressor& decompressor,
                          const ChunkHasher* hasher, absl::Span<uint8_t> raw_out) {
  if (raw_out.size() != record.raw_length) {
    return absl::InvalidArgumentError(absl::StrCat("DecodeRecord output has ", raw_out.size(),
                                                   " bytes, the record holds ", record.raw_length));
  }
  if (absl::Status status = CheckPayload(record); !status.ok()) return status;
  switch (record.codec) {
    case Codec::kRaw:
      if (record.payload.size() != raw_out.size()) {
        return absl::DataLossError("raw record payload size differs from its raw length");
      }
      std::copy(record.payload.begin(), record.payload.end(), raw_out.begin());
      break;
    case Codec::kZstd:
      if (absl::Status status = decompressor.Decompress(record.payload, raw_out); !status.ok()) {
        if (status.code() != absl::StatusCode::kDataLoss) return status;
        return absl::DataLossError(absl::StrCat("record payload: ", status.message()));
      }
      break;
    default:
      return absl::DataLossError(
          absl::StrCat("unknown record codec ", static_cast<int>(record.codec)));
  }
  if (hasher == nullptr) return absl::OkStatus();
  size_t offset = 0;
  for (size_t i = 0; i < record.chunk_count; ++i) {
    const ChunkRef ref = record.chunk(i);
    if (ref.raw_length > raw_out.size() - offset) {
      return absl::DataLossError(absl::StrCat("record chunk ", i, " runs past the raw bytes"));
    }
    const ChunkId actual = hasher->Hash(raw_out.subspan(offset, ref.raw_length));
    if (actual != ref.id) {
      return absl::DataLossError(absl::StrCat("record chunk ", i, " of ", record.chunk_count,
                                              " (raw offset ", offset, ", ", ref.raw_length,
                                              " bytes): id mismatch: expected ", ref.id.ToHex(),
                                              ", actual ", actual.ToHex()));
    }
    offset += ref.raw_length;
  }
  return absl::OkStatus();
}

absl::StatusOr<RecordView> CheckReceivedRecord(absl::Span<const uint8_t> bytes, bool full,
                                               Decompressor& decompressor,
                                               const ChunkHasher* hasher,
                                               std::vector<uint8_t>* scratch) {
  absl::StatusOr<RecordView> view = ParseRecord(bytes);
  if (!view.ok()) return view.status();
  if (view->size != bytes.size()) {
    return absl::DataLossError(absl::StrCat("record has trailing bytes (", bytes.size(),
                                            " bytes for a record of ", view->size, ")"));
  }
  absl::Status checked;
  if (!full) {
    checked = CheckPayload(*view);
  } else if (hasher == nullptr) {
    checked = absl::InvalidArgumentError("full record verification needs a chunk hasher");
  } else {
    scratch->resize(view->raw_length);
    checked = DecodeRecord(*view, decompressor, hasher, absl::MakeSpan(*scratch));
  }
  if (!checked.ok()) return checked;
  return view;
}

}  // namespace chunkferry::codec
