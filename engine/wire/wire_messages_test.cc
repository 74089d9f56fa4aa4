#include "engine/wire/wire_messages.h"

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

using Spans = std::vector<absl::Span<const uint8_t>>;

constexpr char kUuidA[] = "0123456789abcdef0123456789abcdef";
constexpr char kUuidB[] = "11111111111111111111111111111111";
constexpr char kUuidC[] = "22222222222222222222222222222222";

absl::Span<const uint8_t> Sp(const std::string& s) { return AsBytes(s); }

std::string Str(absl::Span<const uint8_t> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

bool Has(const absl::Status& st, absl::string_view fragment) {
  return absl::StrContains(st.message(), fragment);
}

// Expects `st` to be `code` with a message containing `fragment`.
#define EXPECT_REFUSED(st_expr, code_, fragment)                           \
  do {                                                                     \
    const absl::Status st_ = (st_expr);                                    \
    EXPECT_EQ(st_.code(), absl::StatusCode::code_) << st_;                 \
    EXPECT_TRUE(Has(st_, fragment)) << st_ << "\n  lacks: " << (fragment); \
  } while (0)

codec::ChunkId Id(uint64_t n) { return codec::ChunkId{n * 0x9e3779b97f4a7c15ull, ~n + 7}; }

std::vector<codec::ChunkId> Ids(size_t n) {
  std::vector<codec::ChunkId> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back(Id(i + 1));
  return ids;
}

// A valid record of `chunks` chunks of `length` bytes each, compressed when `compressor` is set.
std::string MakeRecord(uint64_t seed, size_t chunks, size_t length,
                       codec::Compressor* compressor = nullptr) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> data(chunks * length);
  // Compressible when asked: a small alphabet.
  for (uint8_t& b : data) b = static_cast<uint8_t>(compressor ? 'a' + rng() % 4 : rng());
  std::vector<codec::ChunkRef> refs;
  Spans spans;
  codec::ChunkHasher hasher;
  for (size_t i = 0; i < chunks; ++i) {
    const absl::Span<const uint8_t> chunk = absl::MakeConstSpan(data).subspan(i * length, length);
    spans.push_back(chunk);
    refs.push_back({hasher.Hash(chunk), static_cast<uint32_t>(length)});
  }
  std::string out(codec::MaxRecordSize(chunks, data.size()), '\0');
  absl::StatusOr<size_t> size =
      codec::EncodeRecord(refs, spans, compressor,
                          absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size()));
  EXPECT_TRUE(size.ok()) << size.status();
  out.resize(size.ok() ? *size : 0);
  return out;
}

// Three records, one compressed.
std::vector<std::string> SomeRecords() {
  codec::Compressor compressor(1);
  return {MakeRecord(1, 3, 100), MakeRecord(2, 1, 1), MakeRecord(3, 4, 300, &compressor)};
}

Spans SpansOf(const std::vector<std::string>& records) {
  Spans spans;
  for (const std::string& r : records) spans.push_back(Sp(r));
  return spans;
}

StoreInfo SomeInfo() {
  StoreInfo info;
  info.uuid = kUuidA;
  info.chunker = *codec::ChunkerSpec::Parse("cdc:2k:8k:64k");
  info.zstd_level = -3;
  info.record_target = 256 << 10;
  info.key_fingerprint = 0x00ab00cd12345678ull;
  return info;
}

Welcome SomeWelcome() {
  Welcome w;
  w.info = SomeInfo();
  w.max_frame = kMinMaxFrame + 5;
  w.max_inflight = uint64_t{1} << 33;
  return w;
}

GroupRecord SomeGroup() {
  GroupRecord g;
  g.group_uuid = kUuidA;
  g.vm_instance_uuid = kUuidB;
  g.volume_uuids = {kUuidC, kUuidB};
  g.create_date = 1700000000;
  return g;
}

Nonce Fill(uint8_t seed) {
  Nonce n;
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(seed * 7 + i);
  return n;
}

// ---- Round trips. ----

TEST(WireMessagesTest, HelloRoundTrips) {
  Hello h{1, 3, Fill(1), ""};
  const std::string p = EncodeHello(h);
  EXPECT_EQ(p.size(), 36u);
  absl::StatusOr<Hello> d = DecodeHello(Sp(p));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->min_version, 1);
  EXPECT_EQ(d->max_version, 3);
  EXPECT_EQ(d->client_nonce, h.client_nonce);
  EXPECT_EQ(d->key_name, "");

  // With a key name: two more bytes of length and the name.
  h.key_name = "replica-b";
  const std::string named = EncodeHello(h);
  EXPECT_EQ(named.size(), 36u + 2 + 9);
  absl::StatusOr<Hello> dn = DecodeHello(Sp(named));
  ASSERT_TRUE(dn.ok()) << dn.status();
  EXPECT_EQ(dn->key_name, "replica-b");
}

TEST(WireMessagesHostileTest, HelloRefusesEmptyOrOverlongKeyNames) {
  std::string p = EncodeHello({1, 1, Fill(1), ""});
  PutU16(&p, 0);
  EXPECT_REFUSED(DecodeHello(Sp(p)).status(), kInvalidArgument, "key name of 0 bytes");
  p = EncodeHello({1, 1, Fill(1), ""});
  PutU16(&p, 65);
  p.append(65, 'a');
  EXPECT_REFUSED(DecodeHello(Sp(p)).status(), kInvalidArgument, "key name of 65 bytes");
  p = EncodeHello({1, 1, Fill(1), ""});
  PutU16(&p, 10);
  p.append(3, 'a');
  EXPECT_FALSE(DecodeHello(Sp(p)).ok());
}

TEST(WireMessagesTest, ChallengeRoundTrips) {
  Challenge c{1, Fill(2), kUuidA, Fill(3)};
  const std::string p = EncodeChallenge(c);
  EXPECT_EQ(p.size(), 2u + 32 + 2 + 32 + 32);
  absl::StatusOr<Challenge> d = DecodeChallenge(Sp(p));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->version, 1);
  EXPECT_EQ(d->server_nonce, c.server_nonce);
  EXPECT_EQ(d->store_uuid, kUuidA);
  EXPECT_EQ(d->server_proof, c.server_proof);
}

TEST(WireMessagesTest, AuthRoundTrips) {
  Auth a{Fill(4)};
  absl::StatusOr<Auth> d = DecodeAuth(Sp(EncodeAuth(a)));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->client_proof, a.client_proof);
}

