#include "engine/format/manifest_delta.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <limits>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "absl/strings/str_cat.h"
#include "engine/format/byte_io.h"
#include "engine/format/kv_block.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr char kMagic[4] = {'C', 'F', 'M', 'D'};
constexpr size_t kHeaderSize = 8;
constexpr size_t kChecksumSize = 8;
constexpr uint8_t kOpEnd = 0;
constexpr uint8_t kOpCopy = 1;
constexpr uint8_t kOpLiteral = 2;
constexpr size_t kEndSize = 1 + 8 + 8;
// Literal entries buffered by the encoder before they go out as one LIT op.
constexpr size_t kMaxLiteralRun = 4096;
constexpr size_t kIoBlock = 1 << 20;
// Longest item the decoder parses at once: a literal entry (10-byte varint + id) or an op.
constexpr size_t kMaxItem = 32;

// One step of the entries hash: XXH3-64 of (u8 zero, u64 length, 16-byte id or zeros), seeded
// with the hash so far.
uint64_t HashEntry(uint64_t h, const ManifestEntry& e) {
  uint8_t b[1 + 8 + codec::kChunkIdSize] = {};
  b[0] = e.zero ? 1 : 0;
  StoreU64(b + 1, e.length);
  if (!e.zero) e.id.EncodeTo(b + 9);
  return XXH3_64bits_withSeed(b, sizeof(b), h);
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Buffers the delta's bytes, hashes them and hands them to the sink in blocks.
class DeltaWriter {
 public:
  explicit DeltaWriter(const std::function<absl::Status(absl::string_view)>& out) : out_(out) {
    XXH3_64bits_reset(&state_);
  }
  std::string& buf() { return buf_; }
  absl::Status MaybeFlush() { return buf_.size() >= kIoBlock ? Flush() : absl::OkStatus(); }
  absl::Status Flush() {
    if (buf_.empty()) return absl::OkStatus();
    XXH3_64bits_update(&state_, buf_.data(), buf_.size());
    bytes_ += buf_.size();
    absl::Status st = out_(buf_);
    buf_.clear();
    return st;
  }
  absl::Status Finish() {
    CF_RETURN_IF_ERROR(Flush());
    PutU64(&buf_, XXH3_64bits_digest(&state_));
    bytes_ += buf_.size();
    absl::Status st = out_(buf_);
    buf_.clear();
    return st;
  }
  uint64_t bytes() const { return bytes_; }

 private:
  const std::function<absl::Status(absl::string_view)>& out_;
  std::string buf_;
  XXH3_state_t state_;
  uint64_t bytes_ = 0;
};

}  // namespace

// ---- BaseCursor. ----

BaseCursor::BaseCursor(ManifestSource* base) : base_(base) {
  if (base_ != nullptr) base_->Rewind();
}

absl::StatusOr<const ManifestEntry*> BaseCursor::At(uint64_t offset) {
  if (base_ == nullptr) return nullptr;
  for (;;) {
    if (pos_ == batch_.size()) {
      if (end_) return nullptr;
      CF_ASSIGN_OR_RETURN(size_t n, base_->Next(&batch_, 4096));
      pos_ = 0;
      if (n == 0) {
        end_ = true;
        return nullptr;
      }
      continue;
    }
    const ManifestEntry& e = batch_[pos_];
    if (start_ >= offset) return start_ == offset ? &e : nullptr;
    start_ += e.length;
    ++pos_;
  }
}

// ---- Encoder. ----

