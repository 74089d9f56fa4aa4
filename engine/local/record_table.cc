#include "engine/local/record_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "engine/format/byte_io.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kSlotSize = 16;

uint16_t SlotCheck(const uint8_t* slot) {
  return static_cast<uint16_t>(codec::Checksum64(absl::MakeConstSpan(slot, 14)) >> 48);
}

void EncodeSlot(const RecordLocation& loc, uint8_t* out) {
  StoreU32(out, loc.pack);
  StoreU32(out + 4, loc.size);
  for (int i = 0; i < 6; ++i) out[8 + i] = static_cast<uint8_t>(loc.offset >> (8 * i));
  const uint16_t check = SlotCheck(out);
  out[14] = static_cast<uint8_t>(check);
  out[15] = static_cast<uint8_t>(check >> 8);
}

bool DecodeSlot(const uint8_t* in, RecordLocation* loc) {
  uint8_t slot[kSlotSize];
  std::memcpy(slot, in, kSlotSize);  // one copy, checked as a whole
  if (LoadU16(slot + 14) != SlotCheck(slot)) return false;
  loc->pack = LoadU32(slot);
  loc->size = LoadU32(slot + 4);
  loc->offset = 0;
  for (int i = 0; i < 6; ++i) loc->offset |= uint64_t{slot[8 + i]} << (8 * i);
  return true;
}

}  // namespace

const uint8_t* RecordTable::Slot(uint64_t n, bool reread) const {
  if (cache_.empty()) cache_.resize(kCachedBlocks);
  const uint64_t number = n / kBlockSlots;
  Block& block = cache_[number % kCachedBlocks];
  if (block.number != number || reread) {
    block.number = UINT64_MAX;
    const uint64_t first = number * kBlockSlots;
    const uint64_t slots = std::min<uint64_t>(kBlockSlots, persisted_ - first);
    if (!io::PreadFull(fd_.get(), absl::MakeSpan(block.bytes, slots * kSlotSize), first * kSlotSize)
             .ok()) {
      return nullptr;
    }
    block.number = number;
  }
  return block.bytes + (n % kBlockSlots) * kSlotSize;
}

absl::StatusOr<RecordTable> RecordTable::Open(const std::string& path, uint64_t count,
                                              bool writable) {
  RecordTable t;
  t.path_ = path;
  t.writable_ = writable;
  CF_ASSIGN_OR_RETURN(t.fd_,
                      io::OpenFile(path, (writable ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(t.fd_.get(), path));
  if (size / kSlotSize < count) {
    return absl::DataLossError(absl::StrCat("index record table ", path, " holds ",
                                            size / kSlotSize, " records where ", count,
                                            " were saved"));
  }
  if (writable && size != count * kSlotSize &&
      ::ftruncate(t.fd_.get(), static_cast<off_t>(count * kSlotSize)) != 0) {
    return io::ErrnoStatus(errno, "ftruncate", path);
  }
  t.persisted_ = count;
  return t;
}

RecordTable RecordTable::Fresh(const std::string& path) {
  RecordTable t;
  t.path_ = path;
  t.writable_ = true;
  t.cut_ = true;
  return t;
}

RecordLocation RecordTable::Get(uint64_t n) const {
  if (n >= persisted_) {
    // A number past the table comes only from a damaged run: no record (pack 0), as for a slot
    // whose check fails.
    return n - persisted_ < tail_.size() ? tail_[n - persisted_] : RecordLocation{};
  }
  if (!moved_.empty()) {
    auto it = moved_.find(n);
    if (it != moved_.end()) return it->second;
  }
  RecordLocation loc;
  // A slot another process is rewriting may read torn, and a cached one may be stale after a
  // torn read: read it again.
  for (int tries = 0; tries < 3; ++tries) {
    const uint8_t* slot = Slot(n, /*reread=*/tries > 0);
    if (slot != nullptr && DecodeSlot(slot, &loc)) return loc;
  }
  return RecordLocation{};
}

void RecordTable::Truncate(uint64_t first) {
  if (first >= persisted_) tail_.resize(first - persisted_);
}

void RecordTable::Set(uint64_t n, const RecordLocation& loc) {
  if (n >= persisted_) {
    tail_[n - persisted_] = loc;
  } else {
    moved_[n] = loc;
  }
}

void RecordTable::Clear() {
  cache_.clear();
  persisted_ = 0;
  tail_.clear();
  moved_.clear();
  cut_ = writable_;
}

absl::Status RecordTable::Persist() {
  if (!writable_ || path_.empty() || !dirty()) return absl::OkStatus();
  if (cut_) {
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
      return io::ErrnoStatus(errno, "unlink", path_);
    }
    CF_ASSIGN_OR_RETURN(fd_, io::OpenFile(path_, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC));
    cut_ = false;
  }
  std::string bytes(tail_.size() * kSlotSize, '\0');
  for (size_t i = 0; i < tail_.size(); ++i) {
    EncodeSlot(tail_[i], reinterpret_cast<uint8_t*>(bytes.data()) + i * kSlotSize);
  }
  CF_RETURN_IF_ERROR(io::PwriteFull(fd_.get(), AsBytes(bytes), persisted_ * kSlotSize));
  uint8_t slot[kSlotSize];
  for (const auto& [n, loc] : moved_) {
    EncodeSlot(loc, slot);
    CF_RETURN_IF_ERROR(io::PwriteFull(fd_.get(), absl::MakeConstSpan(slot), n * kSlotSize));
  }
  if (::fdatasync(fd_.get()) != 0) return io::ErrnoStatus(errno, "fdatasync", path_);
  persisted_ += tail_.size();
  tail_.clear();
  moved_.clear();
  cache_.clear();  // moved slots
  return absl::OkStatus();
}

}  // namespace chunkferry::engine