TEST(WireMessagesTest, WelcomeRoundTrips) {
  const Welcome w = SomeWelcome();
  absl::StatusOr<Welcome> d = DecodeWelcome(Sp(EncodeWelcome(w)));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->info.uuid, w.info.uuid);
  EXPECT_EQ(d->info.chunker.ToString(), w.info.chunker.ToString());
  EXPECT_EQ(d->info.zstd_level, -3);
  EXPECT_EQ(d->info.record_target, 256u << 10);
  EXPECT_EQ(d->info.key_fingerprint, w.info.key_fingerprint);
  EXPECT_EQ(d->max_frame, w.max_frame);
  EXPECT_EQ(d->max_inflight, w.max_inflight);
  EXPECT_FALSE(d->manifest_delta);
  Welcome with = w;
  with.manifest_delta = true;
  d = DecodeWelcome(Sp(EncodeWelcome(with)));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->manifest_delta);
}

TEST(WireMessagesTest, DefaultLimitsMakeAValidWelcome) {
  Welcome w;
  w.info = SomeInfo();
  absl::StatusOr<Welcome> d = DecodeWelcome(Sp(EncodeWelcome(w)));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->max_frame, kDefaultMaxFrame);
  EXPECT_EQ(d->max_inflight, kDefaultMaxInflight);
  // WELCOME fits a handshake frame.
  EXPECT_LE(EncodeWelcome(w).size(), kHandshakeMaxFrame);
}

TEST(WireMessagesTest, StoreInfoKvUsesDocumentedKeys) {
  const KvPairs kv = StoreInfoToKv(SomeInfo());
  const KvPairs expected = {{"uuid", kUuidA},
                            {"chunker", "cdc:2048:8192:65536"},
                            {"zstd_level", "-3"},
                            {"record_target", "262144"},
                            {"key_fingerprint", "00ab00cd12345678"}};
  EXPECT_EQ(kv, expected);
  StoreInfo unkeyed = SomeInfo();
  unkeyed.key_fingerprint = 0;
  EXPECT_EQ(StoreInfoToKv(unkeyed)[4].second, "0000000000000000");
}

TEST(WireMessagesTest, ErrorRoundTripsCodeAndMessage) {
  const absl::Status st = absl::NotFoundError("no volume backup 1234 here — sorry");
  const absl::Status back = DecodeError(Sp(EncodeError(st)));
  EXPECT_EQ(back, st);
  absl::StatusOr<ErrorMsg> e = DecodeErrorMsg(Sp(EncodeError(st)));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->code, absl::StatusCode::kNotFound);
  for (int code = 1; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code), "x");
    EXPECT_EQ(DecodeError(Sp(EncodeError(s))), s);
  }
  // An OK status never travels as OK.
  EXPECT_EQ(DecodeError(Sp(EncodeError(absl::OkStatus()))).code(), absl::StatusCode::kInternal);
}

TEST(WireMessagesTest, HaveAndReadRoundTrip) {
  for (size_t n : {0, 1, 2, 1000}) {
    const std::vector<codec::ChunkId> ids = Ids(n);
    const std::string have = EncodeHave(ids);
    EXPECT_EQ(have.size(), 4 + 16 * n);
    absl::StatusOr<std::vector<codec::ChunkId>> d = DecodeHave(Sp(have));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, ids);
    d = DecodeRead(Sp(EncodeRead(ids)));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, ids);
  }
  EXPECT_EQ(MaxIdsPerFrame(kDefaultMaxFrame), (kDefaultMaxFrame - 4) / 16);
  EXPECT_EQ(MaxIdsPerFrame(3), 0u);
}

TEST(WireMessagesTest, HaveReplyRoundTripsEveryLength) {
  std::mt19937_64 rng(5);
  for (size_t n = 0; n <= 70; ++n) {
    std::vector<bool> have(n);
    for (size_t i = 0; i < n; ++i) have[i] = rng() & 1;
    const std::string p = EncodeHaveReply(have);
    EXPECT_EQ(p.size(), 4 + (n + 7) / 8);
    absl::StatusOr<std::vector<bool>> d = DecodeHaveReply(Sp(p), n);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, have);
  }
  // Bit i of byte i / 8.
  const std::string p =
      EncodeHaveReply({true, false, false, true, false, false, false, false, false, true});
  EXPECT_EQ(static_cast<uint8_t>(p[4]), 0x09);
  EXPECT_EQ(static_cast<uint8_t>(p[5]), 0x02);
}

TEST(WireMessagesTest, AppendRoundTripsRecordsAsViewsIntoThePayload) {
  const std::vector<std::string> records = SomeRecords();
  for (VerifyMode mode : {VerifyMode::kFull, VerifyMode::kChecksum}) {
    const std::string p = EncodeAppend(mode, SpansOf(records));
    EXPECT_EQ(static_cast<uint8_t>(p[0]), static_cast<uint8_t>(mode));
    absl::StatusOr<AppendView> d = DecodeAppend(Sp(p));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->mode, mode);
    ASSERT_EQ(d->records.size(), records.size());
    size_t offset = kAppendPrefixSize;
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(d->records[i].data(), Sp(p).data() + offset);
      EXPECT_EQ(Str(d->records[i]), records[i]);
      offset += records[i].size();
    }
  }
  absl::StatusOr<AppendView> empty = DecodeAppend(Sp(EncodeAppend(VerifyMode::kFull, {})));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->records.empty());
}

TEST(WireMessagesTest, AppendAckRoundTrips) {
  const AppendStats s{10, 7, 1u << 30, 99};
  absl::StatusOr<AppendStats> d = DecodeAppendAck(Sp(EncodeAppendAck(s)));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->records_received, 10u);
  EXPECT_EQ(d->records_appended, 7u);
  EXPECT_EQ(d->bytes_appended, 1u << 30);
  EXPECT_EQ(d->chunks_added, 99u);
}

TEST(WireMessagesTest, RecordsRoundTrip) {
  const std::vector<std::string> records = SomeRecords();
  const std::string p = EncodeRecords(SpansOf(records));
  absl::StatusOr<Spans> d = DecodeRecords(Sp(p));
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(Str((*d)[i]), records[i]);
}

TEST(WireMessagesTest, ManifestMessagesRoundTrip) {
  absl::StatusOr<PutManifest> put =
      DecodePutManifest(Sp(EncodePutManifest({kUuidB, kMaxManifestLength})));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->backup_uuid, kUuidB);
  EXPECT_EQ(put->file_length, kMaxManifestLength);

  absl::StatusOr<PutManifestDelta> delta =
      DecodePutManifestDelta(Sp(EncodePutManifestDelta({kUuidA, kUuidB, kMaxManifestLength})));
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_EQ(delta->backup_uuid, kUuidA);
  EXPECT_EQ(delta->base_uuid, kUuidB);
  EXPECT_EQ(delta->delta_length, kMaxManifestLength);

  absl::StatusOr<std::string> open = DecodeOpenManifest(Sp(EncodeOpenManifest(kUuidC)));
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(*open, kUuidC);

  const std::string data(kMaxManifestData, 'm');
  absl::StatusOr<absl::Span<const uint8_t>> d = DecodeManifestData(Sp(data));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->data(), Sp(data).data());
  EXPECT_EQ(d->size(), data.size());
}

