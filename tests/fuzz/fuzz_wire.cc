// Fuzzes the wire protocol's frame layer and every message decoder (engine/wire/wire_frame.h,
// engine/wire/wire_messages.h): what an unauthenticated or hostile peer can send.
//
// Input: byte 0 picks the mode. Below 0xf0 it names a message type (byte 0 modulo the number of
// decoders) and the rest is that message's payload; from 0xf0 on the rest is a stream of whole
// frames (16-byte header + payload), each decoded by the type its header names. Every payload is
// decoded as given and, when its format has checksums (records in APPEND and RECORDS, group
// records), again with them fixed up; a frame stream is parsed as given and again with each
// header's length and checksum fixed. A decoded message is encoded again: for the messages whose
// encoding is canonical the bytes must come back identical, for the others the decoded fields.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/wire/wire_frame.h"
#include "engine/wire/wire_messages.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

using engine::MsgType;

absl::Span<const uint8_t> Span(const std::string& s) { return engine::AsBytes(s); }

bool SameBytes(const std::string& encoded, absl::Span<const uint8_t> payload) {
  return encoded.size() == payload.size() &&
         std::memcmp(encoded.data(), payload.data(), payload.size()) == 0;
}

bool SameInfo(const engine::StoreInfo& a, const engine::StoreInfo& b) {
  return a.uuid == b.uuid && a.chunker.ToString() == b.chunker.ToString() &&
         a.zstd_level == b.zstd_level && a.record_target == b.record_target &&
         a.key_fingerprint == b.key_fingerprint;
}

bool SameGroup(const engine::GroupRecord& a, const engine::GroupRecord& b) {
  return a.group_uuid == b.group_uuid && a.vm_instance_uuid == b.vm_instance_uuid &&
         a.volume_uuids == b.volume_uuids && a.create_date == b.create_date;
}

bool SameGc(const engine::GcStats& a, const engine::GcStats& b) {
  return engine::EncodeGcDone(a) == engine::EncodeGcDone(b);
}

