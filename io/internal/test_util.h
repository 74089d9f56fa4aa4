// Helpers for io/ tests: a scratch directory on a real disk and deterministic test data.
#ifndef CHUNKFERRY_IO_INTERNAL_TEST_UTIL_H_
#define CHUNKFERRY_IO_INTERNAL_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace chunkferry::io::testing {

// Makes a fresh directory under $CHUNKFERRY_TEST_DIR (default /var/tmp: /tmp may be tmpfs,
// which says little about O_DIRECT and disk behaviour) and removes it with its contents on
// destruction. path() is empty if it could not be made.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("CHUNKFERRY_TEST_DIR");
    std::string pattern =
        std::string(base != nullptr && base[0] != '\0' ? base : "/var/tmp") + "/cf_io_XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Returns `size` bytes that depend on `seed` and on their position, so that a byte landing at
// the wrong offset is caught.
inline std::vector<uint8_t> Pattern(size_t size, uint64_t seed) {
  std::vector<uint8_t> out(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

}  // namespace chunkferry::io::testing

#endif  // CHUNKFERRY_IO_INTERNAL_TEST_UTIL_H_