TEST(WireMessagesTest, GroupMessagesRoundTrip) {
  const GroupRecord g = SomeGroup();
  EXPECT_EQ(EncodePutGroup(g), EncodeGroup(g));
  for (auto decode : {&DecodePutGroup, &DecodeGroupReply}) {
    absl::StatusOr<GroupRecord> d = decode(Sp(EncodeGroup(g)));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->group_uuid, g.group_uuid);
    EXPECT_EQ(d->vm_instance_uuid, g.vm_instance_uuid);
    EXPECT_EQ(d->volume_uuids, g.volume_uuids);
    EXPECT_EQ(d->create_date, g.create_date);
  }
  absl::StatusOr<std::string> get = DecodeGetGroup(Sp(EncodeGetGroup(kUuidA)));
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(*get, kUuidA);

  for (size_t n : {0, 1, 3}) {
    std::vector<std::string> uuids(n, kUuidB);
    if (n > 0) uuids[0] = kUuidC;
    absl::StatusOr<std::vector<std::string>> list = DecodeGroupList(Sp(EncodeGroupList(uuids)));
    ASSERT_TRUE(list.ok()) << list.status();
    EXPECT_EQ(*list, uuids);
    list = DecodeBackupList(Sp(EncodeBackupList(uuids)));
    ASSERT_TRUE(list.ok()) << list.status();
    EXPECT_EQ(*list, uuids);
  }
}

TEST(WireMessagesTest, DeleteAndDeletedRoundTrip) {
  for (DeleteKind kind : {DeleteKind::kGroup, DeleteKind::kBackup}) {
    absl::StatusOr<DeleteRequest> d = DecodeDelete(Sp(EncodeDelete({kind, kUuidB})));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->kind, kind);
    EXPECT_EQ(d->uuid, kUuidB);
  }
  const DeleteResult result{{kUuidA}, {kUuidB, kUuidC}, {}};
  absl::StatusOr<DeleteResult> r = DecodeDeleted(Sp(EncodeDeleted(result)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->groups_removed, result.groups_removed);
  EXPECT_EQ(r->backups_removed, result.backups_removed);
  EXPECT_TRUE(r->backups_kept.empty());
}

TEST(WireMessagesTest, EmptyMessagesCarryNothing) {
  for (MsgType t : {MsgType::kFlush, MsgType::kFlushAck, MsgType::kReadEnd, MsgType::kManifestEnd,
                    MsgType::kListGroups, MsgType::kOk, MsgType::kBye}) {
    EXPECT_TRUE(CheckEmptyPayload(t, {}).ok());
    const std::string one = "x";
    EXPECT_REFUSED(CheckEmptyPayload(t, Sp(one)), kInvalidArgument,
                   absl::StrCat("malformed ", std::string(MsgTypeName(t))));
  }
}

TEST(WireMessagesTest, AppendMessageFramesThePayload) {
  std::string out;
  const std::string payload = EncodeHave(Ids(3));
  AppendMessage(MsgType::kHave, payload, &out);
  ASSERT_EQ(out.size(), kFrameHeaderSize + payload.size());
  std::array<uint8_t, kFrameHeaderSize> header;
  std::memcpy(header.data(), out.data(), header.size());
  absl::StatusOr<FrameHeader> h = ParseFrameHeader(header, kDefaultMaxFrame);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, static_cast<uint16_t>(MsgType::kHave));
  EXPECT_TRUE(CheckFramePayload(*h, Sp(out).subspan(kFrameHeaderSize)).ok());
}

// ---- Names, versions. ----

TEST(WireMessagesTest, NamesEveryTypeAndNothingElse) {
  const std::vector<std::pair<uint16_t, std::string>> names = {
      {1, "HELLO"},         {2, "CHALLENGE"},
      {3, "AUTH"},          {4, "WELCOME"},
      {5, "ERROR"},         {10, "HAVE"},
      {11, "HAVE_REPLY"},   {12, "APPEND"},
      {13, "APPEND_ACK"},   {14, "FLUSH"},
      {15, "FLUSH_ACK"},    {16, "READ"},
      {17, "RECORDS"},      {18, "READ_END"},
      {20, "PUT_MANIFEST"}, {21, "MANIFEST_DATA"},
      {22, "MANIFEST_END"}, {23, "OPEN_MANIFEST"},
      {24, "PUT_GROUP"},    {25, "GET_GROUP"},
      {26, "GROUP"},        {27, "LIST_GROUPS"},
      {28, "GROUP_LIST"},   {29, "OK"},
      {30, "BYE"},          {31, "PUT_MANIFEST_DELTA"},
      {32, "DELETE"},       {33, "DELETED"},
      {34, "GC"},           {35, "GC_DONE"},
      {36, "LIST_BACKUPS"}, {37, "BACKUP_LIST"}};
  size_t known = 0;
  for (uint32_t t = 0; t <= 0xffff; ++t) known += IsKnownMsgType(static_cast<uint16_t>(t));
  EXPECT_EQ(known, names.size());
  for (const auto& [type, name] : names) {
    EXPECT_TRUE(IsKnownMsgType(type)) << type;
    EXPECT_EQ(MsgTypeName(type), name);
  }
  EXPECT_EQ(MsgTypeName(0), "UNKNOWN");
  EXPECT_EQ(MsgTypeName(19), "UNKNOWN");
  EXPECT_EQ(MsgTypeName(0xffff), "UNKNOWN");
  EXPECT_EQ(MsgTypeName(MsgType::kAppendAck), "APPEND_ACK");
}

TEST(WireMessagesTest, UnexpectedFrameErrorNamesBothTypes) {
  EXPECT_REFUSED(UnexpectedFrameError(13, MsgType::kHaveReply), kInvalidArgument,
                 "unexpected frame APPEND_ACK while waiting for HAVE_REPLY");
  EXPECT_REFUSED(UnexpectedFrameError(999, MsgType::kWelcome), kInvalidArgument,
                 "unexpected frame of unknown type 999 while waiting for WELCOME");
}

