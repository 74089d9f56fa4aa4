#include "codec/chunk_id.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_generateSecret
#include <xxhash.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "codec/internal/test_data.h"
#include "gtest/gtest.h"

namespace chunkferry::codec {
namespace {

absl::Span<const uint8_t> Bytes(std::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(ChunkIdTest, EncodesLoThenHiLittleEndian) {
  const ChunkId id{0x0706050403020100, 0x0f0e0d0c0b0a0908};
  uint8_t bytes[kChunkIdSize];
  id.EncodeTo(bytes);
  for (size_t i = 0; i < kChunkIdSize; ++i) EXPECT_EQ(bytes[i], i) << "byte " << i;
  EXPECT_EQ(ChunkId::DecodeFrom(bytes), id);
  EXPECT_EQ(id.ToHex(), "000102030405060708090a0b0c0d0e0f");
}

TEST(ChunkIdTest, HexRoundTrips) {
  internal::SplitMix64 rng(42);
  for (int i = 0; i < 1000; ++i) {
    const ChunkId id{rng.Next(), rng.Next()};
    const std::string hex = id.ToHex();
    ASSERT_EQ(hex.size(), 32u);
    absl::StatusOr<ChunkId> parsed = ChunkId::FromHex(hex);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, id);
  }
}

TEST(ChunkIdTest, FromHexAcceptsUppercase) {
  absl::StatusOr<ChunkId> parsed = ChunkId::FromHex("000102030405060708090A0B0C0D0E0F");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToHex(), "000102030405060708090a0b0c0d0e0f");
}

TEST(ChunkIdTest, FromHexRejectsWrongLength) {
  const std::string good = "000102030405060708090a0b0c0d0e0f";
  for (const std::string& bad : {std::string(), good.substr(0, 31), good + "0", good + good}) {
    absl::StatusOr<ChunkId> parsed = ChunkId::FromHex(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.status().message().find("32 hex characters"), std::string_view::npos)
        << parsed.status();
  }
}

TEST(ChunkIdTest, FromHexRejectsNonHexAtEveryPosition) {
  const std::string good = "000102030405060708090a0b0c0d0e0f";
  for (size_t pos = 0; pos < good.size(); ++pos) {
    for (const char c : {'g', 'G', 'x', ' ', '-', '\0', '/', ':', '@', '`'}) {
      std::string bad = good;
      bad[pos] = c;
      absl::StatusOr<ChunkId> parsed = ChunkId::FromHex(bad);
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
          << "pos " << pos << " char " << int{c};
      EXPECT_NE(parsed.status().message().find("position " + std::to_string(pos)),
                std::string_view::npos)
          << parsed.status();
    }
  }
}

TEST(ChunkIdTest, OrderingAndEquality) {
  const ChunkId a{1, 0}, b{0, 1}, c{2, 0};
  EXPECT_TRUE(a < b);  // hi is the major key
  EXPECT_TRUE(a < c);
  EXPECT_FALSE(b < a);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, (ChunkId{1, 0}));
}

TEST(ChunkHasherTest, UnkeyedIsPlainXxh3_128) {
  const ChunkHasher hasher;
  EXPECT_FALSE(hasher.keyed());
  EXPECT_EQ(hasher.key_fingerprint(), 0u);
  // Known answer for the empty input (xxHash's published XXH3-128 test vector).
  const ChunkId empty = hasher.Hash({});
  EXPECT_EQ(empty.hi, 0x99aa06d3014798d8u);
  EXPECT_EQ(empty.lo, 0x6001c324468d497fu);
  for (const size_t size : {1, 3, 16, 17, 128, 129, 240, 241, 4096, 100000, 1 << 20}) {
    const std::vector<uint8_t> data = internal::RandomBytes(size, size);
    const XXH128_hash_t want = XXH3_128bits(data.data(), data.size());
    const ChunkId got = hasher.Hash(data);
    EXPECT_EQ(got.lo, want.low64) << size;
    EXPECT_EQ(got.hi, want.high64) << size;
  }
}

// chunk_id.cc calls xxHash's run-time dispatched (AVX2/AVX-512) entry points on x86-64; this
// test calls the library's plain ones. Sizes past 240 bytes take the vector code.
TEST(ChunkHasherTest, KeyedIsPlainXxh3_128WithTheDerivedSecret) {
  const std::vector<uint8_t> key = internal::RandomBytes(32, 77);
  absl::StatusOr<ChunkHasher> hasher = ChunkHasher::Make(key);
  ASSERT_TRUE(hasher.ok());
  std::vector<uint8_t> secret(XXH3_SECRET_DEFAULT_SIZE);
  ASSERT_EQ(XXH3_generateSecret(secret.data(), secret.size(), key.data(), key.size()), XXH_OK);
  for (const size_t size : {17, 241, 1024, 4096, 65536, 1 << 20}) {
    const std::vector<uint8_t> data = internal::RandomBytes(size, 500 + size);
    const XXH128_hash_t want =
        XXH3_128bits_withSecret(data.data(), data.size(), secret.data(), secret.size());
    const ChunkId got = hasher->Hash(data);
    EXPECT_EQ(got.lo, want.low64) << size;
    EXPECT_EQ(got.hi, want.high64) << size;
  }
}

