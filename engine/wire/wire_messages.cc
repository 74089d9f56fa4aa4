#include "engine/wire/wire_messages.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "codec/chunker.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"

namespace chunkferry::engine {
namespace {

// Range of zstd levels a store may announce (zstd's own bounds).
constexpr int kMinZstdLevel = -(1 << 17);
constexpr int kMaxZstdLevel = 22;
// Smallest record: the fixed header, one table entry and one payload byte.
constexpr size_t kMinRecordSize = codec::RecordHeaderSize(1) + 1;

absl::string_view Name(MsgType type) {
  const std::string_view n = MsgTypeName(type);
  return absl::string_view(n.data(), n.size());
}

template <typename... Args>
absl::Status Malformed(MsgType type, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", Name(type), ": ", args...));
}

// Shows at most 64 bytes of a hostile string, escaped, for an error message.
std::string Quote(absl::string_view s) {
  const bool cut = s.size() > 64;
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, 64)), cut ? "\"…" : "\"");
}

absl::string_view AsChars(absl::Span<const uint8_t> bytes) {
  return absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

absl::Status CheckEnd(MsgType type, const ByteReader& r) {
  if (!r.ok()) return Malformed(type, "payload is truncated");
  if (r.remaining() != 0) {
    return Malformed(type, r.remaining(), " trailing bytes after the message");
  }
  return absl::OkStatus();
}

template <size_t N>
void PutArray(std::string* out, const std::array<uint8_t, N>& a) {
  out->append(reinterpret_cast<const char*>(a.data()), a.size());
}

template <size_t N>
void TakeArray(ByteReader& r, std::array<uint8_t, N>* a) {
  const uint8_t* p = r.Take(N);
  if (p != nullptr) std::memcpy(a->data(), p, N);
}

// u16 length + uuid; the caller's uuid is valid, so it always fits.
void PutUuid(std::string* out, absl::string_view uuid) {
  const size_t n = std::min<size_t>(uuid.size(), 0xffff);
  PutU16(out, static_cast<uint16_t>(n));
  out->append(uuid.data(), n);
}

absl::StatusOr<std::string> TakeUuid(MsgType type, ByteReader& r, absl::string_view field) {
  const uint16_t n = r.U16();
  const absl::string_view uuid = r.Bytes(n);
  if (!r.ok()) return Malformed(type, "payload is truncated in the ", field);
  if (!IsValidUuid(uuid)) {
    return Malformed(type, field, " ", Quote(uuid), " is not a uuid (32 lowercase hex characters)");
  }
  return std::string(uuid);
}

std::string EncodeIds(absl::Span<const codec::ChunkId> ids) {
  std::string out;
  out.reserve(4 + ids.size() * codec::kChunkIdSize);
  PutU32(&out, static_cast<uint32_t>(ids.size()));
  uint8_t buf[codec::kChunkIdSize];
  for (const codec::ChunkId& id : ids) {
    id.EncodeTo(buf);
    out.append(reinterpret_cast<const char*>(buf), sizeof(buf));
  }
  return out;
}

absl::StatusOr<std::vector<codec::ChunkId>> DecodeIds(MsgType type,
                                                      absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint32_t count = r.U32();
  if (!r.ok()) return Malformed(type, "payload is truncated");
  // Compared by division: count * 16 could overflow.
  const size_t rest = r.remaining();
  if (rest % codec::kChunkIdSize != 0 || rest / codec::kChunkIdSize != count) {
    return Malformed(type, "announces ", count, " chunk ids but carries ", rest, " bytes (", count,
                     " × ", codec::kChunkIdSize, " expected)");
  }
  std::vector<codec::ChunkId> ids;
  ids.reserve(count);
  for (uint32_t i = 0; i < count; ++i) ids.push_back(codec::ChunkId::DecodeFrom(r.Take(16)));
  return ids;
}

// Splits `count` records that must tile `bytes` exactly.
absl::StatusOr<std::vector<absl::Span<const uint8_t>>> SplitRecords(MsgType type, uint32_t count,
                                                                    absl::Span<const uint8_t> bytes,
                                                                    size_t base_offset) {
  // Bounds the vector below by what the bytes can hold before anything is allocated.
  if (count > bytes.size() / kMinRecordSize) {
    return Malformed(type, "announces ", count, " records but carries only ", bytes.size(),
                     " bytes of them");
  }
  std::vector<absl::Span<const uint8_t>> records;
  records.reserve(count);
  size_t offset = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const absl::Span<const uint8_t> rest = bytes.subspan(offset);
    if (rest.empty()) {
      return Malformed(type, "announces ", count, " records but the payload ends after ", i);
    }
    absl::StatusOr<codec::RecordView> view = codec::ParseRecord(rest);
    if (!view.ok()) {
      const std::string where = absl::StrCat("record ", i, " at payload offset ",
                                             base_offset + offset, ": ", view.status().message());
      if (absl::IsOutOfRange(view.status())) {
        return Malformed(type, where, " (the record runs past the payload)");
      }
      return absl::Status(view.status().code(), absl::StrCat(Name(type), " ", where));
    }
    records.push_back(rest.first(view->size));
    offset += view->size;
  }
  if (offset != bytes.size()) {
    return Malformed(type, bytes.size() - offset, " trailing bytes after ", count, " records");
  }
  return records;
}