TEST(WireMessagesTest, ChooseVersionPicksHighestCommonOrRefuses) {
  EXPECT_EQ(*ChooseVersion(1, 1), 1);
  EXPECT_EQ(*ChooseVersion(1, 9), 1);
  EXPECT_EQ(*ChooseVersion(1, 5, 2, 4), 4);
  EXPECT_EQ(*ChooseVersion(3, 5, 2, 4), 4);
  EXPECT_EQ(*ChooseVersion(1, 2, 2, 4), 2);
  EXPECT_REFUSED(ChooseVersion(2, 3).status(), kFailedPrecondition,
                 "protocol version mismatch: server speaks 1..1, client 2..3");
  EXPECT_REFUSED(ChooseVersion(5, 6, 2, 4).status(), kFailedPrecondition,
                 "server speaks 2..4, client 5..6");
  EXPECT_FALSE(ChooseVersion(1, 1, 2, 4).ok());
  EXPECT_FALSE(ChooseVersion(3, 2, 1, 4).ok());  // empty client range
}

// ---- Hostile input: every message. ----

// One valid payload of each message and a decoder that returns the re-encoding on success.
struct Case {
  std::string name;
  std::string payload;
  std::function<absl::StatusOr<std::string>(absl::Span<const uint8_t>)> decode;
  bool canonical = true;    // decode then encode gives back the payload
  bool any_prefix = false;  // every shorter non-empty payload is valid too (MANIFEST_DATA)
  bool any_suffix = false;  // a longer payload may be valid too
};

template <typename T, typename Enc>
absl::StatusOr<std::string> Reencode(absl::StatusOr<T> decoded, Enc encode) {
  if (!decoded.ok()) return decoded.status();
  return encode(*decoded);
}

