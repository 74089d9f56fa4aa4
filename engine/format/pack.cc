#include "engine/format/pack.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/format/byte_io.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr char kMagic[4] = {'C', 'F', 'P', 'K'};
constexpr uint16_t kVersion = 1;
constexpr size_t kScanBlock = 4 << 20;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return 0;
}

void UuidBytes(const std::string& uuid, uint8_t out[16]) {
  for (size_t i = 0; i < 16; ++i) {
    out[i] = static_cast<uint8_t>(
        i * 2 + 1 < uuid.size() ? (HexValue(uuid[2 * i]) << 4) | HexValue(uuid[2 * i + 1]) : 0);
  }
}

// Reads [off, off+n) of the file into buf (n may be cut short at EOF).
absl::Status ReadAt(int fd, uint64_t off, size_t n, std::string* buf) {
  buf->resize(n);
  return io::PreadFull(fd, absl::MakeSpan(reinterpret_cast<uint8_t*>(buf->data()), n), off);
}

}  // namespace

std::string PackFileName(uint32_t pack_id) { return absl::StrFormat("%08x.pack", pack_id); }

std::string EncodePackHeader(uint32_t pack_id, const std::string& store_uuid) {
  std::string h(kMagic, 4);
  PutU16(&h, kVersion);
  PutU16(&h, 0);
  PutU32(&h, pack_id);
  PutU32(&h, 0);
  uint8_t u[16];
  UuidBytes(store_uuid, u);
  h.append(reinterpret_cast<const char*>(u), 16);
  return h;
}

absl::Status CheckPackHeader(absl::Span<const uint8_t> header, uint32_t pack_id,
                             const std::string& store_uuid, const std::string& path) {
  if (header.size() < kPackHeaderSize || std::memcmp(header.data(), kMagic, 4) != 0) {
    return absl::DataLossError(absl::StrCat("pack ", path, ": not a pack file (bad magic)"));
  }
  const uint16_t version = LoadU16(header.data() + 4);
  if (version != kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("pack ", path, " has version ", version, "; this build reads ", kVersion));
  }
  if (LoadU32(header.data() + 8) != pack_id) {
    return absl::DataLossError(absl::StrCat("pack ", path, ": header names pack ",
                                            LoadU32(header.data() + 8), ", expected ", pack_id));
  }
  uint8_t u[16];
  UuidBytes(store_uuid, u);
  if (std::memcmp(header.data() + 16, u, 16) != 0) {
    return absl::DataLossError(absl::StrCat("pack ", path, " belongs to another store"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackScan> ScanPack(int fd, uint32_t pack_id, uint64_t start, uint64_t file_size,
                                  ScanCheck check, const RecordVisitor& visit) {
  PackScan scan;
  scan.valid_end = start;
  // Start of a run of records with intact headers and damaged payloads (kPayload), not yet known
  // to be damage (an intact record follows) or a torn tail (none does); 0 when there is none
  // (offset 0 holds the pack header, never a record).
  uint64_t bad_payloads = 0;
  std::string buf;
  uint64_t buf_off = start;  // file offset of buf[0]
  uint64_t pos = start;
  auto bytes_at = [&](uint64_t off) {
    return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(buf.data()) + (off - buf_off),
                               buf.size() - (off - buf_off));
  };
  // Makes sure buf holds [off, off+want) or up to EOF.
  auto ensure = [&](uint64_t off, size_t want) -> absl::Status {
    if (off >= buf_off && off + want <= buf_off + buf.size()) return absl::OkStatus();
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(std::max(want, kScanBlock), file_size - off));
    buf_off = off;
    return ReadAt(fd, off, n, &buf);
  };
  auto torn = [&] {
    scan.torn_tail = true;
    // Damage found after the last intact record is part of the tail.
    while (!scan.damaged.empty() && scan.damaged.back().first >= scan.valid_end) {
      scan.damaged.pop_back();
    }
    return scan;
  };
  while (pos < file_size) {
    if (file_size - pos < codec::kRecordFixedHeaderSize) return torn();  // not a whole header
    CF_RETURN_IF_ERROR(ensure(pos, codec::kRecordFixedHeaderSize));
    const absl::StatusOr<size_t> size = codec::PeekRecordSize(bytes_at(pos));
    absl::StatusOr<codec::RecordView> rec = absl::DataLossError("damaged record header");
    if (size.ok()) {
      CF_RETURN_IF_ERROR(
          ensure(pos, static_cast<size_t>(std::min<uint64_t>(*size, file_size - pos))));
      rec = codec::ParseRecord(bytes_at(pos));
      const uint64_t table_end =
          codec::RecordHeaderSize(LoadU16(bytes_at(pos).data() + 6));  // chunk_count
      if (absl::IsOutOfRange(rec.status()) && table_end <= file_size - pos) {
        // An intact header (its checksum covers the whole table, which is there) says the
        // record goes on past the end: its write was cut short. Whatever its payload holds is
        // not a record.
        return torn();
      }
      // Otherwise the header could not be checked (its table would run past the end): damage
      // if an intact record follows, a torn tail if not — the search below decides.
      if (absl::IsOutOfRange(rec.status())) rec = absl::DataLossError("unverifiable header");
    }
    if (rec.ok() && check == ScanCheck::kPayload && !codec::CheckPayload(*rec).ok()) {
      // The header is intact, so its size can be trusted to find the next record.
      if (bad_payloads == 0) bad_payloads = pos;
      pos += rec->size;
      continue;
    }
    if (rec.ok()) {
      if (bad_payloads != 0) scan.damaged.emplace_back(std::exchange(bad_payloads, 0), pos);
      RecordLocation loc{pack_id, static_cast<uint32_t>(rec->size), pos};
      visit(loc, *rec, bytes_at(pos).subspan(0, rec->size));
      pos += rec->size;
      scan.valid_end = pos;
      continue;
    }
    // Damaged at `pos` (a record version this build does not know counts too: the store's
    // descriptor would have said so): look for the next intact record header.
    const uint64_t damage_begin = bad_payloads != 0 ? std::exchange(bad_payloads, 0) : pos;
    uint64_t next = 0;
    for (uint64_t probe = pos + 1; probe + codec::kRecordFixedHeaderSize <= file_size && !next;
         ++probe) {
      CF_RETURN_IF_ERROR(ensure(probe, codec::kRecordFixedHeaderSize));
      auto b = bytes_at(probe);
      if (b[0] != codec::kRecordMagic[0] || std::memcmp(b.data(), codec::kRecordMagic, 4) != 0) {
        continue;
      }
      auto probe_size = codec::PeekRecordSize(b);
      if (!probe_size.ok() || *probe_size > file_size - probe) continue;
      CF_RETURN_IF_ERROR(ensure(probe, *probe_size));
      if (codec::ParseRecord(bytes_at(probe)).ok()) next = probe;
    }
    if (next == 0) return torn();
    scan.damaged.emplace_back(damage_begin, next);
    pos = next;
  }
  if (bad_payloads != 0) return torn();
  return scan;
}

}  // namespace chunkferry::engine