std::string EncodeRecordsAfter(std::string out,
                               absl::Span<const absl::Span<const uint8_t>> records) {
  for (const absl::Span<const uint8_t> rec : records) {
    out.append(reinterpret_cast<const char*>(rec.data()), rec.size());
  }
  return out;
}

size_t TotalSize(absl::Span<const absl::Span<const uint8_t>> records) {
  size_t n = 0;
  for (const absl::Span<const uint8_t> rec : records) n += rec.size();
  return n;
}

absl::StatusOr<GroupRecord> DecodeGroupPayload(MsgType type, absl::Span<const uint8_t> payload) {
  absl::StatusOr<GroupRecord> group = DecodeGroup(AsChars(payload), Name(type));
  if (!group.ok()) return group.status();
  if (group->vm_instance_uuid && !IsValidUuid(*group->vm_instance_uuid)) {
    return Malformed(type, "vmInstanceUuid ", Quote(*group->vm_instance_uuid), " is not a uuid");
  }
  return group;
}

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
absl::string_view CutUtf8(absl::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<uint8_t>(s[n]) & 0xc0) == 0x80) --n;
  return s.substr(0, n);
}

// Copies `s`, replacing control characters and bytes that are not well-formed UTF-8 with '?'.
std::string SanitizeUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
      ++i;
      continue;
    }
    // Length and range of the second byte (RFC 3629 table: no overlongs, no surrogates).
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    }
    bool valid = len != 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const uint8_t b = static_cast<uint8_t>(s[i + k]);
      valid = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xbf);
    }
    if (valid) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

