// Volume-backup manifests: the metadata of one volume backup and the ordered list of its chunks
// (zero runs as holes). Written as a stream to a temporary file and published by an atomic
// rename, read back as a stream, so memory does not grow with the volume. Layout in
// docs/FORMATS.md:
//
//   header  "CFMF", u16 version, u16 flags, u64 reserved
//   entries 0x01 data: u32 raw length, 16-byte chunk id | 0x02 zero: u64 length
//   meta    KV block (engine/kv_block.h) of VolumeBackupMeta
//   trailer u64 meta offset, u64 data entries, u64 zero entries, u64 logical size,
//           "CFMT", u32 reserved, u64 XXH3-64 of every byte before it
#ifndef CHUNKFERRY_ENGINE_FORMAT_MANIFEST_H_
#define CHUNKFERRY_ENGINE_FORMAT_MANIFEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/chunk_id.h"
#include "engine/format/volume_backup.h"
#include "io/fd.h"

namespace chunkferry::engine {

struct ManifestEntry {
  uint64_t length = 0;  // raw bytes this entry covers
  bool zero = false;    // a hole: all-zero bytes, no chunk
  codec::ChunkId id;    // the chunk, when !zero
};

inline constexpr uint32_t kMaxManifestChunk = 16u << 20;
// Most bytes one manifest covers (what off_t can address): entries that add up to more are
// refused by the writer and are damage to the reader, so no sum of lengths can wrap.
inline constexpr uint64_t kMaxVolumeSize = uint64_t{1} << 63;
// Largest meta block a manifest (or a delta) may carry: a real one is a few hundred bytes. The
// reader refuses a larger one before it allocates it, so a hostile file cannot make it allocate
// hundreds of MB; the writer refuses to make one.
inline constexpr size_t kMaxManifestMetaBytes = 4u << 20;

// A source of manifest entries: a manifest being read, locally or from a remote store.
class ManifestSource {
 public:
  virtual ~ManifestSource() = default;
  virtual const VolumeBackupMeta& meta() const = 0;
  // Replaces `out` with up to `max` next entries; returns how many (0 at the end).
  [[nodiscard]] virtual absl::StatusOr<size_t> Next(std::vector<ManifestEntry>* out,
                                                    size_t max) = 0;
  // Starts again from the first entry.
  virtual void Rewind() = 0;
};

// Streams entries into a new manifest. Not thread-safe. A writer that is destroyed without
// Finish() removes its temporary file, so a failed import or copy leaves nothing behind.
class ManifestWriter {
 public:
  // Creates `tmp_path` (which must not exist).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ManifestWriter>> Create(std::string tmp_path);
  ~ManifestWriter();

  [[nodiscard]] absl::Status AddData(const codec::ChunkId& id, uint32_t length);
  // Adds a hole; consecutive holes merge into one entry.
  [[nodiscard]] absl::Status AddZero(uint64_t length);
  [[nodiscard]] absl::Status Add(const ManifestEntry& e) {
    return e.zero ? AddZero(e.length) : AddData(e.id, static_cast<uint32_t>(e.length));
  }

  // Writes the metadata and trailer, fsyncs, and publishes the file as `final_path`
  // (io::PublishFileOnce): a published manifest is never replaced. When `final_path` already
  // holds these very bytes the call succeeds and changes nothing; other bytes are AlreadyExists
  // and `final_path` stays as it was. meta.size must equal the bytes the entries cover
  // (InvalidArgument otherwise).
  [[nodiscard]] absl::Status Finish(const VolumeBackupMeta& meta, const std::string& final_path);

  uint64_t logical_size() const { return logical_size_ + pending_zero_; }
  uint64_t data_entries() const { return data_entries_; }

 private:
  ManifestWriter(io::Fd fd, std::string tmp_path);
  absl::Status Append(const void* p, size_t n);
  absl::Status TooLarge(uint64_t length) const;
  absl::Status FlushZero();
  absl::Status FlushBuffer();

  io::Fd fd_;
  std::string tmp_path_;
  std::string buf_;
  uint64_t file_offset_ = 0;
  uint64_t logical_size_ = 0;
  uint64_t pending_zero_ = 0;
  uint64_t data_entries_ = 0;
  uint64_t zero_entries_ = 0;
  struct HashState;
  std::unique_ptr<HashState> hash_;
  bool finished_ = false;
};

// Reads a manifest. Open() checks the whole file (checksum, every entry, the sizes adding up)
// before anything is returned, so a damaged manifest is refused up front (DataLoss) and a
// reader never hands out half a volume. Not thread-safe.
class ManifestReader final : public ManifestSource {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ManifestReader>> Open(
      const std::string& path);

  const VolumeBackupMeta& meta() const override { return meta_; }
  uint64_t data_entries() const { return data_entries_; }
  uint64_t zero_entries() const { return zero_entries_; }

  absl::StatusOr<size_t> Next(std::vector<ManifestEntry>* out, size_t max) override;
  void Rewind() override;

 private:
  ManifestReader() = default;
  // Moves the unread bytes to the front of buf_ and reads the next block of entries after them.
  absl::Status Refill();

  io::Fd fd_;
  std::string path_;
  VolumeBackupMeta meta_;
  uint64_t meta_offset_ = 0;
  uint64_t data_entries_ = 0;
  uint64_t zero_entries_ = 0;
  uint64_t pos_ = 0;  // file offset of buf_[0]
  std::string buf_;
  size_t buf_pos_ = 0;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_FORMAT_MANIFEST_H_
