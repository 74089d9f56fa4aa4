#include "engine/local/chunk_index.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/format/byte_io.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr char kMagic[4] = {'C', 'F', 'I', 'X'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 4 + 2 + 2 + 4 + 8 + 8;
constexpr size_t kPackSize = 4 + 8;
constexpr size_t kRecordSize = 4 + 8 + 4;
constexpr size_t kEntrySize = 16 + 4 + 2;

}  // namespace

void ChunkIndex::InsertRecord(const RecordLocation& loc, const codec::RecordView& record) {
  const uint32_t number = static_cast<uint32_t>(records_.size());
  bool used = false;
  for (uint32_t i = 0; i < record.chunk_count; ++i) {
    used |= map_.try_emplace(record.chunk(i).id, Entry{number, static_cast<uint16_t>(i)}).second;
  }
  // A record all of whose chunks were known already is not referenced: do not keep it.
  if (used) records_.push_back(loc);
}

namespace {
// How many ids ahead FindAll and ContainsAll prefetch: enough to cover a memory latency.
constexpr size_t kPrefetchAhead = 8;
}  // namespace

template <typename Visit>
void ChunkIndex::VisitPrefetched(absl::Span<const codec::ChunkId> ids, Visit visit) const {
  for (size_t i = 0; i < ids.size() && i < kPrefetchAhead; ++i) map_.prefetch(ids[i]);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i + kPrefetchAhead < ids.size()) map_.prefetch(ids[i + kPrefetchAhead]);
    visit(i);
  }
}

void ChunkIndex::FindAll(absl::Span<const codec::ChunkId> ids,
                         absl::Span<std::optional<ChunkLocation>> out) const {
  VisitPrefetched(ids, [&](size_t i) { out[i] = Find(ids[i]); });
}

void ChunkIndex::ContainsAll(absl::Span<const codec::ChunkId> ids, std::vector<bool>* out) const {
  out->resize(ids.size());
  VisitPrefetched(ids, [&](size_t i) { (*out)[i] = Contains(ids[i]); });
}

void ChunkIndex::FindRecordNumbers(absl::Span<const codec::ChunkId> ids,
                                   absl::Span<int64_t> out) const {
  VisitPrefetched(ids, [&](size_t i) {
    auto it = map_.find(ids[i]);
    if (it == map_.end()) {
      out[i] = -1;
      return;
    }
    Pin(it->second.record);
    out[i] = it->second.record;
  });
}

size_t ChunkIndex::CountLacking(const codec::RecordView& record) const {
  size_t lacking = 0;
  for (uint32_t i = 0; i < record.chunk_count; ++i) lacking += !Contains(record.chunk(i).id);
  return lacking;
}

void ChunkIndex::ForgetChunksOf(const codec::RecordView& record, size_t first) {
  for (uint32_t i = 0; i < record.chunk_count; ++i) {
    auto it = map_.find(record.chunk(i).id);
    if (it != map_.end() && it->second.record >= first) map_.erase(it);
  }
}

bool ChunkIndex::Insert(const codec::ChunkId& id, const ChunkLocation& loc) {
  if (map_.contains(id)) return false;
  // Chunks usually arrive record by record: reuse the last record's number when it matches.
  if (records_.empty() || !(records_.back() == loc.record)) records_.push_back(loc.record);
  map_.emplace(id, Entry{static_cast<uint32_t>(records_.size() - 1), loc.slot});
  return true;
}

void ChunkIndex::RemoveIf(const std::function<bool(const RecordLocation&)>& drop) {
  std::vector<bool> gone(records_.size());
  for (size_t i = 0; i < records_.size(); ++i) gone[i] = drop(records_[i]);
  absl::erase_if(map_, [&](const auto& kv) { return gone[kv.second.record]; });
}

void ChunkIndex::EraseChunksOf(const std::function<bool(uint32_t record)>& dead) {
  absl::erase_if(map_, [&](const auto& kv) { return dead(kv.second.record); });
}

absl::Status ChunkIndex::Save(const std::string& path) const {
  // Only records some chunk names are written, renumbered densely: records that a rollback or a
  // garbage collection left without chunks do not outlive the process.
  std::vector<uint32_t> renumber(records_.size(), UINT32_MAX);
  for (const auto& [chunk, e] : map_) renumber[e.record] = 0;
  uint32_t kept = 0;
  for (uint32_t& n : renumber) {
    if (n == 0) n = kept++;
  }
  std::string out(kMagic, 4);
  out.reserve(kHeaderSize + coverage_.size() * kPackSize + kept * kRecordSize +
              map_.size() * kEntrySize + 8);
  PutU16(&out, kVersion);
  PutU16(&out, 0);
  PutU32(&out, static_cast<uint32_t>(coverage_.size()));
  PutU64(&out, kept);
  PutU64(&out, map_.size());
  for (const auto& [pack, len] : coverage_) {
    PutU32(&out, pack);
    PutU64(&out, len);
  }
  for (size_t i = 0; i < records_.size(); ++i) {
    if (renumber[i] == UINT32_MAX) continue;
    PutU32(&out, records_[i].pack);
    PutU64(&out, records_[i].offset);
    PutU32(&out, records_[i].size);
  }
  uint8_t id[16];
  for (const auto& [chunk, e] : map_) {
    chunk.EncodeTo(id);
    out.append(reinterpret_cast<const char*>(id), 16);
    PutU32(&out, renumber[e.record]);
    PutU16(&out, e.slot);
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
  if (data.size() < kHeaderSize + 8 || std::memcmp(data.data(), kMagic, 4) != 0) {
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
  const uint64_t packs = r.U32();
  const uint64_t records = r.U64();
  const uint64_t entries = r.U64();
  // Compare by division: a damaged count must not overflow into a plausible size.
  const uint64_t rest = r.remaining();
  if (!r.ok() || packs > rest / kPackSize || records > rest / kRecordSize ||
      entries > rest / kEntrySize ||
      packs * kPackSize + records * kRecordSize + entries * kEntrySize != rest) {
    return damaged("sizes do not add up");
  }
  ChunkIndex index;
  for (uint64_t i = 0; i < packs; ++i) {
    const uint32_t pack = r.U32();
    index.coverage_[pack] = r.U64();
  }
  index.records_.reserve(records);
  for (uint64_t i = 0; i < records; ++i) {
    RecordLocation loc;
    loc.pack = r.U32();
    loc.offset = r.U64();
    loc.size = r.U32();
    index.records_.push_back(loc);
  }
  index.map_.reserve(entries);
  for (uint64_t i = 0; i < entries; ++i) {
    const codec::ChunkId id = codec::ChunkId::DecodeFrom(r.Take(16));
    Entry e;
    e.record = r.U32();
    e.slot = r.U16();
    if (e.record >= records) return damaged("an entry names a record that is not there");
    index.map_.emplace(id, e);
  }
  return index;
}

}  // namespace chunkferry::engine
