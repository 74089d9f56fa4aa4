// Deterministic generator of VM-like raw disk images for tests, benchmarks and the README demo,
// and the dedupe yardstick (ideal bytes) measured on them. Images are generated, never committed.
//
// Model. A volume is cut into 32 MiB groups (like ext4's block groups). Each group's layout (which
// 4 KiB blocks hold what) is a pure function of (seed, group, version), so any block, and any
// 1 MiB region, can be generated on its own: generation streams, parallelises, and needs a few
// MiB of memory whatever the size.
//  - Root volume (kRootFs): an ext4-like file system about 9% full. Group 0 starts with a boot
//    block and superblock and the group descriptor table (backup copies in groups 1 and powers of
//    3, 5, 7), every group has a block bitmap (the real occupancy of the group), an inode bitmap
//    and an inode table (16 structured 256-byte inodes per used block). Files are 4 KiB-aligned
//    extents of 4 KiB to 4 MiB (most are small, most bytes are in big ones) laid out in a few
//    clusters per group, fragmenting around what is already there; their last block is partly
//    zero, as file tails are. Content, by file count: 38% text (prose, config, logs, scripts:
//    zstd -1 ratio 3-5), 36% binary (x86-like code, pointer and string tables: about 2), 16%
//    already-compressed (random: 1.0), 10% one-block directories; about 10% of files are copies
//    of another file (same group or a volume-wide pool), so dedupe within a volume matters.
//    (Above 16 TiB the descriptor table outgrows a group and groups 0, 1, 3, 5, 7, 9, ... stay
//    empty.)
//  - Data volume (kData): 1-8 MiB regions that are each text, random or zero (a third each).
//  - Version k+1 is version k with changes: about `rewrite_fraction` of the non-zero blocks are
//    rewritten in place with fresh content of the same kind (in short runs of 1-12 blocks inside
//    64 KiB cells, so that changes cluster as real ones do), and about `append_fraction` of the
//    used size is added as new files (or new region data) in previously empty space. Whether a
//    block was rewritten in version u is a hash of (seed, u, block), so version k is generated
//    without any earlier version on disk.
#ifndef CHUNKFERRY_BENCH_VMGEN_VM_IMAGE_GEN_H_
#define CHUNKFERRY_BENCH_VMGEN_VM_IMAGE_GEN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::vmgen {

inline constexpr uint64_t kBlockSize = 4096;         // the dedupe granularity
inline constexpr uint64_t kRegionSize = 1ull << 20;  // the unit of streaming and of parallelism
inline constexpr uint64_t kGroupSize = 32ull << 20;  // layouts are computed per group

// What one 4 KiB block holds. Exposed so that tests and tools can look at each kind alone.
enum class BlockKind : uint8_t {
  kZero,        // never written (a hole in the generated file)
  kText,        // prose, config, log lines, scripts
  kBinary,      // x86-like code, pointer tables, symbol strings
  kRandom,      // already-compressed data
  kSuperblock,  // boot block and superblock (group 0 and the backup groups)
  kGroupDesc,   // group descriptor table
  kBitmap,      // block or inode bitmap
  kInodeTable,  // 16 inodes of 256 bytes
  kDirectory,   // ext4-like directory entries
};

// Returns a short lowercase name ("text", "inode_table", ...).
std::string_view BlockKindName(BlockKind kind);

// What to generate. Every field takes part in the content: equal specs give equal bytes.
struct VolumeSpec {
  enum Kind { kRootFs, kData };
  Kind kind = kRootFs;
  // Bytes; a multiple of kBlockSize, at least 2 MiB for a root volume.
  uint64_t size = 0;
  uint64_t seed = 0;
  // 1 for the first version; version k+1 is version k with changes.
  uint32_t version = 1;
  // Root volume only: the share of the volume that holds data (metadata and files), in (0, 0.9].
  double used_fraction = 0.09;
  // Per version after the first: the share of non-zero blocks rewritten in place, in [0, 0.3].
  double rewrite_fraction = 0.03;
  // Per version after the first: new data, as a share of the first version's used blocks, placed
  // in previously empty space; in [0, 0.5].
  double append_fraction = 0.015;
};

// Returns InvalidArgument, naming the field, when `spec` is out of the ranges above.
[[nodiscard]] absl::Status ValidateSpec(const VolumeSpec& spec);