bool ParseHex64(absl::string_view s, uint64_t* out) {
  if (s.size() != 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

}  // namespace

std::string_view MsgTypeName(uint16_t type) {
  switch (static_cast<MsgType>(type)) {
    case MsgType::kHello:
      return "HELLO";
    case MsgType::kChallenge:
      return "CHALLENGE";
    case MsgType::kAuth:
      return "AUTH";
    case MsgType::kWelcome:
      return "WELCOME";
    case MsgType::kError:
      return "ERROR";
    case MsgType::kHave:
      return "HAVE";
    case MsgType::kHaveReply:
      return "HAVE_REPLY";
    case MsgType::kAppend:
      return "APPEND";
    case MsgType::kAppendAck:
      return "APPEND_ACK";
    case MsgType::kFlush:
      return "FLUSH";
    case MsgType::kFlushAck:
      return "FLUSH_ACK";
    case MsgType::kRead:
      return "READ";
    case MsgType::kRecords:
      return "RECORDS";
    case MsgType::kReadEnd:
      return "READ_END";
    case MsgType::kPutManifest:
      return "PUT_MANIFEST";
    case MsgType::kManifestData:
      return "MANIFEST_DATA";
    case MsgType::kManifestEnd:
      return "MANIFEST_END";
    case MsgType::kOpenManifest:
      return "OPEN_MANIFEST";
    case MsgType::kPutGroup:
      return "PUT_GROUP";
    case MsgType::kGetGroup:
      return "GET_GROUP";
    case MsgType::kGroup:
      return "GROUP";
    case MsgType::kListGroups:
      return "LIST_GROUPS";
    case MsgType::kGroupList:
      return "GROUP_LIST";
    case MsgType::kOk:
      return "OK";
    case MsgType::kBye:
      return "BYE";
    case MsgType::kPutManifestDelta:
      return "PUT_MANIFEST_DELTA";
    case MsgType::kDelete:
      return "DELETE";
    case MsgType::kDeleted:
      return "DELETED";
    case MsgType::kGc:
      return "GC";
    case MsgType::kGcDone:
      return "GC_DONE";
    case MsgType::kListBackups:
      return "LIST_BACKUPS";
    case MsgType::kBackupList:
      return "BACKUP_LIST";
  }
  return "UNKNOWN";
}

bool IsKnownMsgType(uint16_t type) { return MsgTypeName(type) != "UNKNOWN"; }

absl::Status UnexpectedFrameError(uint16_t got, MsgType waiting_for) {
  const std::string_view name = MsgTypeName(got);
  const std::string got_label =
      IsKnownMsgType(got) ? std::string(name) : absl::StrCat("of unknown type ", got);
  return absl::InvalidArgumentError(
      absl::StrCat("unexpected frame ", got_label, " while waiting for ", Name(waiting_for)));
}

absl::StatusOr<uint16_t> ChooseVersion(uint16_t client_min, uint16_t client_max,
                                       uint16_t server_min, uint16_t server_max) {
  const uint16_t high = std::min(client_max, server_max);
  const uint16_t low = std::max(client_min, server_min);
  if (client_min > client_max || high < low) {
    return absl::FailedPreconditionError(absl::StrCat("protocol version mismatch: server speaks ",
                                                      server_min, "..", server_max, ", client ",
                                                      client_min, "..", client_max));
  }
  return high;
}

void AppendMessage(MsgType type, absl::string_view payload, std::string* out) {
  AppendFrame(static_cast<uint16_t>(type), AsBytes(payload), out);
}

// ---- Handshake. ----

std::string EncodeHello(const Hello& hello) {
  std::string out;
  PutU16(&out, hello.min_version);
  PutU16(&out, hello.max_version);
  PutArray(&out, hello.client_nonce);
  if (!hello.key_name.empty()) {
    PutU16(&out, static_cast<uint16_t>(hello.key_name.size()));
    out.append(hello.key_name);
  }
  return out;
}

absl::StatusOr<Hello> DecodeHello(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  Hello h;
  h.min_version = r.U16();
  h.max_version = r.U16();
  TakeArray(r, &h.client_nonce);
  if (r.ok() && r.remaining() > 0) {
    const uint16_t n = r.U16();
    if (n == 0 || n > kMaxKeyNameLength) {
      return Malformed(MsgType::kHello, "key name of ", n, " bytes (1 to ", kMaxKeyNameLength,
                       " expected)");
    }
    h.key_name = std::string(r.Bytes(n));
  }
  if (absl::Status st = CheckEnd(MsgType::kHello, r); !st.ok()) return st;
  if (h.min_version == 0 || h.min_version > h.max_version) {
    return Malformed(MsgType::kHello, "version range ", h.min_version, "..", h.max_version,
                     " is empty or starts at 0");
  }
  return h;
}

std::string EncodeChallenge(const Challenge& challenge) {
  std::string out;
  PutU16(&out, challenge.version);
  PutArray(&out, challenge.server_nonce);
  PutUuid(&out, challenge.store_uuid);
  PutArray(&out, challenge.server_proof);
  return out;
}

absl::StatusOr<Challenge> DecodeChallenge(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  Challenge c;
  c.version = r.U16();
  TakeArray(r, &c.server_nonce);
  absl::StatusOr<std::string> uuid = TakeUuid(MsgType::kChallenge, r, "store uuid");
  if (!uuid.ok()) return uuid.status();
  c.store_uuid = *std::move(uuid);
  TakeArray(r, &c.server_proof);
  if (absl::Status st = CheckEnd(MsgType::kChallenge, r); !st.ok()) return st;
  if (c.version == 0) return Malformed(MsgType::kChallenge, "version 0 does not exist");
  return c;
}

std::string EncodeAuth(const Auth& auth) {
  std::string out;
  PutArray(&out, auth.client_proof);
  return out;
}

absl::StatusOr<Auth> DecodeAuth(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  Auth a;
  TakeArray(r, &a.client_proof);
  if (absl::Status st = CheckEnd(MsgType::kAuth, r); !st.ok()) return st;
  return a;
}

KvPairs StoreInfoToKv(const StoreInfo& info) {
  KvPairs kv;
  kv.emplace_back("uuid", info.uuid);
  kv.emplace_back("chunker", info.chunker.ToString());
  kv.emplace_back("zstd_level", absl::StrCat(info.zstd_level));
  kv.emplace_back("record_target", absl::StrCat(info.record_target));
  kv.emplace_back("key_fingerprint",
                  absl::StrCat(absl::Hex(info.key_fingerprint, absl::kZeroPad16)));
  return kv;
}

absl::StatusOr<StoreInfo> StoreInfoFromKv(const KvPairs& kv, absl::string_view what) {
  StoreInfo info;
  enum : unsigned { kUuid = 1, kChunker = 2, kLevel = 4, kTarget = 8, kFingerprint = 16 };
  unsigned seen = 0;
  auto bad = [what](absl::string_view key, absl::string_view value, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": store ", key, " ", Quote(value), " ", why));
  };
  for (const auto& [key, value] : kv) {
    unsigned bit = 0;
    if (key == "uuid") {
      bit = kUuid;
      if (!IsValidUuid(value)) return bad(key, value, "is not a uuid");
      info.uuid = value;
    } else if (key == "chunker") {
      bit = kChunker;
      absl::StatusOr<codec::ChunkerSpec> spec = codec::ChunkerSpec::Parse(value);
      if (!spec.ok()) return bad(key, value, absl::StrCat("is invalid: ", spec.status().message()));
      info.chunker = *spec;
    } else if (key == "zstd_level") {
      bit = kLevel;
      if (!absl::SimpleAtoi(value, &info.zstd_level) || info.zstd_level < kMinZstdLevel ||
          info.zstd_level > kMaxZstdLevel) {
        return bad(key, value,
                   absl::StrCat("is not a level from ", kMinZstdLevel, " to ", kMaxZstdLevel));
      }
    } else if (key == "record_target") {
      bit = kTarget;
      if (!absl::SimpleAtoi(value, &info.record_target) || info.record_target == 0 ||
          info.record_target > codec::kMaxRecordRawLength) {
        return bad(key, value,
                   absl::StrCat("is not a size from 1 to ", codec::kMaxRecordRawLength));
      }
    } else if (key == "key_fingerprint") {
      bit = kFingerprint;
      if (!ParseHex64(value, &info.key_fingerprint)) {
        return bad(key, value, "is not 16 lowercase hex digits");
      }
    } else {
      continue;  // added by a later version; this build does not need it
    }
    if (seen & bit) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": store ", key, " appears twice"));
    }
    seen |= bit;
  }
  static constexpr std::pair<unsigned, const char*> kRequired[] = {
      {kUuid, "uuid"},
      {kChunker, "chunker"},
      {kLevel, "zstd_level"},
      {kTarget, "record_target"},
      {kFingerprint, "key_fingerprint"}};
  for (const auto& [bit, key] : kRequired) {
    if (!(seen & bit)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": store ", key, " is missing"));
    }
  }
  return info;
}