absl::Status EncodeManifestDelta(const VolumeBackupMeta& meta, ManifestSource& entries,
                                 ManifestSource& base,
                                 const std::function<absl::Status(absl::string_view)>& out,
                                 DeltaStats* stats) {
  const KvPairs kv = MetaToKv(meta);
  CF_RETURN_IF_ERROR(CheckKv(kv));
  DeltaWriter w(out);
  w.buf().append(kMagic, 4);
  PutU16(&w.buf(), kManifestDeltaVersion);
  PutU16(&w.buf(), 0);
  EncodeKv(kv, &w.buf());

  DeltaStats local;
  DeltaStats& s = stats != nullptr ? *stats : local;
  s = DeltaStats();
  uint64_t copy_run = 0;
  std::string literals;
  size_t literal_count = 0;
  auto flush_copy = [&]() -> absl::Status {
    if (copy_run == 0) return absl::OkStatus();
    w.buf().push_back(static_cast<char>(kOpCopy));
    PutVarint(&w.buf(), copy_run);
    copy_run = 0;
    return w.MaybeFlush();
  };
  auto flush_literals = [&]() -> absl::Status {
    if (literal_count == 0) return absl::OkStatus();
    w.buf().push_back(static_cast<char>(kOpLiteral));
    PutVarint(&w.buf(), literal_count);
    w.buf().append(literals);
    literals.clear();
    literal_count = 0;
    return w.MaybeFlush();
  };

  BaseCursor cursor(&base);
  entries.Rewind();
  std::vector<ManifestEntry> batch;
  uint64_t offset = 0, hash = 0;
  for (;;) {
    CF_ASSIGN_OR_RETURN(size_t n, entries.Next(&batch, 4096));
    if (n == 0) break;
    for (const ManifestEntry& e : batch) {
      if (e.length == 0 || e.length > (std::numeric_limits<uint64_t>::max() >> 1) ||
          e.length > std::numeric_limits<uint64_t>::max() - offset) {
        return absl::InvalidArgumentError(absl::StrCat(
            "manifest of ", meta.uuid, " has an entry of ", e.length, " bytes at offset ", offset));
      }
      CF_ASSIGN_OR_RETURN(const ManifestEntry* b, cursor.At(offset));
      hash = HashEntry(hash, e);
      ++s.entries;
      if (b != nullptr && SameEntry(*b, e)) {
        CF_RETURN_IF_ERROR(flush_literals());
        ++copy_run;
        ++s.copied;
      } else {
        CF_RETURN_IF_ERROR(flush_copy());
        PutVarint(&literals, (e.length << 1) | (e.zero ? 1 : 0));
        if (!e.zero) {
          uint8_t id[codec::kChunkIdSize];
          e.id.EncodeTo(id);
          literals.append(reinterpret_cast<const char*>(id), sizeof(id));
        }
        ++literal_count;
        ++s.literal;
        if (literal_count >= kMaxLiteralRun) CF_RETURN_IF_ERROR(flush_literals());
      }
      offset += e.length;
    }
  }
  CF_RETURN_IF_ERROR(flush_copy());
  CF_RETURN_IF_ERROR(flush_literals());
  w.buf().push_back(static_cast<char>(kOpEnd));
  PutU64(&w.buf(), s.entries);
  PutU64(&w.buf(), hash);
  CF_RETURN_IF_ERROR(w.Finish());
  s.bytes = w.bytes();
  return absl::OkStatus();
}

// ---- Decoder. ----

absl::StatusOr<std::unique_ptr<ManifestDeltaSource>> ManifestDeltaSource::Open(
    const std::string& path, ManifestSource* base, std::string what) {
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(fd.get(), path));
  std::unique_ptr<ManifestDeltaSource> d(new ManifestDeltaSource(std::move(fd), base, what));
  if (size < kHeaderSize + 4 + kEndSize + kChecksumSize) return d->Malformed("too short");
  d->end_ = size - kChecksumSize;
  // The checksum first, over the whole file: a damaged delta is refused before any op is read.
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  std::string block(kIoBlock, '\0');
  for (uint64_t off = 0; off < d->end_;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kIoBlock, d->end_ - off));
    CF_RETURN_IF_ERROR(io::PreadFull(
        d->fd_.get(), absl::MakeSpan(reinterpret_cast<uint8_t*>(block.data()), n), off));
    XXH3_64bits_update(&st, block.data(), n);
    off += n;
  }
  uint8_t sum[kChecksumSize];
  CF_RETURN_IF_ERROR(io::PreadFull(d->fd_.get(), absl::MakeSpan(sum), d->end_));
  if (XXH3_64bits_digest(&st) != LoadU64(sum)) {
    return absl::DataLossError(
        absl::StrCat("manifest delta ", d->what_, " is damaged: checksum mismatch"));
  }
  uint8_t head[kHeaderSize];
  CF_RETURN_IF_ERROR(io::PreadFull(d->fd_.get(), absl::MakeSpan(head), 0));
  if (std::memcmp(head, kMagic, 4) != 0) return d->Malformed("bad magic");
  if (LoadU16(head + 4) != kManifestDeltaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("manifest delta ", d->what_, " has version ",
                                                      LoadU16(head + 4), "; this build reads ",
                                                      kManifestDeltaVersion));
  }
  if (LoadU16(head + 6) != 0) return d->Malformed("unknown flags");
  // The meta block: read a bounded prefix and decode it there.
  const size_t meta_avail =
      static_cast<size_t>(std::min<uint64_t>(kMaxManifestMetaBytes, d->end_ - kHeaderSize));
  std::string meta_bytes(meta_avail, '\0');
  CF_RETURN_IF_ERROR(io::PreadFull(
      d->fd_.get(),
      absl::MakeSpan(reinterpret_cast<uint8_t*>(meta_bytes.data()), meta_bytes.size()),
      kHeaderSize));
  ByteReader mr(meta_bytes);
  auto kv = DecodeKv(mr, absl::StrCat("manifest delta ", d->what_));
  if (!kv.ok()) return d->Malformed(kv.status().message());
  auto meta = MetaFromKv(*kv, absl::StrCat("manifest delta ", d->what_));
  if (!meta.ok()) return d->Malformed(meta.status().message());
  d->meta_ = *std::move(meta);
  d->ops_begin_ = kHeaderSize + mr.position();
  d->Rewind();
  return d;
}

absl::Status ManifestDeltaSource::Malformed(absl::string_view why) const {
  return absl::InvalidArgumentError(absl::StrCat("manifest delta ", what_, " is malformed: ", why));
}

void ManifestDeltaSource::Rewind() {
  buf_.clear();
  buf_pos_ = 0;
  buf_file_ = ops_begin_;
  cursor_ = BaseCursor(base_);
  offset_ = 0;
  copy_left_ = 0;
  literal_left_ = 0;
  emitted_ = 0;
  hash_ = 0;
  done_ = false;
}