// Decodes `payload` as a message of `type` and checks what comes back.
void DecodeAs(uint16_t type, absl::Span<const uint8_t> payload) {
  switch (static_cast<MsgType>(type)) {
    case MsgType::kHello:
      if (auto m = engine::DecodeHello(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeHello(*m), payload));
        auto v = engine::ChooseVersion(m->min_version, m->max_version);
        if (v.ok()) FUZZ_CHECK(*v >= m->min_version && *v <= m->max_version);
      }
      break;
    case MsgType::kChallenge:
      if (auto m = engine::DecodeChallenge(payload); m.ok()) {
        FUZZ_CHECK(engine::IsValidUuid(m->store_uuid));
        FUZZ_CHECK(SameBytes(engine::EncodeChallenge(*m), payload));
      }
      break;
    case MsgType::kAuth:
      if (auto m = engine::DecodeAuth(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeAuth(*m), payload));
      }
      break;
    case MsgType::kWelcome:
      if (auto m = engine::DecodeWelcome(payload); m.ok()) {
        FUZZ_CHECK(m->max_frame >= engine::kMinMaxFrame && m->max_inflight >= m->max_frame);
        const std::string again = engine::EncodeWelcome(*m);
        auto m2 = engine::DecodeWelcome(Span(again));
        FUZZ_CHECK(m2.ok());
        FUZZ_CHECK(SameInfo(m->info, m2->info) && m->max_frame == m2->max_frame &&
                   m->max_inflight == m2->max_inflight && m->manifest_delta == m2->manifest_delta &&
                   m->takes_delete == m2->takes_delete && m->takes_gc == m2->takes_gc);
      }
      break;
    case MsgType::kError: {
      const absl::Status st = engine::DecodeError(payload);
      FUZZ_CHECK(!st.ok());
      if (auto m = engine::DecodeErrorMsg(payload); m.ok()) {
        FUZZ_CHECK(m->code != absl::StatusCode::kOk);
        // Sanitizing replaces a byte with one byte: the length stays within the limit.
        FUZZ_CHECK(m->message.size() <= engine::kMaxErrorMessage);
        for (char c : m->message) FUZZ_CHECK(static_cast<uint8_t>(c) >= 0x20 && c != 0x7f);
        // A sanitized message is valid UTF-8 without control characters: it travels unchanged.
        const std::string again = engine::EncodeError(absl::Status(m->code, m->message));
        auto m2 = engine::DecodeErrorMsg(Span(again));
        FUZZ_CHECK(m2.ok());
        FUZZ_CHECK(m2->code == m->code && m2->message == m->message);
      }
      break;
    }
    case MsgType::kHave:
    case MsgType::kRead: {
      const bool have = type == static_cast<uint16_t>(MsgType::kHave);
      auto ids = have ? engine::DecodeHave(payload) : engine::DecodeRead(payload);
      if (ids.ok()) {
        FUZZ_CHECK(SameBytes(have ? engine::EncodeHave(*ids) : engine::EncodeRead(*ids), payload));
      }
      break;
    }
    case MsgType::kHaveReply: {
      const size_t announced = payload.size() >= 4 ? engine::LoadU32(payload.data()) : 0;
      if (auto m = engine::DecodeHaveReply(payload, announced); m.ok()) {
        FUZZ_CHECK(m->size() == announced);
        FUZZ_CHECK(SameBytes(engine::EncodeHaveReply(*m), payload));
      }
      // The count a HAVE asked about differs: always refused.
      FUZZ_CHECK(!engine::DecodeHaveReply(payload, announced + 1).ok());
      break;
    }
    case MsgType::kAppend:
      if (auto m = engine::DecodeAppend(payload); m.ok()) {
        for (const auto& rec : m->records) FUZZ_CHECK(codec::ParseRecord(rec).ok());
        FUZZ_CHECK(SameBytes(engine::EncodeAppend(m->mode, m->records), payload));
      }
      break;
    case MsgType::kAppendAck:
      if (auto m = engine::DecodeAppendAck(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeAppendAck(*m), payload));
      }
      break;
    case MsgType::kRecords:
      if (auto m = engine::DecodeRecords(payload); m.ok()) {
        for (const auto& rec : *m) FUZZ_CHECK(codec::ParseRecord(rec).ok());
        FUZZ_CHECK(SameBytes(engine::EncodeRecords(*m), payload));
      }
      break;
    case MsgType::kPutManifest:
      if (auto m = engine::DecodePutManifest(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodePutManifest(*m), payload));
      }
      break;
    case MsgType::kPutManifestDelta:
      if (auto m = engine::DecodePutManifestDelta(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodePutManifestDelta(*m), payload));
      }
      break;
    case MsgType::kManifestData:
      if (auto m = engine::DecodeManifestData(payload); m.ok()) {
        FUZZ_CHECK(m->data() == payload.data() && m->size() == payload.size());
      }
      break;
    case MsgType::kOpenManifest:
      if (auto m = engine::DecodeOpenManifest(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeOpenManifest(*m), payload));
      }
      break;
    case MsgType::kGetGroup:
      if (auto m = engine::DecodeGetGroup(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeGetGroup(*m), payload));
      }
      break;
    case MsgType::kPutGroup:
    case MsgType::kGroup: {
      const bool put = type == static_cast<uint16_t>(MsgType::kPutGroup);
      auto m = put ? engine::DecodePutGroup(payload) : engine::DecodeGroupReply(payload);
      if (m.ok()) {
        const std::string again = put ? engine::EncodePutGroup(*m) : engine::EncodeGroupReply(*m);
        auto m2 = put ? engine::DecodePutGroup(Span(again)) : engine::DecodeGroupReply(Span(again));
        FUZZ_CHECK(m2.ok());
        FUZZ_CHECK(SameGroup(*m, *m2));
      }
      break;
    }
    case MsgType::kGroupList:
      if (auto m = engine::DecodeGroupList(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeGroupList(*m), payload));
      }
      break;
    case MsgType::kBackupList:
      if (auto m = engine::DecodeBackupList(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeBackupList(*m), payload));
      }
      break;
    case MsgType::kDelete:
      if (auto m = engine::DecodeDelete(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeDelete(*m), payload));
      }
      break;
    case MsgType::kDeleted:
      if (auto m = engine::DecodeDeleted(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeDeleted(*m), payload));
      }
      break;
    case MsgType::kGc:
      if (auto m = engine::DecodeGc(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeGc(*m), payload));
      }
      break;
    case MsgType::kGcDone:
      if (auto m = engine::DecodeGcDone(payload); m.ok()) {
        FUZZ_CHECK(SameBytes(engine::EncodeGcDone(*m), payload));
        auto m2 = engine::DecodeGcDone(Span(engine::EncodeGcDone(*m)));
        FUZZ_CHECK(m2.ok() && SameGc(*m, *m2));
      }
      break;
    case MsgType::kFlush:
    case MsgType::kFlushAck:
    case MsgType::kReadEnd:
    case MsgType::kManifestEnd:
    case MsgType::kListGroups:
    case MsgType::kListBackups:
    case MsgType::kOk:
    case MsgType::kBye:
      FUZZ_CHECK(engine::CheckEmptyPayload(static_cast<MsgType>(type), payload).ok() ==
                 payload.empty());
      break;
    default:
      FUZZ_CHECK(!engine::IsKnownMsgType(type));
      (void)engine::UnexpectedFrameError(type, MsgType::kHello);
      break;
  }
}

