#include "engine/wire/wire_frame.h"

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

using Header = std::array<uint8_t, kFrameHeaderSize>;

std::vector<uint8_t> Payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(seed + i * 31);
  return p;
}

Header Encode(uint16_t type, absl::Span<const uint8_t> payload) {
  Header h;
  EncodeFrameHeader(type, payload, h);
  return h;
}

TEST(WireFrameTest, HeaderLayoutIsAsDocumented) {
  const std::vector<uint8_t> payload = Payload(1000, 3);
  const Header h = Encode(0x0c0d, payload);
  const uint32_t sum = static_cast<uint32_t>(codec::Checksum64(payload));
  const Header expected = {'C',
                           'F',
                           'W',
                           '1',
                           0x0d,
                           0x0c,
                           0,
                           0,
                           0xe8,
                           0x03,
                           0,
                           0,
                           static_cast<uint8_t>(sum),
                           static_cast<uint8_t>(sum >> 8),
                           static_cast<uint8_t>(sum >> 16),
                           static_cast<uint8_t>(sum >> 24)};
  EXPECT_EQ(h, expected);
  EXPECT_EQ(FrameChecksum(payload), sum);
}

TEST(WireFrameTest, RoundTripsHeaderAndPayload) {
  for (size_t n : {0, 1, 15, 16, 17, 4096, 100000}) {
    const std::vector<uint8_t> payload = Payload(n, static_cast<uint8_t>(n));
    const Header h = Encode(12, payload);
    absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(h, kDefaultMaxFrame);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->type, 12);
    EXPECT_EQ(parsed->flags, 0);
    EXPECT_EQ(parsed->payload_length, n);
    EXPECT_TRUE(CheckFramePayload(*parsed, payload).ok());
  }
}

TEST(WireFrameTest, AppendFrameIsHeaderThenPayload) {
  const std::vector<uint8_t> payload = Payload(77, 9);
  std::string out = "x";
  AppendFrame(5, payload, &out);
  ASSERT_EQ(out.size(), 1 + kFrameHeaderSize + payload.size());
  const Header h = Encode(5, payload);
  EXPECT_EQ(std::memcmp(out.data() + 1, h.data(), h.size()), 0);
  EXPECT_EQ(std::memcmp(out.data() + 1 + kFrameHeaderSize, payload.data(), payload.size()), 0);
}

TEST(WireFrameTest, HeaderFromLengthAndChecksumMatches) {
  const std::vector<uint8_t> payload = Payload(500, 1);
  Header a = Encode(17, payload), b;
  EncodeFrameHeader(17, 500, FrameChecksum(payload), b);
  EXPECT_EQ(a, b);
}

TEST(WireFrameTest, RefusesBadMagic) {
  for (size_t i = 0; i < 4; ++i) {
    Header h = Encode(1, {});
    h[i] ^= 0x20;
    absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(h, kDefaultMaxFrame);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(
        absl::StrContains(parsed.status().message(), "not a chunkferry peer (bad frame magic"))
        << parsed.status();
  }
  Header http;
  std::memcpy(http.data(), "GET / HTTP/1.1\r\n", 16);
  EXPECT_FALSE(ParseFrameHeader(http, kDefaultMaxFrame).ok());
  Header tls{};
  tls[0] = 0x16;
  tls[1] = 0x03;
  tls[2] = 0x01;
  absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(tls, kDefaultMaxFrame);
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), "TLS")) << parsed.status();
}

TEST(WireFrameTest, RefusesEveryNonzeroFlag) {
  for (int bit = 0; bit < 16; ++bit) {
    Header h = Encode(14, {});
    const uint16_t flags = static_cast<uint16_t>(1u << bit);
    h[6] = static_cast<uint8_t>(flags);
    h[7] = static_cast<uint8_t>(flags >> 8);
    absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(h, kDefaultMaxFrame);
    ASSERT_FALSE(parsed.ok()) << bit;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(parsed.status().message(), "flags")) << parsed.status();
    EXPECT_TRUE(absl::StrContains(parsed.status().message(), "FLUSH")) << parsed.status();
  }
}

