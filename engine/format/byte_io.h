// Little-endian encoding helpers and a bounds-checked reader for the engine's binary formats
// (manifests, group records, pack headers, index snapshots). Every read is checked against the
// remaining length, so a damaged or hostile file yields an error, never an overrun.
#ifndef CHUNKFERRY_ENGINE_FORMAT_BYTE_IO_H_
#define CHUNKFERRY_ENGINE_FORMAT_BYTE_IO_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace chunkferry::engine {

inline void PutU16(std::string* out, uint16_t v) {
  const char b[2] = {static_cast<char>(v), static_cast<char>(v >> 8)};
  out->append(b, 2);
}
inline void PutU32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 4);
}
inline void PutU64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 8);
}
inline uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t LoadU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t LoadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline void StoreU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void StoreU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Reads little-endian values from a byte range; after the first short read every call fails
// and ok() stays false, so callers can check once at the end of a parse.
class ByteReader {
 public:
  explicit ByteReader(absl::Span<const uint8_t> data) : data_(data) {}
  explicit ByteReader(absl::string_view data)
      : data_(reinterpret_cast<const uint8_t*>(data.data()), data.size()) {}

  bool ok() const { return ok_; }
  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }

  const uint8_t* Take(size_t n) {
    if (!ok_ || remaining() < n) {
      ok_ = false;
      return nullptr;
    }
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  uint8_t U8() {
    const uint8_t* p = Take(1);
    return p ? *p : 0;
  }
  uint16_t U16() {
    const uint8_t* p = Take(2);
    return p ? LoadU16(p) : 0;
  }
  uint32_t U32() {
    const uint8_t* p = Take(4);
    return p ? LoadU32(p) : 0;
  }
  uint64_t U64() {
    const uint8_t* p = Take(8);
    return p ? LoadU64(p) : 0;
  }
  absl::string_view Bytes(size_t n) {
    const uint8_t* p = Take(n);
    return p ? absl::string_view(reinterpret_cast<const char*>(p), n) : absl::string_view();
  }

 private:
  absl::Span<const uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

inline absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_FORMAT_BYTE_IO_H_
