// One sorted run of the chunk index: an immutable file of entries sorted by chunk id. Ids are
// uniform hashes, so the file is cut into buckets of ~56 entries by the id's top bits alone
// (no search tree), and each bucket has one cache line of Bloom filter: an absent id costs one
// cache line per run, a present one that plus one read of ~1.3 KiB, its bucket. The filter and
// bucket table (~1.3 bytes an entry) are mapped, the entries read with pread(2): mapping them
// would make every lookup fault in a whole page-cache folio (up to 2 MiB on current kernels),
// and the process's resident set would grow to the size of the file. Opening a run reads only
// its header: the same cost at any size. Layout in docs/FORMATS.md:
//
//   header (64 bytes): "CFRN", u16 version, u16 entry size (24), u32 reserved, u64 entries,
//                      u64 buckets, u64 run id, 20 reserved bytes, u64 XXH3-64 of the 56 before
//   buckets × 64-byte filter blocks
//   (buckets + 1) × u64 first entry of each bucket (the last = entries)
//   entries × (u64 id.hi, u64 id.lo, u32 record number, u16 slot, u16 zero), sorted by id
#ifndef CHUNKFERRY_ENGINE_LOCAL_INDEX_RUN_H_
#define CHUNKFERRY_ENGINE_LOCAL_INDEX_RUN_H_

#include <bit>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/chunk_id.h"
#include "io/fd.h"

namespace chunkferry::engine {

static_assert(std::endian::native == std::endian::little,
              "index runs are mapped as little-endian structs");

struct IndexEntry {
  uint64_t hi = 0;
  uint64_t lo = 0;
  uint32_t record = 0;
  uint16_t slot = 0;
  uint16_t zero = 0;

  codec::ChunkId id() const { return codec::ChunkId{lo, hi}; }
  bool Is(const codec::ChunkId& id) const { return hi == id.hi && lo == id.lo; }
  friend bool operator<(const IndexEntry& a, const IndexEntry& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }
};
static_assert(sizeof(IndexEntry) == 24);

// Entries per bucket the writer aims at: 64-byte filter blocks then hold ~9 bits per id (about
// 1.5% false positives with 6 probes), and a bucket's entries span ~21 cache lines.
inline constexpr uint64_t kEntriesPerBucket = 56;

// The bucket of an id among `buckets`: monotonic in the id's order, so buckets are ranges of a
// sorted run.
inline uint64_t BucketOf(uint64_t hi, uint64_t buckets) { return ((hi >> 32) * buckets) >> 32; }

// A run, opened read-only. Not thread-safe (Find reads into a buffer of the run's).
class IndexRun {
 public:
  ~IndexRun();
  IndexRun(const IndexRun&) = delete;
  IndexRun& operator=(const IndexRun&) = delete;

  // NotFound when the file is gone (a writer compacted it away); DataLoss when it is damaged.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IndexRun>> Open(const std::string& path,
                                                                      uint64_t id);

  uint64_t id() const { return id_; }
  uint64_t entries() const { return entries_; }
  const std::string& path() const { return path_; }

  // Hints the cache lines that MayHave(id) will read, and the bucket's start.
  void Prefetch(const codec::ChunkId& id) const {
    const uint64_t b = BucketOf(id.hi, buckets_);
    __builtin_prefetch(filter_ + b * 8);
    __builtin_prefetch(starts_ + b);
  }
  // Hints the entry Find(id) will look at first, when the entries are in memory (call it some
  // time after Prefetch: it reads the bucket's start).
  void PrefetchEntry(const codec::ChunkId& id) const {
    if (cached_.empty()) return;
    const uint64_t b = BucketOf(id.hi, buckets_);
    const uint64_t guess = Guess(id.hi, starts_[b], starts_[b + 1]);
    if (guess < cached_.size()) __builtin_prefetch(&cached_[guess]);
  }
  // False when the run certainly lacks the id.
  bool MayHave(const codec::ChunkId& id) const {
    const uint64_t* block = filter_ + BucketOf(id.hi, buckets_) * 8;
    for (int i = 0; i < kProbes; ++i) {
      const uint32_t bit = (id.lo >> (9 * i)) & 511;
      if (((block[bit >> 6] >> (bit & 63)) & 1) == 0) return false;
    }
    return true;
  }
  // Fills *out with the id's entry and returns true, or returns false. A bucket table that does
  // not add up, or a failed read, reads as absent (the chunk is then sent and stored again:
  // damage here never makes a missing chunk look present).
  bool Find(const codec::ChunkId& id, IndexEntry* out) const;