std::string EncodeWelcome(const Welcome& welcome) {
  std::string out;
  KvPairs kv = StoreInfoToKv(welcome.info);
  if (welcome.manifest_delta) kv.emplace_back("manifest_delta", "1");
  if (welcome.takes_delete) kv.emplace_back("delete", "1");
  if (welcome.takes_gc) kv.emplace_back("gc", "1");
  if (welcome.takes_list_backups) kv.emplace_back("list_backups", "1");
  if (welcome.prefix_checksum) kv.emplace_back("prefix_checksum", "1");
  EncodeKv(kv, &out);
  PutU32(&out, welcome.max_frame);
  PutU64(&out, welcome.max_inflight);
  return out;
}

absl::StatusOr<Welcome> DecodeWelcome(absl::Span<const uint8_t> payload) {
  // Each pair takes at least 6 bytes (two lengths): a count beyond that is refused before
  // DecodeKv reserves room for it.
  if (payload.size() >= 4 && LoadU32(payload.data()) > (payload.size() - 4) / 6) {
    return Malformed(MsgType::kWelcome, "store info announces ", LoadU32(payload.data()),
                     " fields in ", payload.size(), " bytes");
  }
  ByteReader r(payload);
  const std::string what = absl::StrCat("malformed ", Name(MsgType::kWelcome));
  absl::StatusOr<KvPairs> kv = DecodeKv(r, what);
  if (!kv.ok()) return kv.status();
  Welcome w;
  w.max_frame = r.U32();
  w.max_inflight = r.U64();
  if (absl::Status st = CheckEnd(MsgType::kWelcome, r); !st.ok()) return st;
  absl::StatusOr<StoreInfo> info = StoreInfoFromKv(*kv, what);
  if (!info.ok()) return info.status();
  w.info = *std::move(info);
  for (const auto& [key, value] : *kv) {
    if (key == "manifest_delta" && value == "1") w.manifest_delta = true;
    if (key == "delete" && value == "1") w.takes_delete = true;
    if (key == "gc" && value == "1") w.takes_gc = true;
    if (key == "list_backups" && value == "1") w.takes_list_backups = true;
    if (key == "prefix_checksum" && value == "1") w.prefix_checksum = true;
  }
  if (w.max_frame < kMinMaxFrame) {
    return Malformed(MsgType::kWelcome, "frame limit ", w.max_frame, " is below the minimum ",
                     kMinMaxFrame);
  }
  if (w.max_inflight < w.max_frame) {
    return Malformed(MsgType::kWelcome, "in-flight limit ", w.max_inflight,
                     " is below the frame limit ", w.max_frame);
  }
  return w;
}