std::vector<Case> AllCases() {
  const std::vector<std::string> records = SomeRecords();
  std::vector<Case> cases;
  cases.push_back({"HELLO", EncodeHello({1, 2, Fill(9), ""}),
                   [](auto p) { return Reencode(DecodeHello(p), EncodeHello); }});
  cases.push_back({"CHALLENGE", EncodeChallenge({1, Fill(1), kUuidA, Fill(2)}),
                   [](auto p) { return Reencode(DecodeChallenge(p), EncodeChallenge); }});
  cases.push_back(
      {"AUTH", EncodeAuth({Fill(3)}), [](auto p) { return Reencode(DecodeAuth(p), EncodeAuth); }});
  cases.push_back({"WELCOME", EncodeWelcome(SomeWelcome()),
                   [](auto p) { return Reencode(DecodeWelcome(p), EncodeWelcome); },
                   /*canonical=*/false});
  cases.push_back({"ERROR", EncodeError(absl::DataLossError("record 3 is damaged")),
                   [](auto p) -> absl::StatusOr<std::string> {
                     absl::StatusOr<ErrorMsg> e = DecodeErrorMsg(p);
                     if (!e.ok()) return e.status();
                     EXPECT_NE(e->code, absl::StatusCode::kOk);
                     return EncodeError(absl::Status(e->code, e->message));
                   },
                   /*canonical=*/false});
  cases.push_back(
      {"HAVE", EncodeHave(Ids(5)), [](auto p) { return Reencode(DecodeHave(p), EncodeHave); }});
  cases.push_back(
      {"HAVE_REPLY",
       EncodeHaveReply({true, false, true, true, false, true, true, true, false, true, true}),
       [](auto p) { return Reencode(DecodeHaveReply(p, 11), EncodeHaveReply); }});
  cases.push_back({"APPEND", EncodeAppend(VerifyMode::kChecksum, SpansOf(records)),
                   [](auto p) -> absl::StatusOr<std::string> {
                     absl::StatusOr<AppendView> v = DecodeAppend(p);
                     if (!v.ok()) return v.status();
                     return EncodeAppend(v->mode, v->records);
                   }});
  cases.push_back({"APPEND_ACK", EncodeAppendAck({4, 3, 1000, 12}),
                   [](auto p) { return Reencode(DecodeAppendAck(p), EncodeAppendAck); }});
  cases.push_back(
      {"READ", EncodeRead(Ids(2)), [](auto p) { return Reencode(DecodeRead(p), EncodeRead); }});
  cases.push_back({"RECORDS", EncodeRecords(SpansOf(records)), [](auto p) {
                     return Reencode(DecodeRecords(p),
                                     [](const Spans& s) { return EncodeRecords(s); });
                   }});
  cases.push_back({"PUT_MANIFEST", EncodePutManifest({kUuidA, 123456}),
                   [](auto p) { return Reencode(DecodePutManifest(p), EncodePutManifest); }});
  cases.push_back(
      {"PUT_MANIFEST_DELTA", EncodePutManifestDelta({kUuidA, kUuidB, 4321}),
       [](auto p) { return Reencode(DecodePutManifestDelta(p), EncodePutManifestDelta); }});
  cases.push_back({"MANIFEST_DATA", std::string(100, 'q'),
                   [](auto p) { return Reencode(DecodeManifestData(p), Str); }, true,
                   /*any_prefix=*/true, /*any_suffix=*/true});
  cases.push_back({"OPEN_MANIFEST", EncodeOpenManifest(kUuidB), [](auto p) {
                     return Reencode(DecodeOpenManifest(p),
                                     [](const std::string& u) { return EncodeOpenManifest(u); });
                   }});
  cases.push_back({"GET_GROUP", EncodeGetGroup(kUuidC), [](auto p) {
                     return Reencode(DecodeGetGroup(p),
                                     [](const std::string& u) { return EncodeGetGroup(u); });
                   }});
  cases.push_back({"PUT_GROUP", EncodePutGroup(SomeGroup()),
                   [](auto p) { return Reencode(DecodePutGroup(p), EncodePutGroup); },
                   /*canonical=*/false});
  cases.push_back({"GROUP", EncodeGroupReply(SomeGroup()),
                   [](auto p) { return Reencode(DecodeGroupReply(p), EncodeGroupReply); },
                   /*canonical=*/false});
  cases.push_back(
      {"GROUP_LIST", EncodeGroupList(std::vector<std::string>{kUuidA, kUuidB}), [](auto p) {
         return Reencode(DecodeGroupList(p),
                         [](const std::vector<std::string>& u) { return EncodeGroupList(u); });
       }});
  cases.push_back(
      {"BACKUP_LIST", EncodeBackupList(std::vector<std::string>{kUuidA, kUuidB}), [](auto p) {
         return Reencode(DecodeBackupList(p),
                         [](const std::vector<std::string>& u) { return EncodeBackupList(u); });
       }});
  for (DeleteKind kind : {DeleteKind::kGroup, DeleteKind::kBackup}) {
    cases.push_back({"DELETE", EncodeDelete({kind, kUuidA}),
                     [](auto p) { return Reencode(DecodeDelete(p), EncodeDelete); }});
  }
  cases.push_back({"DELETED", EncodeDeleted({{kUuidA}, {kUuidB, kUuidC}, {kUuidA}}),
                   [](auto p) { return Reencode(DecodeDeleted(p), EncodeDeleted); }});
  cases.push_back(
      {"GC", EncodeGc({true, 250'000}), [](auto p) { return Reencode(DecodeGc(p), EncodeGc); }});
  GcStats totals;
  totals.manifests = 3;
  totals.bytes_reclaimed = 1ull << 40;
  totals.milliseconds = 1234;
  cases.push_back({"GC_DONE", EncodeGcDone(totals),
                   [](auto p) { return Reencode(DecodeGcDone(p), EncodeGcDone); }});
  for (MsgType t : {MsgType::kFlush, MsgType::kFlushAck, MsgType::kReadEnd, MsgType::kManifestEnd,
                    MsgType::kListGroups, MsgType::kOk, MsgType::kBye}) {
    cases.push_back({std::string(MsgTypeName(t)), "", [t](auto p) -> absl::StatusOr<std::string> {
                       absl::Status st = CheckEmptyPayload(t, p);
                       if (!st.ok()) return st;
                       return std::string();
                     }});
  }
  return cases;
}

// Refusals from hostile bytes are InvalidArgument, DataLoss (a damaged record or group) or
// FailedPrecondition (a record or group from a newer version); never anything else.
::testing::AssertionResult IsCleanRefusal(const absl::Status& st) {
  if (st.ok()) return ::testing::AssertionFailure() << "accepted";
  if (st.message().empty()) return ::testing::AssertionFailure() << "no message";
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kFailedPrecondition:
      return ::testing::AssertionSuccess();
    default:
      return ::testing::AssertionFailure() << "unexpected code: " << st;
  }
}

TEST(WireMessagesHostileTest, ValidPayloadsDecodeAndReencode) {
  for (const Case& c : AllCases()) {
    absl::StatusOr<std::string> again = c.decode(Sp(c.payload));
    ASSERT_TRUE(again.ok()) << c.name << ": " << again.status();
    if (c.canonical) {
      EXPECT_EQ(*again, c.payload) << c.name;
    }
  }
}

TEST(WireMessagesHostileTest, EveryTruncationIsRefused) {
  for (const Case& c : AllCases()) {
    if (c.any_prefix) continue;
    for (size_t n = 0; n < c.payload.size(); ++n) {
      const absl::Span<const uint8_t> prefix = Sp(c.payload).first(n);
      // A copy, so that ASan sees any read past the prefix.
      const std::vector<uint8_t> copy(prefix.begin(), prefix.end());
      absl::StatusOr<std::string> d = c.decode(copy);
      EXPECT_TRUE(IsCleanRefusal(d.status())) << c.name << " cut to " << n << " bytes";
    }
  }
}

TEST(WireMessagesHostileTest, TrailingBytesAreRefused) {
  for (const Case& c : AllCases()) {
    if (c.any_suffix) continue;
    for (const std::string& extra : {std::string(1, '\0'), std::string("xyz"),
                                     std::string(16, '\x01'), std::string(100, '\xff')}) {
      const std::string longer = c.payload + extra;
      absl::StatusOr<std::string> d = c.decode(Sp(longer));
      EXPECT_TRUE(IsCleanRefusal(d.status())) << c.name << " + " << extra.size();
    }
  }
}

TEST(WireMessagesHostileTest, FlippedStructuralBytesAreRefusedOrDecodeConsistently) {
  // A flip either gives a clean refusal or a message that re-encodes to the flipped bytes: no
  // flip may be silently reinterpreted.
  for (const Case& c : AllCases()) {
    for (size_t i = 0; i < c.payload.size(); ++i) {
      for (uint8_t mask : {0x01, 0x40, 0xff}) {
        std::string bad = c.payload;
        bad[i] = static_cast<char>(bad[i] ^ mask);
        absl::StatusOr<std::string> d = c.decode(Sp(bad));
        if (d.ok()) {
          if (c.canonical) {
            EXPECT_EQ(*d, bad) << c.name << " byte " << i;
          }
        } else {
          EXPECT_TRUE(IsCleanRefusal(d.status())) << c.name << " byte " << i;
        }
      }
    }
  }
}

// ---- Hostile input: targeted. ----

std::string U32(uint32_t v) {
  std::string s;
  PutU32(&s, v);
  return s;
}
std::string U16(uint16_t v) {
  std::string s;
  PutU16(&s, v);
  return s;
}

TEST(WireMessagesHostileTest, HelloRefusesEmptyOrZeroVersionRanges) {
  EXPECT_REFUSED(DecodeHello(Sp(EncodeHello({0, 1, Fill(1), ""}))).status(), kInvalidArgument,
                 "version range 0..1");
  EXPECT_REFUSED(DecodeHello(Sp(EncodeHello({3, 2, Fill(1), ""}))).status(), kInvalidArgument,
                 "version range 3..2");
}

TEST(WireMessagesHostileTest, ChallengeRefusesBadUuidsAndVersionZero) {
  for (const std::string& uuid :
       {std::string("0123456789ABCDEF0123456789ABCDEF"), std::string("../../../../etc/passwd"),
        std::string(kUuidA) + "0", std::string(kUuidA).substr(1), std::string(),
        std::string("0123456789abcdef\0"
                    "123456789abcdef",
                    32)}) {
    absl::StatusOr<Challenge> c = DecodeChallenge(Sp(EncodeChallenge({1, Fill(1), uuid, Fill(2)})));
    EXPECT_REFUSED(c.status(), kInvalidArgument, "is not a uuid");
  }
  EXPECT_REFUSED(DecodeChallenge(Sp(EncodeChallenge({0, Fill(1), kUuidA, Fill(2)}))).status(),
                 kInvalidArgument, "version 0");
  // A uuid length larger than the payload.
  std::string p = EncodeChallenge({1, Fill(1), kUuidA, Fill(2)});
  p[34] = '\xff';
  p[35] = '\xff';
  EXPECT_REFUSED(DecodeChallenge(Sp(p)).status(), kInvalidArgument, "truncated");
}

TEST(WireMessagesHostileTest, WelcomeRefusesBadStoreInfoAndLimits) {
  auto with = [](const std::string& key, const std::string& value) {
    KvPairs kv = StoreInfoToKv(SomeInfo());
    for (auto& [k, v] : kv) {
      if (k == key) v = value;
    }
    std::string p;
    EncodeKv(kv, &p);
    PutU32(&p, kMinMaxFrame);
    PutU64(&p, kMinMaxFrame);
    return p;
  };
  EXPECT_TRUE(DecodeWelcome(Sp(with("uuid", kUuidB))).ok());
  EXPECT_REFUSED(DecodeWelcome(Sp(with("uuid", "x"))).status(), kInvalidArgument, "uuid");
  EXPECT_REFUSED(DecodeWelcome(Sp(with("chunker", "fixed:3"))).status(), kInvalidArgument,
                 "chunker");
  EXPECT_REFUSED(DecodeWelcome(Sp(with("zstd_level", "23"))).status(), kInvalidArgument,
                 "zstd_level");
  EXPECT_REFUSED(DecodeWelcome(Sp(with("zstd_level", "1x"))).status(), kInvalidArgument,
                 "zstd_level");
  EXPECT_REFUSED(DecodeWelcome(Sp(with("record_target", "0"))).status(), kInvalidArgument,
                 "record_target");
  EXPECT_REFUSED(DecodeWelcome(Sp(with("record_target", "16777217"))).status(), kInvalidArgument,
                 "record_target");
  EXPECT_REFUSED(DecodeWelcome(Sp(with("record_target", "-1"))).status(), kInvalidArgument,
                 "record_target");
  for (const char* fp : {"00AB00CD12345678", "ab", "00ab00cd123456789", "00ab00cd1234567g"}) {
    EXPECT_REFUSED(DecodeWelcome(Sp(with("key_fingerprint", fp))).status(), kInvalidArgument,
                   "key_fingerprint");
  }

  // Missing, repeated and unknown keys.
  KvPairs kv = StoreInfoToKv(SomeInfo());
  for (size_t drop = 0; drop < kv.size(); ++drop) {
    KvPairs less = kv;
    less.erase(less.begin() + static_cast<ptrdiff_t>(drop));
    std::string p;
    EncodeKv(less, &p);
    PutU32(&p, kMinMaxFrame);
    PutU64(&p, kMinMaxFrame);
    EXPECT_REFUSED(DecodeWelcome(Sp(p)).status(), kInvalidArgument,
                   absl::StrCat(kv[drop].first, " is missing"));
  }
  {
    KvPairs twice = kv;
    twice.push_back(kv[0]);
    std::string p;
    EncodeKv(twice, &p);
    PutU32(&p, kMinMaxFrame);
    PutU64(&p, kMinMaxFrame);
    EXPECT_REFUSED(DecodeWelcome(Sp(p)).status(), kInvalidArgument, "uuid appears twice");
  }
  {
    KvPairs more = kv;
    more.emplace_back("tls", "required");
    std::string p;
    EncodeKv(more, &p);
    PutU32(&p, kMinMaxFrame);
    PutU64(&p, kMinMaxFrame);
    EXPECT_TRUE(DecodeWelcome(Sp(p)).ok());
  }

  Welcome w = SomeWelcome();
  w.max_frame = kMinMaxFrame - 1;
  EXPECT_REFUSED(DecodeWelcome(Sp(EncodeWelcome(w))).status(), kInvalidArgument, "frame limit");
  w = SomeWelcome();
  w.max_inflight = w.max_frame - 1;
  EXPECT_REFUSED(DecodeWelcome(Sp(EncodeWelcome(w))).status(), kInvalidArgument, "in-flight limit");
  // A kv count that claims more pairs than there are.
  std::string p = EncodeWelcome(SomeWelcome());
  p[0] = '\xff';
  p[1] = '\xff';
  EXPECT_TRUE(IsCleanRefusal(DecodeWelcome(Sp(p)).status()));
}

TEST(WireMessagesHostileTest, ErrorRefusesOversizedMessagesAndSanitizes) {
  // Longer than the limit.
  std::string p = U16(3) + U32(kMaxErrorMessage + 1) + std::string(kMaxErrorMessage + 1, 'x');
  EXPECT_REFUSED(DecodeErrorMsg(Sp(p)).status(), kInvalidArgument, "exceeds the limit");
  // A length far beyond the payload.
  p = U16(3) + U32(0xffffffff) + "abc";
  EXPECT_REFUSED(DecodeErrorMsg(Sp(p)).status(), kInvalidArgument, "malformed ERROR");
  EXPECT_REFUSED(DecodeError(Sp(p)), kInvalidArgument, "malformed ERROR");
  // Exactly the limit is fine.
  p = U16(3) + U32(kMaxErrorMessage) + std::string(kMaxErrorMessage, 'x');
  EXPECT_TRUE(DecodeErrorMsg(Sp(p)).ok());

  // Code 0 and unknown codes become kUnknown.
  for (uint16_t code : {0, 17, 999, 0xffff}) {
    p = U16(code) + U32(2) + "hi";
    absl::StatusOr<ErrorMsg> e = DecodeErrorMsg(Sp(p));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->code, absl::StatusCode::kUnknown) << code;
    EXPECT_EQ(DecodeError(Sp(p)).code(), absl::StatusCode::kUnknown);
  }

  // Control characters and broken UTF-8 become '?'; well-formed UTF-8 stays.
  const std::string text =
      "line1\nline2\r\x1b[31m \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc0\xaf \xed\xa0\x80 \xff"
      " \xe2\x82";
  p = U16(5) + U32(static_cast<uint32_t>(text.size())) + text;
  absl::StatusOr<ErrorMsg> e = DecodeErrorMsg(Sp(p));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->message,
            "line1?line2?"
            "?[31m \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ?? ??? ? ??");

  // EncodeError cuts long messages at a character boundary.
  const std::string long_message(50000, 'a');
  std::string accents;
  for (int i = 0; i < 40000; ++i) accents += "\xc3\xa9";
  for (const std::string& m : {long_message + long_message, "a" + accents}) {
    const std::string enc = EncodeError(absl::InternalError(m));
    absl::StatusOr<ErrorMsg> back = DecodeErrorMsg(Sp(enc));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_LE(back->message.size(), kMaxErrorMessage);
    EXPECT_GE(back->message.size(), kMaxErrorMessage - 3);
    EXPECT_EQ(back->message, m.substr(0, back->message.size()));  // nothing became '?'
  }
}

TEST(WireMessagesHostileTest, IdCountsThatDoNotMatchOrOverflowAreRefused) {
  const std::string id16(16, '\x07');
  for (const std::string& p :
       {U32(1), U32(2) + id16, U32(0) + id16, U32(1) + id16 + "x", U32(0xffffffff) + id16,
        // 0x10000000 × 16 wraps to 0 in 32 bits.
        U32(0x10000000), U32(0x10000001) + id16}) {
    EXPECT_REFUSED(DecodeHave(Sp(p)).status(), kInvalidArgument, "malformed HAVE");
    EXPECT_REFUSED(DecodeRead(Sp(p)).status(), kInvalidArgument, "malformed READ");
  }
}

TEST(WireMessagesHostileTest, HaveReplyRefusesWrongCountsAndStrayBits) {
  const std::string p = EncodeHaveReply(std::vector<bool>(11, true));
  EXPECT_REFUSED(DecodeHaveReply(Sp(p), 12).status(), kInvalidArgument,
                 "answers 11 chunk ids; HAVE asked about 12");
  EXPECT_REFUSED(DecodeHaveReply(Sp(U32(0xffffffff) + "ab"), 0xffffffff).status(), kInvalidArgument,
                 "announces 4294967295 answers");
  EXPECT_REFUSED(DecodeHaveReply(Sp(U32(9) + "\xff"), 9).status(), kInvalidArgument,
                 "bitmap bytes");
  EXPECT_REFUSED(DecodeHaveReply(Sp(U32(3) + "\x08"), 3).status(), kInvalidArgument, "unused bits");
  EXPECT_REFUSED(DecodeHaveReply(Sp(U32(1) + "\x02"), 1).status(), kInvalidArgument, "unused bits");
  EXPECT_TRUE(DecodeHaveReply(Sp(U32(8) + "\xff"), 8).ok());
  EXPECT_TRUE(DecodeHaveReply(Sp(U32(0)), 0).ok());
}

std::string AppendPayload(uint8_t mode, uint8_t reserved, uint32_t count, const std::string& body) {
  std::string p;
  p.push_back(static_cast<char>(mode));
  p.push_back(static_cast<char>(reserved));
  PutU32(&p, count);
  return p + body;
}

TEST(WireMessagesHostileTest, AppendRefusesBadModeReservedAndRecordsThatDoNotTile) {
  const std::vector<std::string> recs = SomeRecords();
  const std::string body = recs[0] + recs[1] + recs[2];
  ASSERT_TRUE(DecodeAppend(Sp(AppendPayload(1, 0, 3, body))).ok());
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(2, 0, 3, body))).status(), kInvalidArgument,
                 "verify mode 2");
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(0xff, 0, 3, body))).status(), kInvalidArgument,
                 "verify mode 255");
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(0, 1, 3, body))).status(), kInvalidArgument,
                 "reserved byte");
  // Count larger than the records there.
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(0, 0, 4, body))).status(), kInvalidArgument,
                 "announces 4 records");
  // Count smaller: the rest is trailing.
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(0, 0, 2, body))).status(), kInvalidArgument,
                 "trailing bytes after 2 records");
  // Far too many (must be refused before any allocation).
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(0, 0, 0xffffffff, body))).status(), kInvalidArgument,
                 "announces 4294967295 records");
  // Garbage between records.
  EXPECT_TRUE(IsCleanRefusal(
      DecodeAppend(Sp(AppendPayload(0, 0, 3, recs[0] + "zz" + recs[1] + recs[2]))).status()));
  // A record cut short, at its end.
  EXPECT_REFUSED(DecodeAppend(Sp(AppendPayload(0, 0, 3, body.substr(0, body.size() - 1)))).status(),
                 kInvalidArgument, "record 2 at payload offset");
  // A damaged header (its checksum no longer matches): DataLoss naming the record.
  for (size_t i : {0, 5, 8, 12, 20, 31, 40}) {
    std::string bad = body;
    bad[recs[0].size() + i] ^= 0x10;
    const absl::Status st = DecodeAppend(Sp(AppendPayload(0, 0, 3, bad))).status();
    EXPECT_TRUE(IsCleanRefusal(st)) << i;
    EXPECT_TRUE(Has(st, "record 1 at payload offset")) << st;
  }
  // A record that is not a record at all.
  EXPECT_TRUE(
      IsCleanRefusal(DecodeAppend(Sp(AppendPayload(0, 0, 1, std::string(100, '\0')))).status()));
}