  // Lets the kernel drop the resident pages of the filter and bucket table (read back on
  // demand).
  void DropResidentPages() const;
  // Reads every entry into memory when `load`, for Find to search without a read each. Only
  // the first call counts; on failure Find keeps reading buckets.
  void CacheEntries(bool load);
  bool cache_tried() const { return cache_tried_; }
  uint64_t cached_bytes() const { return cached_.size() * sizeof(IndexEntry); }
  // Checks the whole run: sorted, unique, every entry in its bucket and its filter. For verify.
  [[nodiscard]] absl::Status Check() const;

  static void FilterAdd(uint64_t* block, uint64_t lo) {
    for (int i = 0; i < kProbes; ++i) {
      const uint32_t bit = (lo >> (9 * i)) & 511;
      block[bit >> 6] |= uint64_t{1} << (bit & 63);
    }
  }

 private:
  static constexpr int kProbes = 6;
  IndexRun() = default;
  // Where in [begin, end), the entries of `hi`'s bucket, `hi` should be: ids are uniform, so
  // the id's place inside the bucket's range of values (the fraction BucketOf drops) predicts
  // its index.
  uint64_t Guess(uint64_t hi, uint64_t begin, uint64_t end) const {
    const uint64_t fraction = ((hi >> 32) * buckets_) & 0xffffffffu;
    return begin + ((end - begin) * fraction >> 32);
  }

  std::string path_;
  uint64_t id_ = 0;
  uint64_t entries_ = 0;
  uint64_t buckets_ = 0;
  io::Fd fd_;
  void* map_ = nullptr;  // header, filter and bucket table
  size_t map_size_ = 0;
  const uint64_t* filter_ = nullptr;
  const uint64_t* starts_ = nullptr;
  uint64_t data_offset_ = 0;
  mutable std::vector<IndexEntry> bucket_;  // the last bucket read
  std::vector<IndexEntry> cached_;          // every entry, once CacheEntries ran
  bool cache_tried_ = false;

  friend class IndexRunScanner;
};

// Writes a run: entries in strictly ascending id order, at most `max_entries` of them (the
// bucket count is fixed by it). The file is durable when Finish returns.
class IndexRunWriter {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IndexRunWriter>> Create(
      const std::string& path, uint64_t max_entries, uint64_t run_id);
  [[nodiscard]] absl::Status Add(const IndexEntry& e);
  // Returns the number of entries written.
  [[nodiscard]] absl::StatusOr<uint64_t> Finish();

 private:
  IndexRunWriter() = default;
  // Closes buckets before `bucket`: their filter blocks and starts go out.
  [[nodiscard]] absl::Status CloseBucketsBefore(uint64_t bucket);
  [[nodiscard]] absl::Status Drain(std::string* buffer, uint64_t* offset, size_t keep);

  std::string path_;
  io::Fd fd_;
  uint64_t run_id_ = 0;
  uint64_t max_entries_ = 0;
  uint64_t buckets_ = 0;
  uint64_t entries_ = 0;
  uint64_t open_bucket_ = 0;  // buckets below it are written out
  uint64_t block_[8] = {};    // filter block of open_bucket_
  bool have_last_ = false;
  IndexEntry last_;
  // Three sequential streams, each buffered: filter blocks, starts, entries.
  std::string filter_buf_, starts_buf_, data_buf_;
  uint64_t filter_off_ = 0, starts_off_ = 0, data_off_ = 0;
};

// Reads a run's entries in order with large sequential reads (not through the mapping, so that
// a merge of big runs does not grow the process's resident set).
class IndexRunScanner {
 public:
  [[nodiscard]] static absl::StatusOr<IndexRunScanner> Open(const IndexRun& run);
  // Fills `e` with the next entry; false at the end.
  [[nodiscard]] absl::StatusOr<bool> Next(IndexEntry* e);

 private:
  io::Fd fd_;
  std::string path_;
  uint64_t offset_ = 0;  // of the next read
  uint64_t end_ = 0;
  std::vector<IndexEntry> buf_;
  size_t pos_ = 0;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_INDEX_RUN_H_