// ---- Errors. ----

std::string EncodeError(const absl::Status& status) {
  absl::StatusCode code = status.code();
  absl::string_view message = status.message();
  if (status.ok()) {
    code = absl::StatusCode::kInternal;
    message = "EncodeError was given an OK status";
  }
  message = CutUtf8(message, kMaxErrorMessage);
  std::string out;
  PutU16(&out, static_cast<uint16_t>(code));
  PutU32(&out, static_cast<uint32_t>(message.size()));
  out.append(message.data(), message.size());
  return out;
}

absl::StatusOr<ErrorMsg> DecodeErrorMsg(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint16_t code = r.U16();
  const uint32_t length = r.U32();
  if (!r.ok()) return Malformed(MsgType::kError, "payload is truncated");
  if (length > kMaxErrorMessage) {
    return Malformed(MsgType::kError, "message of ", length, " bytes exceeds the limit of ",
                     kMaxErrorMessage);
  }
  const absl::string_view text = r.Bytes(length);
  if (absl::Status st = CheckEnd(MsgType::kError, r); !st.ok()) return st;
  ErrorMsg e;
  // absl's codes are 1..16; 0 (OK) and anything else become kUnknown.
  e.code = code >= 1 && code <= static_cast<uint16_t>(absl::StatusCode::kUnauthenticated)
               ? static_cast<absl::StatusCode>(code)
               : absl::StatusCode::kUnknown;
  e.message = SanitizeUtf8(text);
  return e;
}

absl::Status DecodeError(absl::Span<const uint8_t> payload) {
  absl::StatusOr<ErrorMsg> e = DecodeErrorMsg(payload);
  if (!e.ok()) return e.status();
  return absl::Status(e->code, e->message);
}

// ---- Chunks. ----

std::string EncodeHave(absl::Span<const codec::ChunkId> ids) { return EncodeIds(ids); }
absl::StatusOr<std::vector<codec::ChunkId>> DecodeHave(absl::Span<const uint8_t> payload) {
  return DecodeIds(MsgType::kHave, payload);
}
std::string EncodeRead(absl::Span<const codec::ChunkId> ids) { return EncodeIds(ids); }
absl::StatusOr<std::vector<codec::ChunkId>> DecodeRead(absl::Span<const uint8_t> payload) {
  return DecodeIds(MsgType::kRead, payload);
}

std::string EncodeHaveReply(const std::vector<bool>& have) {
  std::string out;
  PutU32(&out, static_cast<uint32_t>(have.size()));
  const size_t base = out.size();
  out.resize(base + (have.size() + 7) / 8, '\0');
  for (size_t i = 0; i < have.size(); ++i) {
    if (have[i]) out[base + i / 8] = static_cast<char>(out[base + i / 8] | (1 << (i % 8)));
  }
  return out;
}

absl::StatusOr<std::vector<bool>> DecodeHaveReply(absl::Span<const uint8_t> payload,
                                                  size_t expected_count) {
  ByteReader r(payload);
  const uint32_t count = r.U32();
  if (!r.ok()) return Malformed(MsgType::kHaveReply, "payload is truncated");
  // (count + 7) / 8 in 64 bits: count is at most 2^32 - 1, so this cannot overflow.
  const uint64_t bitmap_bytes = (uint64_t{count} + 7) / 8;
  if (r.remaining() != bitmap_bytes) {
    return Malformed(MsgType::kHaveReply, "announces ", count, " answers but carries ",
                     r.remaining(), " bitmap bytes (", bitmap_bytes, " expected)");
  }
  if (count != expected_count) {
    return Malformed(MsgType::kHaveReply, "answers ", count, " chunk ids; HAVE asked about ",
                     expected_count);
  }
  const uint8_t* bits = r.Take(static_cast<size_t>(bitmap_bytes));
  if (count % 8 != 0 && (bits[bitmap_bytes - 1] >> (count % 8)) != 0) {
    return Malformed(MsgType::kHaveReply, "unused bits of the last bitmap byte are set");
  }
  std::vector<bool> have(count);
  for (size_t i = 0; i < count; ++i) have[i] = (bits[i / 8] >> (i % 8)) & 1;
  return have;
}

void EncodeAppendPrefix(VerifyMode mode, uint32_t record_count, uint8_t out[kAppendPrefixSize]) {
  out[0] = static_cast<uint8_t>(mode);
  out[1] = 0;
  StoreU32(out + 2, record_count);
}

