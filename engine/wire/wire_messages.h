// The messages of the chunkferry wire protocol, version 1 (docs/PROTOCOL.md): their type codes
// and the encoding of each payload (little-endian; engine/byte_io.h). Pure functions over bytes,
// no I/O; all thread-safe.
//
// Encoders trust their caller (uuids valid, sizes within the frame limit) and never fail.
// Decoders trust nothing: each takes one frame's payload, checks every count and length against
// the bytes actually there (never allocating more than the payload implies), refuses trailing
// bytes, unknown enum values and malformed uuids (a name from the wire never becomes a path), and
// returns InvalidArgument "malformed <TYPE>: …" (DataLoss for a damaged record or group record).
// Views returned by decoders (records, manifest data) point into the payload, which must outlive
// them.
#ifndef CHUNKFERRY_ENGINE_WIRE_WIRE_MESSAGES_H_
#define CHUNKFERRY_ENGINE_WIRE_WIRE_MESSAGES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "engine/format/kv_block.h"
#include "engine/format/volume_backup.h"
#include "engine/local/garbage_collector.h"
#include "engine/store/store.h"
#include "engine/wire/auth.h"
#include "engine/wire/wire_frame.h"

namespace chunkferry::engine {

// Protocol versions this build speaks.
inline constexpr uint16_t kMinProtocolVersion = 1;
inline constexpr uint16_t kMaxProtocolVersion = 1;

// Longest message an ERROR frame carries; EncodeError cuts longer ones.
inline constexpr size_t kMaxErrorMessage = 64u << 10;
// Most manifest bytes in one MANIFEST_DATA frame.
inline constexpr size_t kMaxManifestData = 1u << 20;

enum class MsgType : uint16_t {
  // Handshake.
  kHello = 1,      // C→S
  kChallenge = 2,  // S→C
  kAuth = 3,       // C→S
  kWelcome = 4,    // S→C
  kError = 5,      // either way; the sender closes the connection after it
  // Chunks.
  kHave = 10,
  kHaveReply = 11,
  kAppend = 12,
  kAppendAck = 13,
  kFlush = 14,
  kFlushAck = 15,
  kRead = 16,
  kRecords = 17,
  kReadEnd = 18,
  // Manifests and groups.
  kPutManifest = 20,
  kManifestData = 21,
  kManifestEnd = 22,
  kOpenManifest = 23,
  kPutGroup = 24,
  kGetGroup = 25,
  kGroup = 26,
  kListGroups = 27,
  kGroupList = 28,
  kOk = 29,
  kBye = 30,
  kPutManifestDelta = 31,  // only to a daemon whose WELCOME announces manifest_delta=1
  kDelete = 32,            // only to a daemon whose WELCOME announces delete=1
  kDeleted = 33,
  kGc = 34,  // only to a daemon whose WELCOME announces gc=1
  kGcDone = 35,
  kListBackups = 36,  // only to a daemon whose WELCOME announces list_backups=1
  kBackupList = 37,
};

// The type's name as PROTOCOL.md spells it ("APPEND_ACK"), or "UNKNOWN".
std::string_view MsgTypeName(uint16_t type);
inline std::string_view MsgTypeName(MsgType type) {
  return MsgTypeName(static_cast<uint16_t>(type));
}
// True for the types of version 1 above.
bool IsKnownMsgType(uint16_t type);

// Returns InvalidArgument "unexpected frame APPEND_ACK while waiting for HAVE_REPLY".
absl::Status UnexpectedFrameError(uint16_t got, MsgType waiting_for);

// Picks the highest version both sides speak: FailedPrecondition "protocol version mismatch:
// server speaks 1..1, client 2..3" when there is none.
[[nodiscard]] absl::StatusOr<uint16_t> ChooseVersion(uint16_t client_min, uint16_t client_max,
                                                     uint16_t server_min = kMinProtocolVersion,
                                                     uint16_t server_max = kMaxProtocolVersion);

// Appends a frame holding `payload` as a message of `type` to `out`.
void AppendMessage(MsgType type, absl::string_view payload, std::string* out);

// ---- Handshake. ----

// Longest key name a HELLO carries.
inline constexpr size_t kMaxKeyNameLength = 64;

// HELLO: u16 min_version, u16 max_version, 32 B client_nonce, and optionally u16 key name length
// (1..kMaxKeyNameLength) + the name of the key the client proves it holds. 1 <= min <= max.
struct Hello {
  uint16_t min_version = kMinProtocolVersion;
  uint16_t max_version = kMaxProtocolVersion;
  Nonce client_nonce{};
  std::string key_name;  // empty: not sent; the daemon uses its key named "default"
};
std::string EncodeHello(const Hello& hello);
[[nodiscard]] absl::StatusOr<Hello> DecodeHello(absl::Span<const uint8_t> payload);

// CHALLENGE: u16 version, 32 B server_nonce, u16 uuid length + store uuid, 32 B server_proof
// (Proof(key, kServerProofLabel, client_nonce, server_nonce, store_uuid)).
struct Challenge {
  uint16_t version = kMaxProtocolVersion;
  Nonce server_nonce{};
  std::string store_uuid;
  AuthProof server_proof{};
};
std::string EncodeChallenge(const Challenge& challenge);
[[nodiscard]] absl::StatusOr<Challenge> DecodeChallenge(absl::Span<const uint8_t> payload);

// AUTH: 32 B client_proof (Proof(key, kClientProofLabel, …)).
struct Auth {
  AuthProof client_proof{};
};
std::string EncodeAuth(const Auth& auth);
[[nodiscard]] absl::StatusOr<Auth> DecodeAuth(absl::Span<const uint8_t> payload);

// Unacknowledged APPEND payload a daemon accepts unless configured otherwise: two full frames,
// so one can be verified while the next arrives.
inline constexpr uint64_t kDefaultMaxInflight = 2 * uint64_t{kDefaultMaxFrame};

// WELCOME: KV block of the store's StoreInfo (StoreInfoToKv), u32 max_frame, u64 max_inflight.
// max_frame >= kMinMaxFrame and max_inflight >= max_frame.
struct Welcome {
  StoreInfo info;
  uint32_t max_frame = kDefaultMaxFrame;        // largest payload the daemon accepts
  uint64_t max_inflight = kDefaultMaxInflight;  // unacknowledged APPEND payload it accepts
  // The daemon takes PUT_MANIFEST_DELTA: WELCOME key `manifest_delta` = "1" (absent otherwise).
  bool manifest_delta = false;
  // The daemon takes DELETE: WELCOME key `delete` = "1" (absent otherwise).
  bool takes_delete = false;
  // The daemon takes GC: WELCOME key `gc` = "1" (absent otherwise).
  bool takes_gc = false;
  // The daemon takes LIST_BACKUPS: WELCOME key `list_backups` = "1" (absent otherwise).
  bool takes_list_backups = false;
  // The daemon takes APPEND frames whose checksum covers only their prefix (wire_frame.h's
  // kFrameFlagPrefixChecksum): WELCOME key `prefix_checksum` = "1" (absent otherwise).
  bool prefix_checksum = false;
};
std::string EncodeWelcome(const Welcome& welcome);
[[nodiscard]] absl::StatusOr<Welcome> DecodeWelcome(absl::Span<const uint8_t> payload);

// StoreInfo as WELCOME carries it: uuid, chunker (ChunkerSpec text), zstd_level, record_target,
// key_fingerprint (16 lowercase hex digits).
KvPairs StoreInfoToKv(const StoreInfo& info);
// InvalidArgument naming the field when a key is missing, repeated or out of range; keys this
// build does not know are ignored (a later daemon may add some). `what` prefixes errors.
[[nodiscard]] absl::StatusOr<StoreInfo> StoreInfoFromKv(const KvPairs& kv, absl::string_view what);

// ---- Errors. ----

// ERROR: u16 code (absl::StatusCode), u32 message length (<= kMaxErrorMessage), UTF-8 message.
struct ErrorMsg {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string message;
};
// Encodes `status`, which must not be OK (an OK status is sent as Internal, saying so). A message
// longer than kMaxErrorMessage is cut at a UTF-8 character boundary.
std::string EncodeError(const absl::Status& status);
// Decodes an ERROR payload. Codes that are not absl codes, and 0 (an ERROR never means OK), become
// kUnknown; control characters and invalid UTF-8 in the message become '?', so a peer cannot
// forge log lines.
[[nodiscard]] absl::StatusOr<ErrorMsg> DecodeErrorMsg(absl::Span<const uint8_t> payload);
// Returns the status an ERROR payload carries (never OK): the caller adds context such as
// "peer: ". A malformed payload gives InvalidArgument "malformed ERROR: …".
absl::Status DecodeError(absl::Span<const uint8_t> payload);

// ---- Chunks. ----

// HAVE and READ: u32 count, count × 16-byte chunk ids (codec::ChunkId::EncodeTo).
std::string EncodeHave(absl::Span<const codec::ChunkId> ids);
[[nodiscard]] absl::StatusOr<std::vector<codec::ChunkId>> DecodeHave(
    absl::Span<const uint8_t> payload);
std::string EncodeRead(absl::Span<const codec::ChunkId> ids);
[[nodiscard]] absl::StatusOr<std::vector<codec::ChunkId>> DecodeRead(
    absl::Span<const uint8_t> payload);
// Most ids one HAVE or READ may carry within a frame limit.
constexpr size_t MaxIdsPerFrame(uint32_t max_frame) {
  return max_frame < 4 ? 0 : (max_frame - 4) / codec::kChunkIdSize;
}

// HAVE_REPLY: u32 count, ceil(count / 8) bitmap bytes; bit i%8 of byte i/8 is set when the store
// has id i. Unused bits of the last byte are 0.
std::string EncodeHaveReply(const std::vector<bool>& have);
// Also checks that the reply answers exactly `expected_count` ids (the HAVE's count).
[[nodiscard]] absl::StatusOr<std::vector<bool>> DecodeHaveReply(absl::Span<const uint8_t> payload,
                                                                size_t expected_count);

// APPEND: u8 verify mode (0 full, 1 checksum), u8 reserved (0), u32 record count, then the
// records back to back exactly as stored (codec/record.h).
inline constexpr size_t kAppendPrefixSize = 6;
struct AppendView {
  VerifyMode mode = VerifyMode::kFull;
  std::vector<absl::Span<const uint8_t>> records;  // into the payload
};
std::string EncodeAppend(VerifyMode mode, absl::Span<const absl::Span<const uint8_t>> records);
// Writes an APPEND's prefix (mode, reserved, record count) into `out`, for a sender that lays
// the records after it itself.
void EncodeAppendPrefix(VerifyMode mode, uint32_t record_count, uint8_t out[kAppendPrefixSize]);
// Splits the records with codec::ParseRecord (which checks each header's checksum, not the
// payloads: the store verifies those) and refuses records that do not tile the payload exactly.
[[nodiscard]] absl::StatusOr<AppendView> DecodeAppend(absl::Span<const uint8_t> payload);

// APPEND_ACK: u64 records_received, records_appended, bytes_appended, chunks_added (the totals
// of one APPEND).
std::string EncodeAppendAck(const AppendStats& stats);
[[nodiscard]] absl::StatusOr<AppendStats> DecodeAppendAck(absl::Span<const uint8_t> payload);

// RECORDS: u32 record count, then the records back to back (split as for APPEND).
inline constexpr size_t kRecordsPrefixSize = 4;
std::string EncodeRecords(absl::Span<const absl::Span<const uint8_t>> records);
[[nodiscard]] absl::StatusOr<std::vector<absl::Span<const uint8_t>>> DecodeRecords(
    absl::Span<const uint8_t> payload);

// ---- Manifests and groups. ----

// Longest manifest, or manifest delta, a peer may announce or stream: the manifest of a volume of
// about 12 TiB in 4 KiB chunks. A longer announcement is a protocol error, so that a peer cannot
// make the other side write without bound.
inline constexpr uint64_t kMaxManifestLength = uint64_t{64} << 30;

// PUT_MANIFEST: u16 uuid length + backup uuid, u64 length of the manifest file (> 0), followed by
// MANIFEST_DATA frames carrying exactly that many bytes, then MANIFEST_END.
struct PutManifest {
  std::string backup_uuid;
  uint64_t file_length = 0;
};
std::string EncodePutManifest(const PutManifest& put);
[[nodiscard]] absl::StatusOr<PutManifest> DecodePutManifest(absl::Span<const uint8_t> payload);

// PUT_MANIFEST_DELTA: u16 uuid length + backup uuid, u16 uuid length + base uuid, u64 length of
// the delta (1..kMaxManifestLength; engine/manifest_delta.h), followed by MANIFEST_DATA
// frames carrying exactly that many bytes, then MANIFEST_END.
struct PutManifestDelta {
  std::string backup_uuid;
  std::string base_uuid;
  uint64_t delta_length = 0;
};
std::string EncodePutManifestDelta(const PutManifestDelta& put);
[[nodiscard]] absl::StatusOr<PutManifestDelta> DecodePutManifestDelta(
    absl::Span<const uint8_t> payload);

// MANIFEST_DATA: 1..kMaxManifestData raw bytes of the manifest file. The payload is the bytes,
// so encoding is the identity; the decoder checks the size and returns the payload.
[[nodiscard]] absl::StatusOr<absl::Span<const uint8_t>> DecodeManifestData(
    absl::Span<const uint8_t> payload);

// OPEN_MANIFEST and GET_GROUP: u16 uuid length + uuid.
std::string EncodeOpenManifest(absl::string_view backup_uuid);
[[nodiscard]] absl::StatusOr<std::string> DecodeOpenManifest(absl::Span<const uint8_t> payload);
std::string EncodeGetGroup(absl::string_view group_uuid);
[[nodiscard]] absl::StatusOr<std::string> DecodeGetGroup(absl::Span<const uint8_t> payload);

// PUT_GROUP and GROUP: the group record exactly as EncodeGroup writes it (it carries its own
// checksum). Decoding also checks the optional vmInstanceUuid.
std::string EncodePutGroup(const GroupRecord& group);
[[nodiscard]] absl::StatusOr<GroupRecord> DecodePutGroup(absl::Span<const uint8_t> payload);
std::string EncodeGroupReply(const GroupRecord& group);
[[nodiscard]] absl::StatusOr<GroupRecord> DecodeGroupReply(absl::Span<const uint8_t> payload);

// GROUP_LIST: u32 count, count × (u16 length + group uuid).
std::string EncodeGroupList(absl::Span<const std::string> group_uuids);
// BACKUP_LIST: the volume backup uuids a store holds, as GROUP_LIST lays out its uuids.
std::string EncodeBackupList(absl::Span<const std::string> backup_uuids);
[[nodiscard]] absl::StatusOr<std::vector<std::string>> DecodeBackupList(
    absl::Span<const uint8_t> payload);
[[nodiscard]] absl::StatusOr<std::vector<std::string>> DecodeGroupList(
    absl::Span<const uint8_t> payload);

// DELETE: u8 kind (0 a group and its volume backups, 1 one volume backup), uuid.
struct DeleteRequest {
  DeleteKind kind = DeleteKind::kGroup;
  std::string uuid;
};
std::string EncodeDelete(const DeleteRequest& request);
[[nodiscard]] absl::StatusOr<DeleteRequest> DecodeDelete(absl::Span<const uint8_t> payload);

// DELETED: three uuid lists, each u32 count + count × (u16 length + uuid): groups removed,
// volume backups removed, volume backups kept (named by another group too).
std::string EncodeDeleted(const DeleteResult& result);
[[nodiscard]] absl::StatusOr<DeleteResult> DecodeDeleted(absl::Span<const uint8_t> payload);

// GC: u8 flags (bit 0: dry run; other bits refused), u32 repack_below in millionths
// (0..1000000).
struct GcRequest {
  bool dry_run = false;
  uint32_t repack_below_ppm = 500'000;
};
std::string EncodeGc(const GcRequest& request);
[[nodiscard]] absl::StatusOr<GcRequest> DecodeGc(absl::Span<const uint8_t> payload);

// GC_DONE: the collection's totals (GcStats), 13 × u64 in this order: manifests, chunks
// referenced, records, records live, packs before, bytes before, packs removed, packs
// rewritten, packs kept in use, records copied, bytes copied, bytes reclaimed, milliseconds.
std::string EncodeGcDone(const GcStats& stats);
[[nodiscard]] absl::StatusOr<GcStats> DecodeGcDone(absl::Span<const uint8_t> payload);

// FLUSH, FLUSH_ACK, READ_END, MANIFEST_END, LIST_GROUPS, OK and BYE carry nothing: checks that
// the payload of a `type` message is empty.
[[nodiscard]] absl::Status CheckEmptyPayload(MsgType type, absl::Span<const uint8_t> payload);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_WIRE_MESSAGES_H_
