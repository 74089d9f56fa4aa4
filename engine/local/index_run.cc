#include "engine/local/index_run.h"

#include <fcntl.h>
#include <sys/mman.h>
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

constexpr char kMagic[4] = {'C', 'F', 'R', 'N'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 64;
constexpr size_t kStreamBuffer = size_t{1} << 20;

uint64_t BucketsFor(uint64_t max_entries) {
  return std::max<uint64_t>(1, (max_entries + kEntriesPerBucket - 1) / kEntriesPerBucket);
}
uint64_t FilterOffset() { return kHeaderSize; }
uint64_t StartsOffset(uint64_t buckets) { return FilterOffset() + buckets * 64; }
uint64_t DataOffset(uint64_t buckets) { return StartsOffset(buckets) + (buckets + 1) * 8; }

}  // namespace

IndexRun::~IndexRun() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

absl::StatusOr<std::unique_ptr<IndexRun>> IndexRun::Open(const std::string& path, uint64_t id) {
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_RDONLY | O_CLOEXEC));
  CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(fd.get(), path));
  auto damaged = [&path](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("index run ", path, " is damaged: ", why));
  };
  uint8_t h[kHeaderSize];
  if (size < kHeaderSize) return damaged("shorter than its header");
  CF_RETURN_IF_ERROR(io::PreadFull(fd.get(), absl::MakeSpan(h), 0));
  if (std::memcmp(h, kMagic, 4) != 0) return damaged("bad magic");
  if (codec::Checksum64(absl::MakeConstSpan(h, 56)) != LoadU64(h + 56)) {
    return damaged("header checksum mismatch");
  }
  if (LoadU16(h + 4) != kVersion || LoadU16(h + 6) != sizeof(IndexEntry)) {
    return damaged("unknown version or entry size");
  }
  auto run = std::unique_ptr<IndexRun>(new IndexRun);
  run->path_ = path;
  run->entries_ = LoadU64(h + 12);
  run->buckets_ = LoadU64(h + 20);
  if (LoadU64(h + 28) != id) return damaged(absl::StrCat("it says it is run ", LoadU64(h + 28)));
  run->id_ = id;
  // Bounded before multiplying: a damaged count must not wrap into a plausible size.
  if (run->buckets_ == 0 || run->buckets_ > (uint64_t{1} << 32) || run->entries_ > size / 24 ||
      DataOffset(run->buckets_) + run->entries_ * sizeof(IndexEntry) != size) {
    return damaged("its size does not match its header");
  }
  const uint64_t mapped = DataOffset(run->buckets_);
  void* map = ::mmap(nullptr, mapped, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) return io::ErrnoStatus(errno, "mmap", path);
  run->map_ = map;
  run->map_size_ = mapped;
  run->fd_ = std::move(fd);
  const auto* base = static_cast<const uint8_t*>(map);
  run->filter_ = reinterpret_cast<const uint64_t*>(base + FilterOffset());
  run->starts_ = reinterpret_cast<const uint64_t*>(base + StartsOffset(run->buckets_));
  run->data_offset_ = mapped;
  return run;
}

bool IndexRun::Find(const codec::ChunkId& id, IndexEntry* out) const {
  const uint64_t b = BucketOf(id.hi, buckets_);
  const uint64_t begin = starts_[b];
  const uint64_t end = starts_[b + 1];
  // A bucket holds ~56 entries; thousands mean a damaged table.
  if (begin > end || end > entries_ || end - begin > 65536) return false;
  if (!cached_.empty()) {
    if (begin == end) return false;
    // From the predicted place, a few steps either way (the entries there are prefetched).
    const IndexEntry key{id.hi, id.lo, 0, 0, 0};
    uint64_t i = std::min(Guess(id.hi, begin, end), end - 1);
    while (i > begin && key < cached_[i]) --i;
    while (i < end && cached_[i] < key) ++i;
    if (i == end || !cached_[i].Is(id)) return false;
    *out = cached_[i];
    return true;
  }
  bucket_.resize(end - begin);
  if (!io::PreadFull(fd_.get(),
                     absl::MakeSpan(reinterpret_cast<uint8_t*>(bucket_.data()),
                                    bucket_.size() * sizeof(IndexEntry)),
                     data_offset_ + begin * sizeof(IndexEntry))
           .ok()) {
    return false;
  }
  // Sorted: a binary search.
  auto it = std::lower_bound(bucket_.begin(), bucket_.end(), IndexEntry{id.hi, id.lo, 0, 0, 0});
  if (it == bucket_.end() || !it->Is(id)) return false;
  *out = *it;
  return true;
}