std::string EncodeAppend(VerifyMode mode, absl::Span<const absl::Span<const uint8_t>> records) {
  std::string out(kAppendPrefixSize, '\0');
  out.reserve(kAppendPrefixSize + TotalSize(records));
  EncodeAppendPrefix(mode, static_cast<uint32_t>(records.size()),
                     reinterpret_cast<uint8_t*>(out.data()));
  return EncodeRecordsAfter(std::move(out), records);
}

absl::StatusOr<AppendView> DecodeAppend(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint8_t mode = r.U8();
  const uint8_t reserved = r.U8();
  const uint32_t count = r.U32();
  if (!r.ok()) return Malformed(MsgType::kAppend, "payload is truncated");
  if (mode > static_cast<uint8_t>(VerifyMode::kChecksum)) {
    return Malformed(MsgType::kAppend, "verify mode ", mode, " is unknown (0 full, 1 checksum)");
  }
  if (reserved != 0) {
    return Malformed(MsgType::kAppend, "reserved byte is ", reserved, ", not 0");
  }
  AppendView view;
  view.mode = static_cast<VerifyMode>(mode);
  absl::StatusOr<std::vector<absl::Span<const uint8_t>>> records =
      SplitRecords(MsgType::kAppend, count, payload.subspan(kAppendPrefixSize), kAppendPrefixSize);
  if (!records.ok()) return records.status();
  view.records = *std::move(records);
  return view;
}

std::string EncodeAppendAck(const AppendStats& stats) {
  std::string out;
  PutU64(&out, stats.records_received);
  PutU64(&out, stats.records_appended);
  PutU64(&out, stats.bytes_appended);
  PutU64(&out, stats.chunks_added);
  return out;
}

absl::StatusOr<AppendStats> DecodeAppendAck(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  AppendStats s;
  s.records_received = r.U64();
  s.records_appended = r.U64();
  s.bytes_appended = r.U64();
  s.chunks_added = r.U64();
  if (absl::Status st = CheckEnd(MsgType::kAppendAck, r); !st.ok()) return st;
  if (s.records_appended > s.records_received) {
    return Malformed(MsgType::kAppendAck, "appended ", s.records_appended, " of ",
                     s.records_received, " records received");
  }
  return s;
}

std::string EncodeRecords(absl::Span<const absl::Span<const uint8_t>> records) {
  std::string out;
  out.reserve(kRecordsPrefixSize + TotalSize(records));
  PutU32(&out, static_cast<uint32_t>(records.size()));
  return EncodeRecordsAfter(std::move(out), records);
}

absl::StatusOr<std::vector<absl::Span<const uint8_t>>> DecodeRecords(
    absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint32_t count = r.U32();
  if (!r.ok()) return Malformed(MsgType::kRecords, "payload is truncated");
  return SplitRecords(MsgType::kRecords, count, payload.subspan(kRecordsPrefixSize),
                      kRecordsPrefixSize);
}

// ---- Manifests and groups. ----

std::string EncodePutManifest(const PutManifest& put) {
  std::string out;
  PutUuid(&out, put.backup_uuid);
  PutU64(&out, put.file_length);
  return out;
}

absl::StatusOr<PutManifest> DecodePutManifest(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  PutManifest put;
  absl::StatusOr<std::string> uuid = TakeUuid(MsgType::kPutManifest, r, "backup uuid");
  if (!uuid.ok()) return uuid.status();
  put.backup_uuid = *std::move(uuid);
  put.file_length = r.U64();
  if (absl::Status st = CheckEnd(MsgType::kPutManifest, r); !st.ok()) return st;
  if (put.file_length == 0) return Malformed(MsgType::kPutManifest, "manifest length is 0");
  if (put.file_length > kMaxManifestLength) {
    return Malformed(MsgType::kPutManifest, "manifest length ", put.file_length,
                     " exceeds the limit of ", kMaxManifestLength);
  }
  return put;
}

std::string EncodePutManifestDelta(const PutManifestDelta& put) {
  std::string out;
  PutUuid(&out, put.backup_uuid);
  PutUuid(&out, put.base_uuid);
  PutU64(&out, put.delta_length);
  return out;
}

