// Deterministic data generators for codec tests and benchmarks. Not API: tests and benchmarks
// only. Everything is a pure function of (size, seed), so no data files are needed.
#ifndef CHUNKFERRY_CODEC_INTERNAL_TEST_DATA_H_
#define CHUNKFERRY_CODEC_INTERNAL_TEST_DATA_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chunkferry::codec::internal {

// splitmix64: a small, fast, well-mixed PRNG.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) (bound > 0; the tiny modulo bias does not matter here).
  uint64_t Below(uint64_t bound) { return Next() % bound; }

 private:
  uint64_t state_;
};

// Incompressible bytes.
inline std::vector<uint8_t> RandomBytes(size_t size, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<uint8_t> out(size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t v = rng.Next();
    for (int b = 0; b < 8; ++b) out[i + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  for (const uint64_t v = rng.Next(); i < size; ++i)
    out[i] = static_cast<uint8_t>(v >> (8 * (i % 8)));
  return out;
}

// English-like text: words from a fixed vocabulary with a skewed (roughly Zipf) frequency,
// spaces, punctuation and line breaks. zstd -1 compresses it about 3x.
inline std::vector<uint8_t> TextLikeBytes(size_t size, uint64_t seed) {
  static const char* const kWords[] = {
      "the",     "of",      "and",    "to",      "in",        "a",        "is",      "that",
      "for",     "it",      "as",     "was",     "with",      "be",       "by",      "on",
      "not",     "he",      "this",   "are",     "or",        "his",      "from",    "at",
      "which",   "but",     "have",   "an",      "had",       "they",     "you",     "were",
      "volume",  "backup",  "chunk",  "storage", "replicate", "snapshot", "image",   "network",
      "kernel",  "buffer",  "record", "index",   "manifest",  "commit",   "durable", "latency",
      "through", "between", "during", "without", "another",   "because",  "system",  "process"};
  constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);
  SplitMix64 rng(seed);
  std::string text;
  text.reserve(size + 16);
  size_t line = 0;
  while (text.size() < size) {
    // Squaring a uniform index skews towards the frequent words at the front.
    const uint64_t r = rng.Below(kWordCount * kWordCount);
    const size_t w = static_cast<size_t>(r * r / (kWordCount * kWordCount * kWordCount));
    text += kWords[w < kWordCount ? w : kWordCount - 1];
    line += 1;
    const uint64_t sep = rng.Below(16);
    if (sep == 0) {
      text += ". ";
    } else if (sep == 1) {
      text += ", ";
    } else if (line > 12) {
      text += '\n';
      line = 0;
    } else {
      text += ' ';
    }
  }
  return std::vector<uint8_t>(text.begin(), text.begin() + static_cast<ptrdiff_t>(size));
}

// Binary-like bytes resembling disk contents: 64-byte structs with counters, small integers,
// a few random fields and zero padding, interleaved with runs of random bytes.
inline std::vector<uint8_t> BinaryLikeBytes(size_t size, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<uint8_t> out(size, 0);
  uint64_t counter = rng.Next() & 0xffff;
  size_t i = 0;
  while (i < size) {
    uint8_t block[64] = {};
    if (rng.Below(8) == 0) {  // a stretch of high-entropy data (compressed or encrypted)
      for (size_t b = 0; b < 64; b += 8) {
        const uint64_t v = rng.Next();
        for (int k = 0; k < 8; ++k) block[b + k] = static_cast<uint8_t>(v >> (8 * k));
      }
    } else {
      counter += 1 + rng.Below(4);
      for (int k = 0; k < 8; ++k) block[k] = static_cast<uint8_t>(counter >> (8 * k));
      const uint64_t small = rng.Below(256);
      block[8] = static_cast<uint8_t>(small);
      block[12] = static_cast<uint8_t>(rng.Below(4));
      const uint64_t v = rng.Next();
      for (int k = 0; k < 4; ++k) block[16 + k] = static_cast<uint8_t>(v >> (8 * k));
      block[24] = 0x7f;
      block[25] = 'E';
      block[26] = 'L';
      block[27] = 'F';
    }
    for (size_t b = 0; b < 64 && i < size; ++b) out[i++] = block[b];
  }
  return out;
}

}  // namespace chunkferry::codec::internal

#endif  // CHUNKFERRY_CODEC_INTERNAL_TEST_DATA_H_
