// Little-endian loads and stores for the codec's binary formats. Not API: include only from
// codec/*.cc. Every on-disk and on-wire integer is little-endian (docs/FORMATS.md); the memcpy
// form compiles to one unaligned move on the little-endian hosts this project builds for.
#ifndef CHUNKFERRY_CODEC_INTERNAL_ENDIAN_H_
#define CHUNKFERRY_CODEC_INTERNAL_ENDIAN_H_

#include <bit>
#include <cstdint>
#include <cstring>

namespace chunkferry::codec::internal {

static_assert(std::endian::native == std::endian::little,
              "codec formats are little-endian and this build assumes a little-endian host");

inline void StoreLE16(uint8_t* out, uint16_t v) { std::memcpy(out, &v, sizeof(v)); }
inline void StoreLE32(uint8_t* out, uint32_t v) { std::memcpy(out, &v, sizeof(v)); }
inline void StoreLE64(uint8_t* out, uint64_t v) { std::memcpy(out, &v, sizeof(v)); }

inline uint16_t LoadLE16(const uint8_t* in) {
  uint16_t v;
  std::memcpy(&v, in, sizeof(v));
  return v;
}
inline uint32_t LoadLE32(const uint8_t* in) {
  uint32_t v;
  std::memcpy(&v, in, sizeof(v));
  return v;
}
inline uint64_t LoadLE64(const uint8_t* in) {
  uint64_t v;
  std::memcpy(&v, in, sizeof(v));
  return v;
}

}  // namespace chunkferry::codec::internal

#endif  // CHUNKFERRY_CODEC_INTERNAL_ENDIAN_H_
