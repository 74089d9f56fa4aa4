// The frame layer of the chunkferry wire protocol (docs/PROTOCOL.md): every message travels as
// one frame, a 16-byte header followed by its payload.
//
//   offset size  field
//   0      4     magic "CFW1" (0x43 0x46 0x57 0x31)
//   4      2     type (MsgType, engine/wire_messages.h)
//   6      2     flags: 0, or kFrameFlagPrefixChecksum where the receiver accepts it; any
//                other value is refused
//   8      4     payload length
//   12     4     payload checksum: the low 32 bits of XXH3-64 (codec::Checksum64) of the payload
//                (of its first kPrefixChecksumBytes only, under kFrameFlagPrefixChecksum)
//   16     ...   payload
//
// A reader parses the header first, so it knows how many bytes to read (bounded by a limit it
// chose) before it allocates anything, then checks the payload against the header's checksum.
// Pure functions over bytes, no I/O; all thread-safe.
#ifndef CHUNKFERRY_ENGINE_WIRE_WIRE_FRAME_H_
#define CHUNKFERRY_ENGINE_WIRE_WIRE_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::engine {

inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr uint8_t kFrameMagic[4] = {'C', 'F', 'W', '1'};

// Largest payload a peer accepts unless the handshake lowered it.
inline constexpr uint32_t kDefaultMaxFrame = 64u << 20;
// Smallest frame limit a daemon may announce in WELCOME: it must carry the largest record
// (16 MiB raw plus a 1024-chunk table) in one APPEND or RECORDS frame.
inline constexpr uint32_t kMinMaxFrame = 17u << 20;
// Limit on frames before authentication completes (HELLO, CHALLENGE, AUTH, WELCOME, ERROR), so
// an unauthenticated peer cannot make the other side allocate more than this.
inline constexpr uint32_t kHandshakeMaxFrame = 128u << 10;

// Flag bit 0, PREFIX_CHECKSUM: the header's checksum covers only the first kPrefixChecksumBytes
// of the payload (all of it when shorter). For payloads whose every later byte is covered by
// checksums of its own that the receiver checks anyway: an APPEND's records each carry XXH3-64s
// of their header and of their payload, so a second pass over a frame of them finds nothing
// those would not, and costs both ends a hash of every byte. A receiver accepts the flag only on
// the one type it names (ParseFrameHeader's `prefix_checksum_type`); a daemon announces it in
// WELCOME (prefix_checksum=1) and names APPEND.
inline constexpr uint16_t kFrameFlagPrefixChecksum = 0x0001;
inline constexpr size_t kPrefixChecksumBytes = 16;
// ParseFrameHeader's `prefix_checksum_type` that accepts the flag on no frame.
inline constexpr uint16_t kNoPrefixChecksumType = 0;

struct FrameHeader {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t payload_length = 0;
  uint32_t payload_checksum = 0;
};

// Returns the checksum a frame header with `flags` carries for `payload`.
uint32_t FrameChecksum(absl::Span<const uint8_t> payload, uint16_t flags = 0);

// Writes a v1 frame header into `out`.
void EncodeFrameHeader(uint16_t type, uint32_t payload_length, uint32_t payload_checksum,
                       std::span<uint8_t, kFrameHeaderSize> out, uint16_t flags = 0);
// Same, computing the length and checksum of `payload`, which must be shorter than 4 GiB (and,
// to be accepted, no longer than the peer's frame limit: see CheckFrameSize).
void EncodeFrameHeader(uint16_t type, absl::Span<const uint8_t> payload,
                       std::span<uint8_t, kFrameHeaderSize> out);
// Appends a whole frame (header and payload) to `out`; `payload` as above.
void AppendFrame(uint16_t type, absl::Span<const uint8_t> payload, std::string* out);

// Checks, before sending, that a payload of `payload_size` bytes fits the peer's limit:
// ResourceExhausted naming both numbers otherwise.
[[nodiscard]] absl::Status CheckFrameSize(size_t payload_size, uint32_t max_payload);

// Parses a frame header. InvalidArgument "not a chunkferry peer (bad frame magic …)" when the
// magic is wrong, InvalidArgument for a flag other than kFrameFlagPrefixChecksum on a frame of
// type `prefix_checksum_type`, ResourceExhausted naming the length and `max_payload` when the
// payload is longer than `max_payload`. The type is not checked here (IsKnownMsgType in
// wire_messages.h).
[[nodiscard]] absl::StatusOr<FrameHeader> ParseFrameHeader(
    std::span<const uint8_t, kFrameHeaderSize> header, uint32_t max_payload,
    uint16_t prefix_checksum_type = kNoPrefixChecksumType);

// Checks `payload` against its parsed header: InvalidArgument when its size is not the header's
// length, DataLoss when its checksum (over the part the header's flags say) differs.
[[nodiscard]] absl::Status CheckFramePayload(const FrameHeader& header,
                                             absl::Span<const uint8_t> payload);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_WIRE_FRAME_H_