TEST(WireFrameTest, PrefixChecksumOnlyOnTheTypeTheReceiverNames) {
  const std::vector<uint8_t> payload = Payload(4096, 9);
  Header h;
  EncodeFrameHeader(12, static_cast<uint32_t>(payload.size()),
                    FrameChecksum(payload, kFrameFlagPrefixChecksum), h, kFrameFlagPrefixChecksum);
  EXPECT_EQ(h[6], 1);
  EXPECT_EQ(h[7], 0);
  // The checksum is the prefix's alone.
  EXPECT_EQ(FrameChecksum(payload, kFrameFlagPrefixChecksum),
            static_cast<uint32_t>(
                codec::Checksum64(absl::MakeConstSpan(payload).first(kPrefixChecksumBytes))));
  // Refused by default and on any other type, saying which type takes it.
  absl::StatusOr<FrameHeader> refused = ParseFrameHeader(h, kDefaultMaxFrame);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "on no frame")) << refused.status();
  refused = ParseFrameHeader(h, kDefaultMaxFrame, 13);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "only on")) << refused.status();
  // Another flag next to it is refused even on the named type.
  Header both = h;
  both[6] = 3;
  EXPECT_EQ(ParseFrameHeader(both, kDefaultMaxFrame, 12).status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(h, kDefaultMaxFrame, 12);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->flags, kFrameFlagPrefixChecksum);
  EXPECT_TRUE(CheckFramePayload(*parsed, payload).ok());
  // A flipped byte of the prefix is caught; past it, the payload's own checksums must catch it.
  for (size_t i = 0; i < payload.size(); i += 7) {
    std::vector<uint8_t> bad = payload;
    bad[i] ^= 0x40;
    EXPECT_EQ(CheckFramePayload(*parsed, bad).code(),
              i < kPrefixChecksumBytes ? absl::StatusCode::kDataLoss : absl::StatusCode::kOk)
        << i;
  }
  // The length is still checked, and a payload shorter than the prefix is covered whole.
  EXPECT_EQ(CheckFramePayload(*parsed, absl::MakeConstSpan(payload).first(4095)).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> tiny = Payload(5, 1);
  EXPECT_EQ(FrameChecksum(tiny, kFrameFlagPrefixChecksum), FrameChecksum(tiny));
}

TEST(WireFrameTest, RefusesPayloadAboveTheLimitNamingBothNumbers) {
  Header h;
  EncodeFrameHeader(12, 1000, 0, h);
  EXPECT_TRUE(ParseFrameHeader(h, 1000).ok());
  absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(h, 999);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), "1000")) << parsed.status();
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), "999")) << parsed.status();

  EncodeFrameHeader(12, 0xffffffff, 0, h);
  parsed = ParseFrameHeader(h, kDefaultMaxFrame);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), "4294967295")) << parsed.status();
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), absl::StrCat(kDefaultMaxFrame)));

  EXPECT_TRUE(CheckFrameSize(kDefaultMaxFrame, kDefaultMaxFrame).ok());
  absl::Status st = CheckFrameSize(size_t{kDefaultMaxFrame} + 1, kDefaultMaxFrame);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(st.message(), absl::StrCat(kDefaultMaxFrame + 1))) << st;
}

TEST(WireFrameTest, CheckFramePayloadCatchesEveryFlippedByteAndWrongLength) {
  const std::vector<uint8_t> payload = Payload(64, 5);
  absl::StatusOr<FrameHeader> h = ParseFrameHeader(Encode(16, payload), kDefaultMaxFrame);
  ASSERT_TRUE(h.ok());
  for (size_t i = 0; i < payload.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80}) {
      std::vector<uint8_t> bad = payload;
      bad[i] ^= mask;
      absl::Status st = CheckFramePayload(*h, bad);
      EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << i;
    }
  }
  absl::Status st = CheckFramePayload(*h, absl::MakeConstSpan(payload).first(63));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  std::vector<uint8_t> longer = payload;
  longer.push_back(0);
  EXPECT_EQ(CheckFramePayload(*h, longer).code(), absl::StatusCode::kInvalidArgument);

  FrameHeader tampered = *h;
  tampered.payload_checksum ^= 1;
  st = CheckFramePayload(tampered, payload);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(st.message(), "READ")) << st;
}

TEST(WireFrameTest, RandomHeadersNeverCrashAndParseConsistently) {
  std::mt19937_64 rng(20240611);
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    Header h;
    for (uint8_t& b : h) b = static_cast<uint8_t>(rng());
    if (i % 2 == 0) std::memcpy(h.data(), kFrameMagic, 4);  // get past the magic half the time
    if (i % 4 == 0) h[6] = h[7] = 0;
    const uint32_t max = static_cast<uint32_t>(rng() % (2 * kDefaultMaxFrame));
    absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(h, max);
    if (parsed.ok()) {
      ++accepted;
      EXPECT_EQ(std::memcmp(h.data(), kFrameMagic, 4), 0);
      EXPECT_EQ(parsed->flags, 0);
      EXPECT_LE(parsed->payload_length, max);
      Header again;
      EncodeFrameHeader(parsed->type, parsed->payload_length, parsed->payload_checksum, again);
      EXPECT_EQ(again, h);
    } else {
      EXPECT_FALSE(parsed.status().message().empty());
    }
  }
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace chunkferry::engine