void IndexRun::CacheEntries(bool load) {
  if (cache_tried_) return;
  cache_tried_ = true;
  if (!load) return;
  // A small run is read whole: have the kernel read its filter and bucket table meanwhile, in
  // one go, rather than fault them in page by page (a read from disk each, on a cold cache).
  ::madvise(map_, map_size_, MADV_WILLNEED);
  std::vector<IndexEntry> all(entries_);
  if (io::PreadFull(
          fd_.get(),
          absl::MakeSpan(reinterpret_cast<uint8_t*>(all.data()), all.size() * sizeof(IndexEntry)),
          data_offset_)
          .ok()) {
    cached_ = std::move(all);
  }
}

void IndexRun::DropResidentPages() const { ::madvise(map_, map_size_, MADV_DONTNEED); }

absl::Status IndexRun::Check() const {
  auto damaged = [this](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("index run ", path_, " is damaged: ", why));
  };
  if (starts_[0] != 0 || starts_[buckets_] != entries_) return damaged("bucket table ends");
  // The whole table in order (so no bucket reaches past the entries), not only the buckets that
  // hold entries: Find trusts every start.
  for (uint64_t k = 0; k < buckets_; ++k) {
    if (starts_[k] > starts_[k + 1]) return damaged(absl::StrCat("bucket ", k, " ends early"));
  }
  CF_ASSIGN_OR_RETURN(IndexRunScanner scan, IndexRunScanner::Open(*this));
  IndexEntry e, last;
  uint64_t b = 0;
  for (uint64_t i = 0; i < entries_; ++i) {
    CF_ASSIGN_OR_RETURN(bool more, scan.Next(&e));
    if (!more) return damaged("shorter than its header says");
    while (b < buckets_ && starts_[b + 1] <= i) ++b;
    if (b == buckets_ || BucketOf(e.hi, buckets_) != b) {
      return damaged(absl::StrCat("entry ", i, " misplaced"));
    }
    if (i > 0 && !(last < e)) return damaged(absl::StrCat("entry ", i, " out of order"));
    if (!MayHave(e.id())) return damaged(absl::StrCat("entry ", i, " missing from the filter"));
    last = e;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<IndexRunWriter>> IndexRunWriter::Create(const std::string& path,
                                                                       uint64_t max_entries,
                                                                       uint64_t run_id) {
  auto w = std::unique_ptr<IndexRunWriter>(new IndexRunWriter);
  CF_ASSIGN_OR_RETURN(w->fd_, io::OpenFile(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC));
  w->path_ = path;
  w->run_id_ = run_id;
  w->max_entries_ = max_entries;
  w->buckets_ = BucketsFor(max_entries);
  w->filter_off_ = FilterOffset();
  w->starts_off_ = StartsOffset(w->buckets_);
  w->data_off_ = DataOffset(w->buckets_);
  return w;
}

absl::Status IndexRunWriter::Drain(std::string* buffer, uint64_t* offset, size_t keep) {
  if (buffer->size() <= keep) return absl::OkStatus();
  CF_RETURN_IF_ERROR(io::PwriteFull(
      fd_.get(),
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(buffer->data()), buffer->size()),
      *offset));
  *offset += buffer->size();
  buffer->clear();
  return absl::OkStatus();
}