// Decodes as given, then with the checksums inside the payload fixed up.
void DecodeBoth(uint16_t type, absl::Span<const uint8_t> payload) {
  DecodeAs(type, payload);
  std::vector<uint8_t> fixed(payload.begin(), payload.end());
  switch (static_cast<MsgType>(type)) {
    case MsgType::kAppend:
      if (fixed.size() > engine::kAppendPrefixSize) {
        FixRecords(absl::MakeSpan(fixed).subspan(engine::kAppendPrefixSize));
      }
      break;
    case MsgType::kRecords:
      if (fixed.size() > engine::kRecordsPrefixSize) {
        FixRecords(absl::MakeSpan(fixed).subspan(engine::kRecordsPrefixSize));
      }
      break;
    case MsgType::kPutGroup:
    case MsgType::kGroup:
      if (!FixTailChecksum(absl::MakeSpan(fixed))) return;
      break;
    default:
      return;  // no checksum inside
  }
  DecodeAs(type, fixed);
}

constexpr uint16_t kAppendType = static_cast<uint16_t>(engine::MsgType::kAppend);

// Parses a stream of frames; with `fix`, each header's length is cut to the bytes there and its
// checksum recomputed first.
void ParseFrames(absl::Span<const uint8_t> stream, bool fix) {
  std::vector<uint8_t> buf(stream.begin(), stream.end());
  size_t pos = 0;
  while (buf.size() - pos >= engine::kFrameHeaderSize) {
    uint8_t* h = buf.data() + pos;
    const size_t rest = buf.size() - pos - engine::kFrameHeaderSize;
    if (fix) {
      std::memcpy(h, engine::kFrameMagic, 4);
      h[6] &= engine::kFrameFlagPrefixChecksum;  // flags: PREFIX_CHECKSUM kept where it was set
      h[7] = 0;
      if (engine::LoadU32(h + 8) > rest) engine::StoreU32(h + 8, static_cast<uint32_t>(rest));
      const uint32_t len = engine::LoadU32(h + 8);
      engine::StoreU32(h + 12, engine::FrameChecksum(absl::MakeConstSpan(h + 16, len), h[6]));
    }
    auto header = engine::ParseFrameHeader(
        std::span<const uint8_t, engine::kFrameHeaderSize>(h, engine::kFrameHeaderSize),
        engine::kHandshakeMaxFrame, kAppendType);
    if (!header.ok()) return;
    // As a daemon reads them: PREFIX_CHECKSUM on APPEND frames only.
    FUZZ_CHECK(header->flags == 0 ||
               (header->flags == engine::kFrameFlagPrefixChecksum && header->type == kAppendType));
    FUZZ_CHECK(header->payload_length <= engine::kHandshakeMaxFrame);
    if (header->payload_length > rest) return;
    const auto payload = absl::MakeConstSpan(h + engine::kFrameHeaderSize, header->payload_length);
    if (!engine::CheckFramePayload(*header, payload).ok()) return;
    // A frame that checks out re-encodes to the same header.
    uint8_t again[engine::kFrameHeaderSize];
    engine::EncodeFrameHeader(header->type, header->payload_length,
                              engine::FrameChecksum(payload, header->flags), again, header->flags);
    FUZZ_CHECK(std::memcmp(again, h, engine::kFrameHeaderSize) == 0);
    (void)engine::MsgTypeName(header->type);
    DecodeBoth(header->type, payload);
    pos += engine::kFrameHeaderSize + header->payload_length;
  }
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size == 0) return 0;
  const auto rest = absl::MakeConstSpan(data + 1, size - 1);
  if (data[0] >= 0xf0) {
    ParseFrames(rest, /*fix=*/false);
    ParseFrames(rest, /*fix=*/true);
    return 0;
  }
  const auto type = kWireFuzzTypes[data[0] % std::size(kWireFuzzTypes)];
  DecodeBoth(static_cast<uint16_t>(type), rest);
  return 0;
}