TEST(WireMessagesHostileTest, RecordsRefusesRecordsThatDoNotTile) {
  const std::vector<std::string> recs = SomeRecords();
  const std::string body = recs[0] + recs[1];
  EXPECT_TRUE(DecodeRecords(Sp(U32(2) + body)).ok());
  EXPECT_REFUSED(DecodeRecords(Sp(U32(3) + body)).status(), kInvalidArgument, "malformed RECORDS");
  EXPECT_REFUSED(DecodeRecords(Sp(U32(1) + body)).status(), kInvalidArgument, "trailing");
  EXPECT_REFUSED(DecodeRecords(Sp(U32(0) + body)).status(), kInvalidArgument, "trailing");
  EXPECT_REFUSED(DecodeRecords(Sp(U32(0x7fffffff) + body)).status(), kInvalidArgument,
                 "announces 2147483647 records");
  EXPECT_REFUSED(DecodeRecords(Sp(U32(2) + body + "\x01")).status(), kInvalidArgument,
                 "1 trailing bytes");
}

TEST(WireMessagesHostileTest, AppendAckRefusesImpossibleTotals) {
  EXPECT_REFUSED(DecodeAppendAck(Sp(EncodeAppendAck({1, 2, 0, 0}))).status(), kInvalidArgument,
                 "appended 2 of 1");
}