absl::Status ManifestDeltaSource::Ensure(size_t n) {
  if (buf_.size() - buf_pos_ >= n) return absl::OkStatus();
  buf_.erase(0, buf_pos_);
  buf_file_ += buf_pos_;
  buf_pos_ = 0;
  const uint64_t have_end = buf_file_ + buf_.size();
  const size_t more = static_cast<size_t>(std::min<uint64_t>(kIoBlock, end_ - have_end));
  if (more == 0) return absl::OkStatus();
  const size_t old = buf_.size();
  buf_.resize(old + more);
  return io::PreadFull(
      fd_.get(), absl::MakeSpan(reinterpret_cast<uint8_t*>(buf_.data()) + old, more), have_end);
}

absl::StatusOr<uint64_t> ManifestDeltaSource::Varint(absl::string_view field) {
  uint64_t v = 0;
  for (int i = 0; i < 10; ++i) {
    if (buf_pos_ >= buf_.size()) return Malformed(absl::StrCat("truncated in ", field));
    const uint8_t b = static_cast<uint8_t>(buf_[buf_pos_++]);
    if (i == 9 && b > 1) return Malformed(absl::StrCat(field, " overflows 64 bits"));
    v |= uint64_t{b & 0x7fu} << (7 * i);
    if ((b & 0x80) == 0) return v;
  }
  return Malformed(absl::StrCat(field, " overflows 64 bits"));
}

absl::StatusOr<size_t> ManifestDeltaSource::Next(std::vector<ManifestEntry>* out, size_t max) {
  out->clear();
  while (out->size() < max && !done_) {
    if (copy_left_ > 0) {
      CF_ASSIGN_OR_RETURN(const ManifestEntry* b, cursor_.At(offset_));
      if (b == nullptr) {
        return Malformed(absl::StrCat("COPY at byte offset ", offset_,
                                      ": the base has no entry starting there"));
      }
      const ManifestEntry e = *b;
      if (e.length > std::numeric_limits<uint64_t>::max() - offset_) {
        return Malformed("entries cover more than 2^64 bytes");
      }
      --copy_left_;
      offset_ += e.length;
      hash_ = HashEntry(hash_, e);
      ++emitted_;
      out->push_back(e);
      continue;
    }
    CF_RETURN_IF_ERROR(Ensure(kMaxItem));
    if (literal_left_ > 0) {
      CF_ASSIGN_OR_RETURN(uint64_t v, Varint("a literal entry"));
      ManifestEntry e;
      e.zero = (v & 1) != 0;
      e.length = v >> 1;
      if (e.length == 0) return Malformed("a literal entry of 0 bytes");
      if (!e.zero) {
        if (e.length > kMaxManifestChunk) {
          return Malformed(absl::StrCat("a literal chunk of ", e.length, " bytes"));
        }
        if (buf_.size() - buf_pos_ < codec::kChunkIdSize) {
          return Malformed("truncated in a literal chunk id");
        }
        e.id = codec::ChunkId::DecodeFrom(reinterpret_cast<const uint8_t*>(buf_.data()) + buf_pos_);
        buf_pos_ += codec::kChunkIdSize;
      }
      if (e.length > std::numeric_limits<uint64_t>::max() - offset_) {
        return Malformed("entries cover more than 2^64 bytes");
      }
      --literal_left_;
      offset_ += e.length;
      hash_ = HashEntry(hash_, e);
      ++emitted_;
      out->push_back(e);
      continue;
    }
    if (buf_pos_ >= buf_.size()) return Malformed("ops end without END");
    const uint8_t op = static_cast<uint8_t>(buf_[buf_pos_++]);
    if (op == kOpCopy || op == kOpLiteral) {
      CF_ASSIGN_OR_RETURN(uint64_t n, Varint(op == kOpCopy ? "a COPY count" : "a LIT count"));
      if (n == 0) return Malformed(op == kOpCopy ? "COPY of 0 entries" : "LIT of 0 entries");
      (op == kOpCopy ? copy_left_ : literal_left_) = n;
      continue;
    }
    if (op != kOpEnd) return Malformed(absl::StrCat("unknown op ", op));
    if (buf_.size() - buf_pos_ < kEndSize - 1) return Malformed("truncated in END");
    const auto* p = reinterpret_cast<const uint8_t*>(buf_.data()) + buf_pos_;
    const uint64_t count = LoadU64(p), hash = LoadU64(p + 8);
    buf_pos_ += kEndSize - 1;
    if (buf_file_ + buf_pos_ != end_) {
      return Malformed(absl::StrCat(end_ - (buf_file_ + buf_pos_), " bytes after END"));
    }
    if (count != emitted_ || hash != hash_) {
      return absl::DataLossError(absl::StrCat(
          "manifest delta ", what_, " does not rebuild the manifest it was made from (", emitted_,
          " entries against ", count, "; the base differs from the sender's)"));
    }
    done_ = true;
  }
  return out->size();
}

}  // namespace chunkferry::engine
