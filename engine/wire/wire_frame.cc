#include "engine/wire/wire_frame.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codec/chunk_id.h"
#include "engine/format/byte_io.h"
#include "engine/wire/wire_messages.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kTypeOffset = 4;
constexpr size_t kFlagsOffset = 6;
constexpr size_t kLengthOffset = 8;
constexpr size_t kChecksumOffset = 12;
static_assert(kChecksumOffset + 4 == kFrameHeaderSize);

void StoreU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Names the frame type for errors: "APPEND (12)".
std::string TypeLabel(uint16_t type) {
  const std::string_view name = MsgTypeName(type);
  return absl::StrCat(absl::string_view(name.data(), name.size()), " (", type, ")");
}

}  // namespace

uint32_t FrameChecksum(absl::Span<const uint8_t> payload, uint16_t flags) {
  if ((flags & kFrameFlagPrefixChecksum) != 0) {
    payload = payload.subspan(0, std::min(payload.size(), kPrefixChecksumBytes));
  }
  return static_cast<uint32_t>(codec::Checksum64(payload));
}

void EncodeFrameHeader(uint16_t type, uint32_t payload_length, uint32_t payload_checksum,
                       std::span<uint8_t, kFrameHeaderSize> out, uint16_t flags) {
  uint8_t* p = out.data();
  std::memcpy(p, kFrameMagic, sizeof(kFrameMagic));
  StoreU16(p + kTypeOffset, type);
  StoreU16(p + kFlagsOffset, flags);
  StoreU32(p + kLengthOffset, payload_length);
  StoreU32(p + kChecksumOffset, payload_checksum);
}

void EncodeFrameHeader(uint16_t type, absl::Span<const uint8_t> payload,
                       std::span<uint8_t, kFrameHeaderSize> out) {
  assert(payload.size() <= std::numeric_limits<uint32_t>::max());
  EncodeFrameHeader(type, static_cast<uint32_t>(payload.size()), FrameChecksum(payload), out);
}

void AppendFrame(uint16_t type, absl::Span<const uint8_t> payload, std::string* out) {
  uint8_t header[kFrameHeaderSize];
  EncodeFrameHeader(type, payload, header);
  out->append(reinterpret_cast<const char*>(header), sizeof(header));
  out->append(reinterpret_cast<const char*>(payload.data()), payload.size());
}

absl::Status CheckFrameSize(size_t payload_size, uint32_t max_payload) {
  if (payload_size > max_payload) {
    return absl::ResourceExhaustedError(absl::StrCat("frame payload of ", payload_size,
                                                     " bytes exceeds the peer's limit of ",
                                                     max_payload, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<FrameHeader> ParseFrameHeader(std::span<const uint8_t, kFrameHeaderSize> header,
                                             uint32_t max_payload, uint16_t prefix_checksum_type) {
  const uint8_t* p = header.data();
  if (std::memcmp(p, kFrameMagic, sizeof(kFrameMagic)) != 0) {
    const absl::string_view got(reinterpret_cast<const char*>(p), sizeof(kFrameMagic));
    // A TLS record starts with 0x16 0x03: say so, since that is the likeliest mix-up.
    const bool tls = p[0] == 0x16 && p[1] == 0x03;
    return absl::InvalidArgumentError(absl::StrCat("not a chunkferry peer (bad frame magic \"",
                                                   absl::CHexEscape(got), "\", expected \"CFW1\")",
                                                   tls ? "; the peer seems to speak TLS" : ""));
  }
  FrameHeader h;
  h.type = LoadU16(p + kTypeOffset);
  h.flags = LoadU16(p + kFlagsOffset);
  h.payload_length = LoadU32(p + kLengthOffset);
  h.payload_checksum = LoadU32(p + kChecksumOffset);
  const bool prefix_ok = prefix_checksum_type != kNoPrefixChecksumType &&
                         h.type == prefix_checksum_type && h.flags == kFrameFlagPrefixChecksum;
  if (h.flags != 0 && !prefix_ok) {
    if (h.flags == kFrameFlagPrefixChecksum) {
      return absl::InvalidArgumentError(absl::StrCat(
          "frame ", TypeLabel(h.type), " has flags 0x1 (PREFIX_CHECKSUM), which this peer takes ",
          prefix_checksum_type == kNoPrefixChecksumType
              ? std::string("on no frame")
              : absl::StrCat("only on ", TypeLabel(prefix_checksum_type))));
    }
    return absl::InvalidArgumentError(absl::StrCat("frame ", TypeLabel(h.type), " has flags 0x",
                                                   absl::Hex(h.flags),
                                                   "; protocol version 1 defines only 0x1"));
  }
  if (h.payload_length > max_payload) {
    return absl::ResourceExhaustedError(
        absl::StrCat("frame ", TypeLabel(h.type), " announces ", h.payload_length,
                     " payload bytes, more than the limit of ", max_payload));
  }
  return h;
}

absl::Status CheckFramePayload(const FrameHeader& header, absl::Span<const uint8_t> payload) {
  if (payload.size() != header.payload_length) {
    return absl::InvalidArgumentError(absl::StrCat("frame ", TypeLabel(header.type), " announces ",
                                                   header.payload_length, " payload bytes, got ",
                                                   payload.size()));
  }
  const uint32_t actual = FrameChecksum(payload, header.flags);
  if (actual != header.payload_checksum) {
    return absl::DataLossError(
        absl::StrCat("frame ", TypeLabel(header.type), " payload checksum mismatch: header says 0x",
                     absl::Hex(header.payload_checksum, absl::kZeroPad8), ", payload has 0x",
                     absl::Hex(actual, absl::kZeroPad8)));
  }
  return absl::OkStatus();
}

}  // namespace chunkferry::engine