TEST(WireMessagesHostileTest, UuidsFromTheWireNeverBecomePaths) {
  for (const std::string& uuid :
       {std::string("../../../../../../../etc/passwd"), std::string("/etc/shadow"),
        std::string("0123456789abcdef0123456789abcde/"), std::string("."),
        std::string("0123456789abcdef0123456789ABCDEF"), std::string(), std::string(1000, 'a')}) {
    EXPECT_REFUSED(DecodeOpenManifest(Sp(EncodeOpenManifest(uuid))).status(), kInvalidArgument,
                   "is not a uuid");
    EXPECT_REFUSED(DecodeGetGroup(Sp(EncodeGetGroup(uuid))).status(), kInvalidArgument,
                   "is not a uuid");
    EXPECT_REFUSED(DecodePutManifest(Sp(EncodePutManifest({uuid, 10}))).status(), kInvalidArgument,
                   "is not a uuid");
    EXPECT_REFUSED(DecodePutManifestDelta(Sp(EncodePutManifestDelta({uuid, kUuidA, 10}))).status(),
                   kInvalidArgument, "backup uuid");
    EXPECT_REFUSED(DecodePutManifestDelta(Sp(EncodePutManifestDelta({kUuidA, uuid, 10}))).status(),
                   kInvalidArgument, "base uuid");
    EXPECT_TRUE(IsCleanRefusal(
        DecodeGroupList(Sp(EncodeGroupList(std::vector<std::string>{kUuidA, uuid}))).status()));
    GroupRecord g = SomeGroup();
    g.volume_uuids.push_back(uuid);
    EXPECT_TRUE(IsCleanRefusal(DecodePutGroup(Sp(EncodePutGroup(g))).status()));
    g = SomeGroup();
    g.vm_instance_uuid = uuid;
    EXPECT_REFUSED(DecodeGroupReply(Sp(EncodeGroupReply(g))).status(), kInvalidArgument,
                   "vmInstanceUuid");
    g = SomeGroup();
    g.group_uuid = uuid;
    EXPECT_TRUE(IsCleanRefusal(DecodePutGroup(Sp(EncodePutGroup(g))).status()));
  }
  // The error shows a long hostile name cut short and escaped.
  const absl::Status st =
      DecodeOpenManifest(Sp(EncodeOpenManifest(std::string(1000, 'a') + "\n"))).status();
  EXPECT_LT(st.message().size(), 300u) << st;
}

