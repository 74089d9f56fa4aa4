#include "engine/format/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/string_view.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "absl/strings/str_cat.h"
#include "engine/format/byte_io.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr char kMagic[4] = {'C', 'F', 'M', 'F'};
constexpr char kTrailerMagic[4] = {'C', 'F', 'M', 'T'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 16;
constexpr size_t kTrailerSize = 48;
constexpr uint8_t kTagData = 1;
constexpr uint8_t kTagZero = 2;
constexpr size_t kDataEntrySize = 1 + 4 + codec::kChunkIdSize;
constexpr size_t kZeroEntrySize = 1 + 8;
constexpr size_t kIoBlock = 1 << 20;

enum class ParseResult { kEntry, kNeedMore, kBad };

// Parses one entry at p[0, avail).
ParseResult ParseEntry(const uint8_t* p, size_t avail, ManifestEntry* e, size_t* used) {
  if (avail < 1) return ParseResult::kNeedMore;
  if (p[0] == kTagData) {
    if (avail < kDataEntrySize) return ParseResult::kNeedMore;
    e->zero = false;
    e->length = LoadU32(p + 1);
    e->id = codec::ChunkId::DecodeFrom(p + 5);
    *used = kDataEntrySize;
    return (e->length == 0 || e->length > kMaxManifestChunk) ? ParseResult::kBad
                                                             : ParseResult::kEntry;
  }
  if (p[0] == kTagZero) {
    if (avail < kZeroEntrySize) return ParseResult::kNeedMore;
    e->zero = true;
    e->length = LoadU64(p + 1);
    e->id = {};
    *used = kZeroEntrySize;
    return e->length == 0 ? ParseResult::kBad : ParseResult::kEntry;
  }
  return ParseResult::kBad;
}

}  // namespace

struct ManifestWriter::HashState {
  XXH3_state_t state;
};

ManifestWriter::ManifestWriter(io::Fd fd, std::string tmp_path)
    : fd_(std::move(fd)), tmp_path_(std::move(tmp_path)), hash_(std::make_unique<HashState>()) {
  XXH3_64bits_reset(&hash_->state);
  buf_.reserve(kIoBlock + 64);
}

ManifestWriter::~ManifestWriter() {
  if (!finished_) {
    fd_.Reset();
    ::unlink(tmp_path_.c_str());
  }
}

absl::StatusOr<std::unique_ptr<ManifestWriter>> ManifestWriter::Create(std::string tmp_path) {
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC));
  std::unique_ptr<ManifestWriter> w(new ManifestWriter(std::move(fd), std::move(tmp_path)));
  std::string header(kMagic, 4);
  PutU16(&header, kVersion);
  PutU16(&header, 0);
  PutU64(&header, 0);
  CF_RETURN_IF_ERROR(w->Append(header.data(), header.size()));
  return w;
}

absl::Status ManifestWriter::Append(const void* p, size_t n) {
  buf_.append(static_cast<const char*>(p), n);
  if (buf_.size() >= kIoBlock) return FlushBuffer();
  return absl::OkStatus();
}

absl::Status ManifestWriter::FlushBuffer() {
  if (buf_.empty()) return absl::OkStatus();
  XXH3_64bits_update(&hash_->state, buf_.data(), buf_.size());
  CF_RETURN_IF_ERROR(io::PwriteFull(fd_.get(), AsBytes(buf_), file_offset_));
  file_offset_ += buf_.size();
  buf_.clear();
  return absl::OkStatus();
}

absl::Status ManifestWriter::FlushZero() {
  if (pending_zero_ == 0) return absl::OkStatus();
  uint8_t e[kZeroEntrySize];
  e[0] = kTagZero;
  StoreU64(e + 1, pending_zero_);
  logical_size_ += pending_zero_;
  pending_zero_ = 0;
  ++zero_entries_;
  return Append(e, sizeof(e));
}

absl::Status ManifestWriter::TooLarge(uint64_t length) const {
  return absl::InvalidArgumentError(absl::StrCat("manifest entries would cover ", logical_size(),
                                                 " + ", length, " bytes, past the limit of ",
                                                 kMaxVolumeSize));
}

absl::Status ManifestWriter::AddData(const codec::ChunkId& id, uint32_t length) {
  if (length == 0 || length > kMaxManifestChunk) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest chunk length ", length, " is out of range"));
  }
  if (length > kMaxVolumeSize - logical_size()) return TooLarge(length);
  CF_RETURN_IF_ERROR(FlushZero());
  uint8_t e[kDataEntrySize];
  e[0] = kTagData;
  StoreU32(e + 1, length);
  id.EncodeTo(e + 5);
  logical_size_ += length;
  ++data_entries_;
  return Append(e, sizeof(e));
}