// What a block holds and since when.
struct BlockInfo {
  BlockKind kind = BlockKind::kZero;
  // The version that wrote the block's current content: 0 for a zero block, 1 for original
  // content, u > 1 for a block added or rewritten in version u. Superblock, descriptor and bitmap
  // blocks are recomputed for every version and report the spec's version.
  uint32_t version = 0;
};

// Generates the bytes of one volume, any range in any order. Holds a cache of the current group's
// layout, so sequential calls are cheapest. Not thread-safe: use one generator per thread (Make is
// cheap). Movable.
class VolumeGenerator {
 public:
  // Returns a generator for `spec`, or ValidateSpec's error.
  [[nodiscard]] static absl::StatusOr<VolumeGenerator> Make(const VolumeSpec& spec);
  ~VolumeGenerator();
  VolumeGenerator(VolumeGenerator&&) noexcept;
  VolumeGenerator& operator=(VolumeGenerator&&) noexcept;

  const VolumeSpec& spec() const;

  // Writes bytes [offset, offset + out.size()) of the volume into `out`. `offset` and out.size()
  // must be multiples of kBlockSize and the range inside the volume, else InvalidArgument. When
  // `nonzero` is not null it is resized to one entry per block, 1 for a block that is not all
  // zero. Returns the number of non-zero blocks.
  [[nodiscard]] absl::StatusOr<uint64_t> Generate(uint64_t offset, absl::Span<uint8_t> out,
                                                  std::vector<uint8_t>* nonzero = nullptr);

  // Returns what block number `block` holds; OutOfRange past the end of the volume.
  [[nodiscard]] absl::StatusOr<BlockInfo> Describe(uint64_t block);

 private:
  struct Impl;
  explicit VolumeGenerator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct WriteOptions {
  // Worker threads; each generates whole 1 MiB regions and holds one 1 MiB buffer.
  int threads = 1;
};

struct WriteStats {
  uint64_t size = 0;           // bytes of the image (its apparent size)
  uint64_t nonzero_bytes = 0;  // bytes in non-zero 4 KiB blocks (what was written)
  double seconds = 0;          // wall time of generation and writing
};

// Creates or truncates `path` and writes the volume into it: ftruncate to the size, then pwrite of
// the non-zero block runs of each 1 MiB region, so zero blocks stay holes (the file is sparse).
// Memory: one 1 MiB buffer per thread. Errors name the path and the failing call.
[[nodiscard]] absl::StatusOr<WriteStats> WriteVolume(const VolumeSpec& spec,
                                                     const std::string& path,
                                                     const WriteOptions& options = {});

// Parses a byte count: decimal digits with an optional binary suffix K, M, G or T (also KiB,
// MiB, ..., case-insensitive), e.g. "4096", "64M", "2G". Returns InvalidArgument for anything
// else, including overflow.
[[nodiscard]] absl::StatusOr<uint64_t> ParseSize(std::string_view text);

// The dedupe yardstick for a new snapshot (see ideal_bytes.cc).
struct IdealBytes {
  uint64_t new_blocks = 0;         // non-zero 4 KiB blocks of the new images found nowhere else
  uint64_t new_raw_bytes = 0;      // their bytes
  uint64_t ideal_zstd1_bytes = 0;  // their concatenation compressed as one zstd -1 stream
};

// Streams through `old_images` (remembering the XXH3-128 id of each non-zero 4 KiB block), then
// through `new_images` in order, counting each non-zero block whose id is neither in an old image
// nor earlier in the new ones, and compressing those blocks as one zstd level-1 stream. Holes are
// skipped with SEEK_DATA. A last partial block counts as a block of its length. Memory: 16 bytes
// (plus hash-table overhead) per distinct non-zero block, and a few MiB of buffers.
[[nodiscard]] absl::StatusOr<IdealBytes> MeasureIdealBytes(
    absl::Span<const std::string> old_images, absl::Span<const std::string> new_images);

// Formats `ideal` as {"new_blocks":N,"new_raw_bytes":B,"ideal_zstd1_bytes":Z}.
std::string IdealBytesJson(const IdealBytes& ideal);

}  // namespace chunkferry::vmgen

#endif  // CHUNKFERRY_BENCH_VMGEN_VM_IMAGE_GEN_H_
