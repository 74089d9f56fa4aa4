#include "engine/chunk_index.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/byte_io.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr char kMagic[4] = {'C', 'F', 'I', 'X'};
constexpr uint16_t kVersion = 1;
constexpr size_t kEntrySize = 16 + 4 + 8 + 4 + 2;

}  // namespace

void ChunkIndex::InsertRecord(const RecordLocation& loc, const codec::RecordView& record) {
  for (uint32_t i = 0; i < record.chunk_count; ++i) {
    Insert(record.chunk(i).id, ChunkLocation{loc, static_cast<uint16_t>(i)});
  }
}

absl::Status ChunkIndex::Save(const std::string& path) const {
  std::string out(kMagic, 4);
  out.reserve(32 + coverage_.size() * 12 + map_.size() * kEntrySize);
  PutU16(&out, kVersion);
  PutU16(&out, 0);
  PutU32(&out, static_cast<uint32_t>(coverage_.size()));
  PutU64(&out, map_.size());
  for (const auto& [pack, len] : coverage_) {
    PutU32(&out, pack);
    PutU64(&out, len);
  }
  uint8_t id[16];
  for (const auto& [chunk, loc] : map_) {
    chunk.EncodeTo(id);
    out.append(reinterpret_cast<const char*>(id), 16);
    PutU32(&out, loc.record.pack);
    PutU64(&out, loc.record.offset);
    PutU32(&out, loc.record.size);
    PutU16(&out, loc.slot);
  }
  PutU64(&out, codec::Checksum64(AsBytes(out)));
  return io::WriteFileAtomic(path, out);
}

absl::StatusOr<ChunkIndex> ChunkIndex::Load(const std::string& path) {
  auto read = io::ReadFileToString(path);
  if (!read.ok()) return read.status();
  const std::string& data = *read;
  auto damaged = [&path](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("index ", path, " is damaged: ", why));
  };
  if (data.size() < 28 || std::memcmp(data.data(), kMagic, 4) != 0) {
    return damaged("bad magic or too short");
  }
  const absl::string_view body(data.data(), data.size() - 8);
  if (codec::Checksum64(AsBytes(body)) !=
      LoadU64(reinterpret_cast<const uint8_t*>(data.data() + body.size()))) {
    return damaged("checksum mismatch");
  }
  ByteReader r(body);
  r.Take(4);
  if (r.U16() != kVersion) return damaged("unknown version");
  r.U16();
  const uint32_t packs = r.U32();
  const uint64_t entries = r.U64();
  // Divide rather than multiply: a damaged count must not overflow into a plausible size.
  if (!r.ok() || r.remaining() < packs * 12ull ||
      (r.remaining() - packs * 12ull) / kEntrySize != entries ||
      (r.remaining() - packs * 12ull) % kEntrySize != 0) {
    return damaged("sizes do not add up");
  }
  ChunkIndex index;
  for (uint32_t i = 0; i < packs; ++i) {
    const uint32_t pack = r.U32();
    index.coverage_[pack] = r.U64();
  }
  index.map_.reserve(entries);
  for (uint64_t i = 0; i < entries; ++i) {
    const codec::ChunkId id = codec::ChunkId::DecodeFrom(r.Take(16));
    ChunkLocation loc;
    loc.record.pack = r.U32();
    loc.record.offset = r.U64();
    loc.record.size = r.U32();
    loc.slot = r.U16();
    index.map_.emplace(id, loc);
  }
  return index;
}

}  // namespace chunkferry::engine