absl::StatusOr<PutManifestDelta> DecodePutManifestDelta(absl::Span<const uint8_t> payload) {
  constexpr MsgType kType = MsgType::kPutManifestDelta;
  ByteReader r(payload);
  PutManifestDelta put;
  absl::StatusOr<std::string> uuid = TakeUuid(kType, r, "backup uuid");
  if (!uuid.ok()) return uuid.status();
  put.backup_uuid = *std::move(uuid);
  absl::StatusOr<std::string> base = TakeUuid(kType, r, "base uuid");
  if (!base.ok()) return base.status();
  put.base_uuid = *std::move(base);
  put.delta_length = r.U64();
  if (absl::Status st = CheckEnd(kType, r); !st.ok()) return st;
  if (put.delta_length == 0) return Malformed(kType, "delta length is 0");
  if (put.delta_length > kMaxManifestLength) {
    return Malformed(kType, "delta length ", put.delta_length, " exceeds the limit of ",
                     kMaxManifestLength);
  }
  return put;
}

absl::StatusOr<absl::Span<const uint8_t>> DecodeManifestData(absl::Span<const uint8_t> payload) {
  if (payload.empty() || payload.size() > kMaxManifestData) {
    return Malformed(MsgType::kManifestData, "carries ", payload.size(),
                     " bytes; a frame carries 1 to ", kMaxManifestData);
  }
  return payload;
}

std::string EncodeOpenManifest(absl::string_view backup_uuid) {
  std::string out;
  PutUuid(&out, backup_uuid);
  return out;
}

absl::StatusOr<std::string> DecodeOpenManifest(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  absl::StatusOr<std::string> uuid = TakeUuid(MsgType::kOpenManifest, r, "backup uuid");
  if (!uuid.ok()) return uuid.status();
  if (absl::Status st = CheckEnd(MsgType::kOpenManifest, r); !st.ok()) return st;
  return uuid;
}

std::string EncodeGetGroup(absl::string_view group_uuid) { return EncodeOpenManifest(group_uuid); }

absl::StatusOr<std::string> DecodeGetGroup(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  absl::StatusOr<std::string> uuid = TakeUuid(MsgType::kGetGroup, r, "group uuid");
  if (!uuid.ok()) return uuid.status();
  if (absl::Status st = CheckEnd(MsgType::kGetGroup, r); !st.ok()) return st;
  return uuid;
}

std::string EncodePutGroup(const GroupRecord& group) { return EncodeGroup(group); }
absl::StatusOr<GroupRecord> DecodePutGroup(absl::Span<const uint8_t> payload) {
  return DecodeGroupPayload(MsgType::kPutGroup, payload);
}
std::string EncodeGroupReply(const GroupRecord& group) { return EncodeGroup(group); }
absl::StatusOr<GroupRecord> DecodeGroupReply(absl::Span<const uint8_t> payload) {
  return DecodeGroupPayload(MsgType::kGroup, payload);
}

namespace {

void PutUuidList(std::string* out, absl::Span<const std::string> uuids) {
  PutU32(out, static_cast<uint32_t>(uuids.size()));
  for (const std::string& uuid : uuids) PutUuid(out, uuid);
}

// Reads a u32 count and that many uuids; `field` names them in errors ("group uuid").
absl::StatusOr<std::vector<std::string>> TakeUuidList(MsgType type, ByteReader& r,
                                                      absl::string_view field) {
  const uint32_t count = r.U32();
  if (!r.ok()) return Malformed(type, "payload is truncated");
  // Every entry is a u16 length and a 32-character uuid.
  if (count > r.remaining() / 34) {
    return Malformed(type, "announces ", count, " ", field, "s but carries only ", r.remaining(),
                     " bytes");
  }
  std::vector<std::string> uuids;
  uuids.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    absl::StatusOr<std::string> uuid = TakeUuid(type, r, absl::StrCat(field, " ", i));
    if (!uuid.ok()) return uuid.status();
    uuids.push_back(*std::move(uuid));
  }
  return uuids;
}

}  // namespace

std::string EncodeGroupList(absl::Span<const std::string> group_uuids) {
  std::string out;
  PutUuidList(&out, group_uuids);
  return out;
}

namespace {

// A message that is one uuid list and nothing after it (GROUP_LIST, BACKUP_LIST).
absl::StatusOr<std::vector<std::string>> DecodeUuidListMessage(MsgType type,
                                                               absl::Span<const uint8_t> payload,
                                                               absl::string_view what) {
  ByteReader r(payload);
  absl::StatusOr<std::vector<std::string>> uuids = TakeUuidList(type, r, what);
  if (!uuids.ok()) return uuids.status();
  if (absl::Status st = CheckEnd(type, r); !st.ok()) return st;
  return uuids;
}

}  // namespace

std::string EncodeBackupList(absl::Span<const std::string> backup_uuids) {
  return EncodeGroupList(backup_uuids);
}