TEST(WireMessagesHostileTest, ManifestMessagesRefuseBadSizes) {
  EXPECT_REFUSED(DecodePutManifest(Sp(EncodePutManifest({kUuidA, 0}))).status(), kInvalidArgument,
                 "length is 0");
  EXPECT_REFUSED(
      DecodePutManifest(Sp(EncodePutManifest({kUuidA, kMaxManifestLength + 1}))).status(),
      kInvalidArgument, "exceeds the limit");
  EXPECT_REFUSED(DecodePutManifestDelta(Sp(EncodePutManifestDelta({kUuidA, kUuidB, 0}))).status(),
                 kInvalidArgument, "delta length is 0");
  EXPECT_REFUSED(
      DecodePutManifestDelta(Sp(EncodePutManifestDelta({kUuidA, kUuidB, kMaxManifestLength + 1})))
          .status(),
      kInvalidArgument, "exceeds the limit");
  EXPECT_REFUSED(DecodeManifestData({}).status(), kInvalidArgument, "carries 0 bytes");
  const std::string big(kMaxManifestData + 1, 'm');
  EXPECT_REFUSED(DecodeManifestData(Sp(big)).status(), kInvalidArgument,
                 absl::StrCat("carries ", kMaxManifestData + 1, " bytes"));
}

TEST(WireMessagesHostileTest, GroupListRefusesCountsBeyondThePayload) {
  EXPECT_REFUSED(DecodeGroupList(Sp(U32(0xffffffff))).status(), kInvalidArgument,
                 "announces 4294967295 group uuids");
  EXPECT_REFUSED(DecodeGroupList(Sp(U32(2) + U16(32) + kUuidA)).status(), kInvalidArgument,
                 "announces 2 group uuids");
  EXPECT_REFUSED(DecodeGroupList(Sp(U32(1) + U16(32) + kUuidA + "x")).status(), kInvalidArgument,
                 "trailing");
}

TEST(WireMessagesHostileTest, DeleteRefusesUnknownKindsAndBadUuids) {
  EXPECT_REFUSED(DecodeDelete(Sp(std::string(1, '\x02') + U16(32) + kUuidA)).status(),
                 kInvalidArgument, "unknown kind 2");
  EXPECT_REFUSED(DecodeDelete(Sp(std::string(1, '\0') + U16(5) + "../..")).status(),
                 kInvalidArgument, "uuid");
  EXPECT_REFUSED(DecodeDeleted(Sp(U32(0) + U32(7))).status(), kInvalidArgument,
                 "announces 7 removed backup uuids");
}

TEST(WireMessagesHostileTest, GcRefusesUnknownFlagsAndThresholdsAboveOne) {
  EXPECT_REFUSED(DecodeGc(Sp(std::string(1, '\x02') + U32(0))).status(), kInvalidArgument,
                 "unknown flags 2");
  EXPECT_REFUSED(DecodeGc(Sp(std::string(1, '\0') + U32(1'000'001))).status(), kInvalidArgument,
                 "above 1000000");
  absl::StatusOr<GcRequest> gc = DecodeGc(Sp(EncodeGc({false, 1'000'000})));
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_FALSE(gc->dry_run);
  EXPECT_EQ(gc->repack_below_ppm, 1'000'000u);
  GcStats stats;
  stats.bytes_copied = 7;
  stats.milliseconds = 2500;
  absl::StatusOr<GcStats> done = DecodeGcDone(Sp(EncodeGcDone(stats)));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->bytes_copied, 7u);
  EXPECT_EQ(done->milliseconds, 2500u);
}

TEST(WireMessagesHostileTest, DamagedGroupRecordIsDataLoss) {
  std::string p = EncodePutGroup(SomeGroup());
  p[10] ^= 1;
  EXPECT_REFUSED(DecodePutGroup(Sp(p)).status(), kDataLoss, "PUT_GROUP");
  EXPECT_REFUSED(DecodeGroupReply(Sp(p)).status(), kDataLoss, "GROUP");
}

// ---- Fuzz: random and mutated bytes into every decoder (fixed seed; ASan in CI). ----

TEST(WireMessagesHostileTest, FuzzEveryDecoder) {
  const std::vector<Case> cases = AllCases();
  std::mt19937_64 rng(0xc0ffee);
  constexpr int kIterations = 20000;
  int accepted = 0;
  for (int it = 0; it < kIterations; ++it) {
    const Case& c = cases[static_cast<size_t>(it) % cases.size()];
    std::vector<uint8_t> input;
    switch (rng() % 4) {
      case 0: {  // random bytes, mostly short
        input.resize(rng() % (rng() % 2 ? 16 : 400));
        for (uint8_t& b : input) b = static_cast<uint8_t>(rng());
        break;
      }
      case 1: {  // a valid payload with a few bytes changed
        input.assign(c.payload.begin(), c.payload.end());
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int f = 0; f < flips && !input.empty(); ++f) {
          input[rng() % input.size()] = static_cast<uint8_t>(rng());
        }
        break;
      }
      case 2: {  // a valid payload cut or extended
        input.assign(c.payload.begin(), c.payload.end());
        if (rng() % 2 && !input.empty()) {
          input.resize(rng() % input.size());
        } else {
          const size_t extra = 1 + rng() % 64;
          for (size_t e = 0; e < extra; ++e) input.push_back(static_cast<uint8_t>(rng()));
        }
        break;
      }
      default: {  // a valid payload with a count or length field set to an extreme
        input.assign(c.payload.begin(), c.payload.end());
        if (input.size() >= 4) {
          const size_t at = rng() % (input.size() - 3);
          const uint32_t v = rng() % 2 ? 0xffffffffu : static_cast<uint32_t>(rng() % 100);
          StoreU32(input.data() + at, v);
        }
        break;
      }
    }
    absl::StatusOr<std::string> d = c.decode(input);
    if (d.ok()) {
      ++accepted;
      if (c.canonical) {
        ASSERT_EQ(*d, Str(input)) << c.name << " iteration " << it;
      }
    } else {
      ASSERT_TRUE(IsCleanRefusal(d.status())) << c.name << " iteration " << it;
    }
  }
  // Both outcomes are exercised (about a third is accepted with this seed).
  EXPECT_GT(accepted, kIterations / 20);
  EXPECT_LT(accepted, kIterations - kIterations / 20);
}

}  // namespace
}  // namespace chunkferry::engine
