// Chunk identities: XXH3-128 of a chunk's raw bytes, optionally keyed with a per-store secret
// so that outsiders who do not know the secret cannot craft colliding chunks.
#ifndef CHUNKFERRY_CODEC_CHUNK_ID_H_
#define CHUNKFERRY_CODEC_CHUNK_ID_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::codec {

// 128-bit chunk id. Encoded on disk and on the wire as 16 bytes: `lo` then `hi`, each
// little-endian (docs/FORMATS.md).
struct ChunkId {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const ChunkId& a, const ChunkId& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
  friend bool operator!=(const ChunkId& a, const ChunkId& b) { return !(a == b); }
  friend bool operator<(const ChunkId& a, const ChunkId& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }
  template <typename H>
  friend H AbslHashValue(H h, const ChunkId& id) {
    // The id is already a uniform hash: one half is enough entropy for a hash table.
    return H::combine(std::move(h), id.lo);
  }

  // Writes the 16 bytes (lo then hi, each little-endian) to `out`.
  void EncodeTo(uint8_t* out) const;
  static ChunkId DecodeFrom(const uint8_t* in);
  // 32 lowercase hex characters of the 16 encoded bytes.
  std::string ToHex() const;
  // Parses 32 hex characters (either case); anything else is InvalidArgument naming the length
  // or the position of the first bad character.
  static absl::StatusOr<ChunkId> FromHex(std::string_view hex);
};

inline constexpr size_t kChunkIdSize = 16;

// Computes chunk ids. Unkeyed: plain XXH3-128. Keyed: XXH3-128 with a secret derived from the
// store's key (XXH3_generateSecret), so ids differ per deployment. Immutable after construction;
// safe to share between threads.
class ChunkHasher {
 public:
  // Unkeyed.
  ChunkHasher();
  // Keyed with `key` (any length ≥ 16 bytes; shorter is InvalidArgument via Make).
  static absl::StatusOr<ChunkHasher> Make(absl::Span<const uint8_t> key);

  ChunkId Hash(absl::Span<const uint8_t> data) const;
  bool keyed() const { return !secret_.empty(); }
  // A 64-bit fingerprint of the key (0 when unkeyed, never 0 when keyed) that two stores compare
  // to know whether their ids agree; it does not reveal the key. It is XXH3-64 of the string
  // "chunkferry/key-fingerprint/v1" under the derived secret, so it is stable across builds.
  uint64_t key_fingerprint() const { return fingerprint_; }

 private:
  std::vector<uint8_t> secret_;
  uint64_t fingerprint_ = 0;
};

// XXH3-64 of `data`: the checksum of stored bytes in records, manifests and index files.
uint64_t Checksum64(absl::Span<const uint8_t> data);

}  // namespace chunkferry::codec

#endif  // CHUNKFERRY_CODEC_CHUNK_ID_H_