absl::StatusOr<std::vector<std::string>> DecodeBackupList(absl::Span<const uint8_t> payload) {
  return DecodeUuidListMessage(MsgType::kBackupList, payload, "volume backup uuid");
}

absl::StatusOr<std::vector<std::string>> DecodeGroupList(absl::Span<const uint8_t> payload) {
  return DecodeUuidListMessage(MsgType::kGroupList, payload, "group uuid");
}

std::string EncodeDelete(const DeleteRequest& request) {
  std::string out;
  out.push_back(static_cast<char>(request.kind));
  PutUuid(&out, request.uuid);
  return out;
}

absl::StatusOr<DeleteRequest> DecodeDelete(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint8_t kind = r.U8();
  if (!r.ok()) return Malformed(MsgType::kDelete, "payload is truncated");
  if (kind > static_cast<uint8_t>(DeleteKind::kBackup)) {
    return Malformed(MsgType::kDelete, "unknown kind ", kind);
  }
  DeleteRequest request;
  request.kind = static_cast<DeleteKind>(kind);
  absl::StatusOr<std::string> uuid = TakeUuid(MsgType::kDelete, r, "uuid");
  if (!uuid.ok()) return uuid.status();
  request.uuid = *std::move(uuid);
  if (absl::Status st = CheckEnd(MsgType::kDelete, r); !st.ok()) return st;
  return request;
}

std::string EncodeDeleted(const DeleteResult& result) {
  std::string out;
  PutUuidList(&out, result.groups_removed);
  PutUuidList(&out, result.backups_removed);
  PutUuidList(&out, result.backups_kept);
  return out;
}

absl::StatusOr<DeleteResult> DecodeDeleted(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  DeleteResult result;
  for (auto [list, field] : {std::pair{&result.groups_removed, "removed group uuid"},
                             {&result.backups_removed, "removed backup uuid"},
                             {&result.backups_kept, "kept backup uuid"}}) {
    absl::StatusOr<std::vector<std::string>> uuids = TakeUuidList(MsgType::kDeleted, r, field);
    if (!uuids.ok()) return uuids.status();
    *list = *std::move(uuids);
  }
  if (absl::Status st = CheckEnd(MsgType::kDeleted, r); !st.ok()) return st;
  return result;
}

absl::Status CheckEmptyPayload(MsgType type, absl::Span<const uint8_t> payload) {
  if (!payload.empty()) {
    return Malformed(type, "carries ", payload.size(), " bytes; it has no payload");
  }
  return absl::OkStatus();
}

std::string EncodeGc(const GcRequest& request) {
  std::string out;
  out.push_back(request.dry_run ? 1 : 0);
  PutU32(&out, request.repack_below_ppm);
  return out;
}

absl::StatusOr<GcRequest> DecodeGc(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint8_t flags = r.U8();
  GcRequest request;
  request.repack_below_ppm = r.U32();
  if (!r.ok()) return Malformed(MsgType::kGc, "payload is truncated");
  if (absl::Status st = CheckEnd(MsgType::kGc, r); !st.ok()) return st;
  if ((flags & ~1u) != 0) return Malformed(MsgType::kGc, "unknown flags ", flags);
  if (request.repack_below_ppm > 1'000'000) {
    return Malformed(MsgType::kGc, "repack threshold ", request.repack_below_ppm,
                     " millionths is above 1000000");
  }
  request.dry_run = (flags & 1) != 0;
  return request;
}

namespace {

// GC_DONE's fields, in their wire order.
template <typename Stats, typename Fn>
void ForEachGcTotal(Stats& s, Fn fn) {
  for (auto* field :
       {&s.manifests, &s.chunks_referenced, &s.records_total, &s.records_live, &s.packs_before,
        &s.bytes_before, &s.packs_removed, &s.packs_rewritten, &s.packs_kept_late_pin,
        &s.records_copied, &s.bytes_copied, &s.bytes_reclaimed, &s.milliseconds}) {
    fn(*field);
  }
}

}  // namespace

std::string EncodeGcDone(const GcStats& stats) {
  std::string out;
  ForEachGcTotal(stats, [&](uint64_t v) { PutU64(&out, v); });
  return out;
}

absl::StatusOr<GcStats> DecodeGcDone(absl::Span<const uint8_t> payload) {
  ByteReader r(payload);
  GcStats stats;
  ForEachGcTotal(stats, [&](uint64_t& v) { v = r.U64(); });
  if (!r.ok()) return Malformed(MsgType::kGcDone, "payload is truncated");
  if (absl::Status st = CheckEnd(MsgType::kGcDone, r); !st.ok()) return st;
  return stats;
}

}  // namespace chunkferry::engine