TEST(ChunkHasherTest, ShortKeyIsInvalidArgument) {
  for (size_t size = 0; size < 16; ++size) {
    const std::vector<uint8_t> key(size, 0x5a);
    absl::StatusOr<ChunkHasher> hasher = ChunkHasher::Make(key);
    EXPECT_EQ(hasher.status().code(), absl::StatusCode::kInvalidArgument) << size;
  }
  EXPECT_TRUE(ChunkHasher::Make(std::vector<uint8_t>(16, 0)).ok());
  EXPECT_TRUE(ChunkHasher::Make(std::vector<uint8_t>(1000, 7)).ok());
}

TEST(ChunkHasherTest, KeyedIdsDifferFromUnkeyedAndDependOnTheKey) {
  const std::vector<uint8_t> key_a = internal::RandomBytes(32, 1);
  std::vector<uint8_t> key_b = key_a;
  key_b[31] ^= 1;  // one bit apart
  absl::StatusOr<ChunkHasher> a = ChunkHasher::Make(key_a);
  absl::StatusOr<ChunkHasher> a_again = ChunkHasher::Make(key_a);
  absl::StatusOr<ChunkHasher> b = ChunkHasher::Make(key_b);
  ASSERT_TRUE(a.ok() && a_again.ok() && b.ok());
  EXPECT_TRUE(a->keyed());
  const ChunkHasher unkeyed;
  for (const size_t size : {0, 1, 17, 200, 4096, 65536}) {
    const std::vector<uint8_t> data = internal::RandomBytes(size, 100 + size);
    const ChunkId id_a = a->Hash(data);
    EXPECT_EQ(id_a, a_again->Hash(data)) << size;
    EXPECT_NE(id_a, b->Hash(data)) << size;
    EXPECT_NE(id_a, unkeyed.Hash(data)) << size;
  }
}

TEST(ChunkHasherTest, KeyFingerprintIsStableNonZeroAndPerKey) {
  std::set<uint64_t> fingerprints;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    absl::StatusOr<ChunkHasher> hasher = ChunkHasher::Make(internal::RandomBytes(24, seed));
    ASSERT_TRUE(hasher.ok());
    EXPECT_NE(hasher->key_fingerprint(), 0u);
    fingerprints.insert(hasher->key_fingerprint());
    absl::StatusOr<ChunkHasher> again = ChunkHasher::Make(internal::RandomBytes(24, seed));
    EXPECT_EQ(again->key_fingerprint(), hasher->key_fingerprint());
  }
  EXPECT_EQ(fingerprints.size(), 100u);
}

TEST(ChunkHasherTest, KeyFingerprintDoesNotContainTheKey) {
  // A key whose 8-byte windows would show up verbatim if the fingerprint leaked key bytes.
  const std::vector<uint8_t> key = internal::RandomBytes(16, 9);
  absl::StatusOr<ChunkHasher> hasher = ChunkHasher::Make(key);
  ASSERT_TRUE(hasher.ok());
  for (size_t i = 0; i + 8 <= key.size(); ++i) {
    uint64_t window;
    std::memcpy(&window, key.data() + i, 8);
    EXPECT_NE(hasher->key_fingerprint(), window);
  }
  EXPECT_NE(hasher->key_fingerprint(), XXH3_64bits(key.data(), key.size()));
}

// Keyed ids and fingerprints are persisted in stores: these known answers catch any change in
// the derivation (including one in the system xxHash's XXH3_generateSecret).
TEST(ChunkHasherTest, KeyedKnownAnswers) {
  absl::StatusOr<ChunkHasher> hasher = ChunkHasher::Make(Bytes("chunkferry test key 0001"));
  ASSERT_TRUE(hasher.ok());
  EXPECT_EQ(hasher->Hash(Bytes("hello, chunkferry")).ToHex(), "2e45fe64692c0d25d914674fda5d19b9");
  EXPECT_EQ(hasher->Hash({}).ToHex(), "30357f6366dfad17944c54ba2e9515cf");
  EXPECT_EQ(hasher->key_fingerprint(), 932180129443656072u);
}

TEST(ChecksumTest, IsXxh3_64) {
  for (const size_t size : {0, 1, 100, 5000, 1 << 20}) {
    const std::vector<uint8_t> data = internal::RandomBytes(size, size + 7);
    EXPECT_EQ(Checksum64(data), XXH3_64bits(data.data(), data.size())) << size;
  }
  EXPECT_EQ(Checksum64({}), 0x2d06800538d394c2u);  // XXH3-64 of the empty input
}

}  // namespace
}  // namespace chunkferry::codec