absl::Status ManifestWriter::AddZero(uint64_t length) {
  if (length > kMaxVolumeSize - logical_size()) return TooLarge(length);
  pending_zero_ += length;
  return absl::OkStatus();
}

absl::Status ManifestWriter::Finish(const VolumeBackupMeta& meta, const std::string& final_path) {
  CF_RETURN_IF_ERROR(FlushZero());
  if (meta.size != logical_size_) {
    return absl::InvalidArgumentError(absl::StrCat("manifest entries cover ", logical_size_,
                                                   " bytes but the volume size is ", meta.size));
  }
  const KvPairs kv = MetaToKv(meta);
  CF_RETURN_IF_ERROR(CheckKv(kv));
  const uint64_t meta_offset = file_offset_ + buf_.size();
  std::string tail;
  EncodeKv(kv, &tail);
  if (tail.size() > kMaxManifestMetaBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the volume backup's metadata takes ",
                                                   tail.size(), " bytes; at most ",
                                                   kMaxManifestMetaBytes));
  }
  PutU64(&tail, meta_offset);
  PutU64(&tail, data_entries_);
  PutU64(&tail, zero_entries_);
  PutU64(&tail, logical_size_);
  tail.append(kTrailerMagic, 4);
  PutU32(&tail, 0);
  CF_RETURN_IF_ERROR(Append(tail.data(), tail.size()));
  CF_RETURN_IF_ERROR(FlushBuffer());
  std::string sum;
  PutU64(&sum, XXH3_64bits_digest(&hash_->state));
  CF_RETURN_IF_ERROR(io::PwriteFull(fd_.get(), AsBytes(sum), file_offset_));
  CF_RETURN_IF_ERROR(io::Fsync(fd_.get(), tmp_path_));
  CF_RETURN_IF_ERROR(fd_.Close());
  // The temporary file is gone after this whatever it returns.
  finished_ = true;
  absl::StatusOr<bool> published = io::PublishFileOnce(tmp_path_, final_path);
  if (absl::IsAlreadyExists(published.status())) {
    return absl::AlreadyExistsError(absl::StrCat(
        "volume backup ", meta.uuid, " is already published (", final_path,
        ") with other contents: a published backup is never replaced; delete it first"));
  }
  return published.status();
}

