#include "codec/chunk_id.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_generateSecret is in xxHash's "experimental" section.
#include <xxhash.h>
#if defined(CHUNKFERRY_XXH_DISPATCH)
// The shared library's plain XXH3 entry points are built for the baseline CPU; its _dispatch
// variants pick AVX2 or AVX-512 at run time. Including this header turns every XXH3_* call below
// into its _dispatch variant (same hash values). Measured: 17 -> 30 GB/s on cached data and
// 5 -> 27 GB/s on data out of cache (docs/BENCHMARKS.md). codec/CMakeLists.txt defines the
// macro only when the installed xxHash has these functions.
#include <xxh_x86dispatch.h>
#endif

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "codec/internal/endian.h"

namespace chunkferry::codec {
namespace {

#if defined(CHUNKFERRY_XXH_DISPATCH)
// libxxhash 0.8.1 picks its vector code on the first dispatched call of each width, without a
// lock. Make those calls here, at static initialisation, before any thread of ours can race to.
[[maybe_unused]] const bool kXxhDispatchReady = [] {
  const uint8_t probe[256] = {};  // past 240 bytes: the dispatched code path
  (void)XXH3_64bits(probe, sizeof(probe));
  (void)XXH3_128bits(probe, sizeof(probe));
  return true;
}();
#endif

constexpr size_t kMinKeySize = 16;
constexpr size_t kSecretSize = XXH3_SECRET_DEFAULT_SIZE;  // 192
static_assert(kSecretSize >= XXH3_SECRET_SIZE_MIN);

// Hashed with the derived secret to make the key fingerprint. Changing it changes every store's
// fingerprint, so it is part of the format (docs/FORMATS.md).
constexpr char kFingerprintDomain[] = "chunkferry/key-fingerprint/v1";

constexpr char kHexDigits[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void ChunkId::EncodeTo(uint8_t* out) const {
  internal::StoreLE64(out, lo);
  internal::StoreLE64(out + 8, hi);
}

ChunkId ChunkId::DecodeFrom(const uint8_t* in) {
  ChunkId id;
  id.lo = internal::LoadLE64(in);
  id.hi = internal::LoadLE64(in + 8);
  return id;
}

std::string ChunkId::ToHex() const {
  uint8_t bytes[kChunkIdSize];
  EncodeTo(bytes);
  std::string hex(2 * kChunkIdSize, '0');
  for (size_t i = 0; i < kChunkIdSize; ++i) {
    hex[2 * i] = kHexDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kHexDigits[bytes[i] & 0xf];
  }
  return hex;
}

absl::StatusOr<ChunkId> ChunkId::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kChunkIdSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk id must be ", 2 * kChunkIdSize, " hex characters, got ", hex.size()));
  }
  uint8_t bytes[kChunkIdSize];
  for (size_t i = 0; i < kChunkIdSize; ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      const size_t bad = high < 0 ? 2 * i : 2 * i + 1;
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk id has a non-hex character at position ", bad, " (allowed: 0-9 a-f)"));
    }
    bytes[i] = static_cast<uint8_t>((high << 4) | low);
  }
  return DecodeFrom(bytes);
}

ChunkHasher::ChunkHasher() = default;

absl::StatusOr<ChunkHasher> ChunkHasher::Make(absl::Span<const uint8_t> key) {
  if (key.size() < kMinKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk id key must be at least ", kMinKeySize, " bytes, got ", key.size()));
  }
  ChunkHasher hasher;
  hasher.secret_.resize(kSecretSize);
  // Note: the derivation is xxHash's, so keyed ids are only stable while XXH3_generateSecret's
  // output is; chunk_id_test pins it with a known-answer test.
  if (XXH3_generateSecret(hasher.secret_.data(), hasher.secret_.size(), key.data(), key.size()) !=
      XXH_OK) {
    return absl::InternalError("XXH3_generateSecret failed");
  }
  // The fingerprint is a fixed domain string hashed under the secret: stores with the same key
  // agree on it, and its 64 bits are far too few to recover a key of 16 or more random bytes.
  // It is no defence against a guessable key (nothing fast is).
  const uint64_t fingerprint =
      XXH3_64bits_withSecret(kFingerprintDomain, sizeof(kFingerprintDomain) - 1,
                             hasher.secret_.data(), hasher.secret_.size());
  hasher.fingerprint_ = fingerprint != 0 ? fingerprint : 1;  // 0 means "unkeyed".
  return hasher;
}

ChunkId ChunkHasher::Hash(absl::Span<const uint8_t> data) const {
  const XXH128_hash_t h = secret_.empty() ? XXH3_128bits(data.data(), data.size())
                                          : XXH3_128bits_withSecret(data.data(), data.size(),
                                                                    secret_.data(), secret_.size());
  ChunkId id;
  id.lo = h.low64;
  id.hi = h.high64;
  return id;
}

uint64_t Checksum64(absl::Span<const uint8_t> data) {
  return XXH3_64bits(data.data(), data.size());
}

}  // namespace chunkferry::codec