absl::Status IndexRunWriter::CloseBucketsBefore(uint64_t bucket) {
  while (open_bucket_ < bucket) {
    filter_buf_.append(reinterpret_cast<const char*>(block_), sizeof(block_));
    std::memset(block_, 0, sizeof(block_));
    ++open_bucket_;
    // starts[b] for the bucket now open: every entry so far lies in earlier buckets.
    PutU64(&starts_buf_, entries_);
  }
  CF_RETURN_IF_ERROR(Drain(&filter_buf_, &filter_off_, kStreamBuffer));
  return Drain(&starts_buf_, &starts_off_, kStreamBuffer);
}

absl::Status IndexRunWriter::Add(const IndexEntry& e) {
  if (entries_ == max_entries_ || (have_last_ && !(last_ < e))) {
    return absl::InternalError(absl::StrCat(
        "index run ", path_, ": entries out of order or past the announced ", max_entries_));
  }
  if (entries_ == 0) PutU64(&starts_buf_, 0);  // starts[0]
  const uint64_t b = BucketOf(e.hi, buckets_);
  if (b > open_bucket_) CF_RETURN_IF_ERROR(CloseBucketsBefore(b));
  IndexRun::FilterAdd(block_, e.lo);
  IndexEntry stored = e;
  stored.zero = 0;
  data_buf_.append(reinterpret_cast<const char*>(&stored), sizeof(stored));
  last_ = e;
  have_last_ = true;
  ++entries_;
  return Drain(&data_buf_, &data_off_, kStreamBuffer);
}

absl::StatusOr<uint64_t> IndexRunWriter::Finish() {
  if (entries_ == 0) PutU64(&starts_buf_, 0);
  CF_RETURN_IF_ERROR(CloseBucketsBefore(buckets_));  // the last start it writes: starts[buckets]
  CF_RETURN_IF_ERROR(Drain(&filter_buf_, &filter_off_, 0));
  CF_RETURN_IF_ERROR(Drain(&starts_buf_, &starts_off_, 0));
  CF_RETURN_IF_ERROR(Drain(&data_buf_, &data_off_, 0));
  std::string h(kMagic, 4);
  PutU16(&h, kVersion);
  PutU16(&h, sizeof(IndexEntry));
  PutU32(&h, 0);
  PutU64(&h, entries_);
  PutU64(&h, buckets_);
  PutU64(&h, run_id_);
  h.append(20, '\0');
  PutU64(&h, codec::Checksum64(AsBytes(h)));
  CF_RETURN_IF_ERROR(io::PwriteFull(fd_.get(), AsBytes(h), 0));
  // Fewer entries than announced (a merge that dropped some): the file ends after them.
  if (::ftruncate(fd_.get(),
                  static_cast<off_t>(DataOffset(buckets_) + entries_ * sizeof(IndexEntry))) != 0) {
    return io::ErrnoStatus(errno, "ftruncate", path_);
  }
  CF_RETURN_IF_ERROR(io::Fsync(fd_.get(), path_));
  CF_RETURN_IF_ERROR(fd_.Close());
  return entries_;
}

absl::StatusOr<IndexRunScanner> IndexRunScanner::Open(const IndexRun& run) {
  IndexRunScanner s;
  CF_ASSIGN_OR_RETURN(s.fd_, io::OpenFile(run.path(), O_RDONLY | O_CLOEXEC));
  ::posix_fadvise(s.fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  s.path_ = run.path();
  s.offset_ = run.data_offset_;
  s.end_ = s.offset_ + run.entries() * sizeof(IndexEntry);
  return s;
}

absl::StatusOr<bool> IndexRunScanner::Next(IndexEntry* e) {
  if (pos_ == buf_.size()) {
    if (offset_ == end_) return false;
    const uint64_t n = std::min<uint64_t>((end_ - offset_) / sizeof(IndexEntry),
                                          kStreamBuffer / sizeof(IndexEntry));
    buf_.resize(n);
    CF_RETURN_IF_ERROR(io::PreadFull(
        fd_.get(), absl::MakeSpan(reinterpret_cast<uint8_t*>(buf_.data()), n * sizeof(IndexEntry)),
        offset_));
    offset_ += n * sizeof(IndexEntry);
    pos_ = 0;
  }
  *e = buf_[pos_++];
  return true;
}

}  // namespace chunkferry::engine