absl::StatusOr<std::unique_ptr<ManifestReader>> ManifestReader::Open(const std::string& path) {
  std::unique_ptr<ManifestReader> r(new ManifestReader());
  r->path_ = path;
  CF_ASSIGN_OR_RETURN(r->fd_, io::OpenFile(path, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(r->fd_.get(), path));
  auto damaged = [&path](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("manifest ", path, " is damaged: ", why));
  };
  if (size < kHeaderSize + kTrailerSize + 4) return damaged("too short");
  uint8_t head[kHeaderSize];
  CF_RETURN_IF_ERROR(io::PreadFull(r->fd_.get(), absl::MakeSpan(head), 0));
  if (std::memcmp(head, kMagic, 4) != 0) return damaged("not a manifest (bad magic)");
  if (LoadU16(head + 4) != kVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "manifest ", path, " has version ", LoadU16(head + 4), "; this build reads ", kVersion));
  }
  uint8_t trailer[kTrailerSize];
  CF_RETURN_IF_ERROR(io::PreadFull(r->fd_.get(), absl::MakeSpan(trailer), size - kTrailerSize));
  if (std::memcmp(trailer + 32, kTrailerMagic, 4) != 0) return damaged("bad trailer");
  r->meta_offset_ = LoadU64(trailer);
  const uint64_t want_data = LoadU64(trailer + 8);
  const uint64_t want_zero = LoadU64(trailer + 16);
  const uint64_t logical = LoadU64(trailer + 24);
  if (r->meta_offset_ < kHeaderSize || r->meta_offset_ > size - kTrailerSize) {
    return damaged("meta offset out of range");
  }

  // One pass over the whole file: checksum of everything but the stored sum, and every entry.
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  std::string block(kIoBlock, '\0');
  const uint64_t summed = size - 8;
  uint64_t data = 0, zero = 0, covered = 0;
  std::string carry;
  for (uint64_t off = 0; off < summed;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kIoBlock, summed - off));
    auto span = absl::MakeSpan(reinterpret_cast<uint8_t*>(block.data()), n);
    CF_RETURN_IF_ERROR(io::PreadFull(r->fd_.get(), span, off));
    XXH3_64bits_update(&st, block.data(), n);
    // Entries live in [kHeaderSize, meta_offset).
    const uint64_t lo = std::max<uint64_t>(off, kHeaderSize);
    const uint64_t hi = std::min<uint64_t>(off + n, r->meta_offset_);
    if (lo < hi) {
      carry.append(block.data() + (lo - off), hi - lo);
      size_t p = 0;
      ManifestEntry e;
      size_t used = 0;
      for (;;) {
        auto res = ParseEntry(reinterpret_cast<const uint8_t*>(carry.data()) + p, carry.size() - p,
                              &e, &used);
        if (res == ParseResult::kNeedMore) break;
        if (res == ParseResult::kBad) return damaged("bad entry");
        (e.zero ? zero : data)++;
        // Lengths that wrap past 2^64 would pass as a small volume whose restore never ends.
        if (e.length > kMaxVolumeSize - covered) {
          return damaged("entries cover more than 2^63 bytes");
        }
        covered += e.length;
        p += used;
      }
      carry.erase(0, p);
    }
    off += n;
  }
  if (!carry.empty()) return damaged("entries end mid-entry");
  uint8_t sum[8];
  CF_RETURN_IF_ERROR(io::PreadFull(r->fd_.get(), absl::MakeSpan(sum), summed));
  if (XXH3_64bits_digest(&st) != LoadU64(sum)) return damaged("checksum mismatch");
  if (data != want_data || zero != want_zero || covered != logical) {
    return damaged("entry counts do not match the trailer");
  }
  if (size - kTrailerSize - r->meta_offset_ > kMaxManifestMetaBytes) {
    return damaged(absl::StrCat("meta block of ", size - kTrailerSize - r->meta_offset_,
                                " bytes (at most ", kMaxManifestMetaBytes, ")"));
  }
  std::string meta_bytes(size - kTrailerSize - r->meta_offset_, '\0');
  CF_RETURN_IF_ERROR(io::PreadFull(
      r->fd_.get(),
      absl::MakeSpan(reinterpret_cast<uint8_t*>(meta_bytes.data()), meta_bytes.size()),
      r->meta_offset_));
  ByteReader mr(meta_bytes);
  CF_ASSIGN_OR_RETURN(KvPairs kv, DecodeKv(mr, path));
  CF_ASSIGN_OR_RETURN(r->meta_, MetaFromKv(kv, path));
  if (r->meta_.size != logical) return damaged("volume size does not match its entries");
  r->data_entries_ = data;
  r->zero_entries_ = zero;
  r->Rewind();
  return r;
}

void ManifestReader::Rewind() {
  pos_ = kHeaderSize;
  buf_.clear();
  buf_pos_ = 0;
}

absl::Status ManifestReader::Refill() {
  buf_.erase(0, buf_pos_);
  const uint64_t file_pos = pos_ + buf_pos_;
  pos_ = file_pos;
  buf_pos_ = 0;
  const uint64_t have_end = pos_ + buf_.size();
  const size_t n = static_cast<size_t>(std::min<uint64_t>(kIoBlock, meta_offset_ - have_end));
  if (n == 0) return absl::OkStatus();
  const size_t old = buf_.size();
  buf_.resize(old + n);
  return io::PreadFull(fd_.get(), absl::MakeSpan(reinterpret_cast<uint8_t*>(buf_.data()) + old, n),
                       have_end);
}

absl::StatusOr<size_t> ManifestReader::Next(std::vector<ManifestEntry>* out, size_t max) {
  out->clear();
  while (out->size() < max) {
    ManifestEntry e;
    size_t used = 0;
    auto res = ParseEntry(reinterpret_cast<const uint8_t*>(buf_.data()) + buf_pos_,
                          buf_.size() - buf_pos_, &e, &used);
    if (res == ParseResult::kBad) {
      return absl::DataLossError(absl::StrCat("manifest ", path_, " changed while being read"));
    }
    if (res == ParseResult::kNeedMore) {
      if (pos_ + buf_.size() >= meta_offset_) break;
      CF_RETURN_IF_ERROR(Refill());
      continue;
    }
    buf_pos_ += used;
    out->push_back(e);
  }
  return out->size();
}

}  // namespace chunkferry::engine
