// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/), each seed a small
// valid input made with the project's own encoders, so that every target starts from inputs that
// reach its deepest paths. Deterministic: running it again rewrites the same files.
//
//   make_seeds tests/fuzz/corpus
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/format/kv_block.h"
#include "engine/format/manifest.h"
#include "engine/format/manifest_delta.h"
#include "engine/format/volume_backup.h"
#include "engine/local/index_run.h"
#include "engine/local/record_table.h"
#include "engine/wire/wire_frame.h"
#include "engine/wire/wire_messages.h"
#include "io/fd.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

std::string g_out;

void Put(const std::string& target, const std::string& name, absl::string_view bytes) {
  const std::string dir = absl::StrCat(g_out, "/", target);
  ::mkdir(dir.c_str(), 0755);
  if (bytes.size() >= (64u << 10)) {
    fprintf(stderr, "seed %s/%s is %zu bytes, over 64 KiB\n", target.c_str(), name.c_str(),
            bytes.size());
    abort();
  }
  WriteFile(absl::StrCat(dir, "/", name), bytes);
}

std::string Str(absl::Span<const uint8_t> b) { return std::string(Chars(b)); }
void Put(const std::string& target, const std::string& name, const std::string& b) {
  Put(target, name, absl::string_view(b));
}
void Put(const std::string& target, const std::string& name, const char* b) {
  Put(target, name, absl::string_view(b));
}

// Deterministic bytes: `n` of them, compressible when `text`.
std::vector<uint8_t> Data(size_t n, uint64_t seed, bool text) {
  std::vector<uint8_t> out(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = text ? static_cast<uint8_t>("chunkferry "[x % 11]) : static_cast<uint8_t>(x);
  }
  return out;
}

const std::string kUuidA = "0123456789abcdef0123456789abcdef";
const std::string kUuidB = "fedcba9876543210fedcba9876543210";
const std::string kUuidC = "00000000000000000000000000000c0c";

// A record of `chunks` chunks of `size` bytes each.
std::string Record(size_t chunks, size_t size, uint64_t seed, bool text, bool compress) {
  const codec::ChunkHasher hasher;
  codec::Compressor comp(3);
  std::vector<std::vector<uint8_t>> data;
  std::vector<codec::ChunkRef> refs;
  std::vector<absl::Span<const uint8_t>> spans;
  size_t total = 0;
  for (size_t i = 0; i < chunks; ++i) data.push_back(Data(size + i % 3, seed + i, text));
  for (const auto& d : data) {
    refs.push_back({hasher.Hash(d), static_cast<uint32_t>(d.size())});
    spans.push_back(d);
    total += d.size();
  }
  std::vector<uint8_t> out(codec::MaxRecordSize(chunks, total));
  auto n = codec::EncodeRecord(refs, spans, compress ? &comp : nullptr, absl::MakeSpan(out));
  if (!n.ok()) abort();
  out.resize(*n);
  return Str(out);
}

engine::VolumeBackupMeta Meta(uint64_t size, bool full) {
  engine::VolumeBackupMeta m;
  m.uuid = kUuidA;
  m.volume_uuid = kUuidB;
  m.group_uuid = kUuidC;
  m.size = size;
  m.type = full ? "Data" : "Root";
  m.create_date = 1700000000;
  m.last_op_date = 1700000100;
  m.install_path = engine::DefaultInstallPath(kUuidC, kUuidA);
  m.chunker = "cdc:2048:8192:65536";
  if (full) {
    m.name = "data-1";
    m.description = "a volume";
    m.metadata = "{\"k\":1}";
    m.vm_instance_uuid = kUuidB;
    m.mode = "incremental";
    m.extra.emplace_back("laterKey", "value");
  }
  return m;
}

std::string ReadBack(const std::string& path) {
  auto b = io::ReadFileToString(path);
  if (!b.ok()) abort();
  return *b;
}

// ---- Targets. ----

void Records() {
  Put("record", "raw-one", Record(1, 100, 1, false, false));
  Put("record", "zstd-three", Record(3, 2000, 2, true, true));
  Put("record", "raw-random", Record(4, 1500, 3, false, true));  // zstd does not pay
  Put("record", "zstd-many-small", Record(60, 40, 4, true, true));
  Put("record", "one-byte", Record(1, 1, 5, false, false));
}

void Packs() {
  const std::string a = Record(2, 300, 10, true, true);
  const std::string b = Record(1, 500, 11, false, false);
  const std::string c = Record(5, 100, 12, true, true);
  Put("pack_scan", "three-records", a + b + c);
  Put("pack_scan", "torn-tail", a + b + c.substr(0, c.size() / 2));
  std::string damaged = a + b + c;
  damaged[a.size() + 40] ^= 0x55;  // b's table: its header checksum no longer holds
  Put("pack_scan", "damaged-middle", damaged);
  std::string bad_payload = a + b + c;
  bad_payload[a.size() + b.size() - 1] ^= 1;  // b's payload
  Put("pack_scan", "bad-payload", bad_payload);
  Put("pack_scan", "garbage-between", a + std::string(37, 'x') + c);
  Put("pack_scan", "empty", "");
}

std::string Manifest(const std::vector<engine::ManifestEntry>& entries, bool full_meta) {
  const std::string dir = ScratchDir();
  const std::string tmp = dir + "/m.tmp", path = dir + "/m.manifest";
  ::unlink(path.c_str());
  auto w = engine::ManifestWriter::Create(tmp);
  if (!w.ok()) abort();
  for (const auto& e : entries) {
    if (!(*w)->Add(e).ok()) abort();
  }
  if (!(*w)->Finish(Meta((*w)->logical_size(), full_meta), path).ok()) abort();
  return ReadBack(path);
}

void Manifests() {
  const codec::ChunkHasher hasher;
  auto data = [&](uint32_t len, uint64_t n) {
    engine::ManifestEntry e;
    e.length = len;
    e.id = hasher.Hash(Data(8, n, false));
    return e;
  };
  auto hole = [](uint64_t len) {
    engine::ManifestEntry e;
    e.length = len;
    e.zero = true;
    return e;
  };
  Put("manifest", "empty", Manifest({}, false));
  Put("manifest", "data-only", Manifest({data(4096, 1), data(4096, 2), data(100, 3)}, false));
  Put("manifest", "holes", Manifest({hole(1 << 20), data(8192, 4), hole(12), data(1, 5)}, true));
  std::vector<engine::ManifestEntry> many;
  for (int i = 0; i < 200; ++i) many.push_back(i % 9 == 0 ? hole(4096 * (i + 1)) : data(65536, i));
  Put("manifest", "many", Manifest(many, true));
}

// A delta of `entries` against the fixed base of fuzz_manifest_delta.
std::string Delta(const std::vector<engine::ManifestEntry>& entries, bool full_meta) {
  class Source final : public engine::ManifestSource {
   public:
    Source(engine::VolumeBackupMeta m, std::vector<engine::ManifestEntry> e)
        : m_(std::move(m)), e_(std::move(e)) {}
    const engine::VolumeBackupMeta& meta() const override { return m_; }
    absl::StatusOr<size_t> Next(std::vector<engine::ManifestEntry>* out, size_t max) override {
      out->clear();
      while (out->size() < max && pos_ < e_.size()) out->push_back(e_[pos_++]);
      return out->size();
    }
    void Rewind() override { pos_ = 0; }

   private:
    engine::VolumeBackupMeta m_;
    std::vector<engine::ManifestEntry> e_;
    size_t pos_ = 0;
  };
  const std::string base_path = ScratchDir() + "/base.manifest";
  WriteDeltaBase(base_path);
  auto base = engine::ManifestReader::Open(base_path);
  if (!base.ok()) abort();
  uint64_t size = 0;
  for (const auto& e : entries) size += e.length;
  Source src(Meta(size, full_meta), entries);
  std::string out;
  auto st = engine::EncodeManifestDelta(src.meta(), src, **base, [&](absl::string_view piece) {
    out.append(piece.data(), piece.size());
    return absl::OkStatus();
  });
  if (!st.ok()) abort();
  return out;
}

void Deltas() {
  const std::string base_path = ScratchDir() + "/base.manifest";
  WriteDeltaBase(base_path);
  auto base = engine::ManifestReader::Open(base_path);
  if (!base.ok()) abort();
  std::vector<engine::ManifestEntry> same, batch;
  while (true) {
    auto n = (*base)->Next(&batch, 100);
    if (!n.ok()) abort();
    if (*n == 0) break;
    same.insert(same.end(), batch.begin(), batch.end());
  }
  Put("manifest_delta", "same-as-base", Delta(same, false));
  std::vector<engine::ManifestEntry> changed = same;
  changed[1].id = codec::ChunkId{1, 2};
  changed[4].zero = true;
  changed[4].id = {};
  engine::ManifestEntry extra;
  extra.length = 4096;
  extra.id = codec::ChunkId{3, 4};
  changed.push_back(extra);
  Put("manifest_delta", "changed-and-grown", Delta(changed, true));
  std::vector<engine::ManifestEntry> fresh;
  for (uint64_t i = 0; i < 20; ++i) {
    engine::ManifestEntry e;
    e.length = 1000 + i;
    e.zero = i % 4 == 3;
    if (!e.zero) e.id = codec::ChunkId{i, i * 7};
    fresh.push_back(e);
  }
  Put("manifest_delta", "all-literal", Delta(fresh, false));
  Put("manifest_delta", "empty", Delta({}, false));
}

std::string Run(uint64_t run_id, size_t count, uint64_t seed) {
  const codec::ChunkHasher hasher;
  std::vector<engine::IndexEntry> entries;
  for (size_t i = 0; i < count; ++i) {
    const codec::ChunkId id = hasher.Hash(Data(8, seed * 1000 + i, false));
    entries.push_back(
        {id.hi, id.lo, static_cast<uint32_t>(i % kFixedRecords), static_cast<uint16_t>(i % 5), 0});
  }
  std::sort(entries.begin(), entries.end());
  const std::string path = ScratchDir() + "/seed.run";
  auto w = engine::IndexRunWriter::Create(path, std::max<size_t>(count, 1) + seed % 3, run_id);
  if (!w.ok()) abort();
  for (const auto& e : entries) {
    if (!(*w)->Add(e).ok()) abort();
  }
  if (!(*w)->Finish().ok()) abort();
  return ReadBack(path);
}

void IndexRuns() {
  Put("index_run", "empty", Run(1, 0, 1));
  Put("index_run", "one", Run(7, 1, 2));
  Put("index_run", "ten", Run(3, 10, 3));
  Put("index_run", "two-hundred", Run(9, 200, 4));
}

std::string State(std::vector<std::pair<uint64_t, uint64_t>> runs, uint64_t records,
                  std::vector<std::pair<uint32_t, uint64_t>> packs) {
  std::string s("CFIS", 4);
  engine::PutU16(&s, 1);
  engine::PutU16(&s, 0);
  engine::PutU64(&s, 10);  // next run id
  engine::PutU64(&s, records);
  engine::PutU32(&s, static_cast<uint32_t>(runs.size()));
  engine::PutU32(&s, static_cast<uint32_t>(packs.size()));
  for (const auto& [id, n] : runs) {
    engine::PutU64(&s, id);
    engine::PutU64(&s, n);
  }
  for (const auto& [pack, covered] : packs) {
    engine::PutU32(&s, pack);
    engine::PutU64(&s, covered);
  }
  engine::PutU64(&s, codec::Checksum64(engine::AsBytes(s)));
  return s;
}

std::string Table(uint32_t slots) {
  const std::string path = ScratchDir() + "/seed.records";
  engine::RecordTable t = engine::RecordTable::Fresh(path);
  for (uint32_t i = 0; i < slots; ++i) {
    t.Append(engine::RecordLocation{1 + i / 50, 500 + i, uint64_t{32} + i * 777});
  }
  if (!t.Persist().ok()) abort();
  return ReadBack(path);
}

void ChunkIndexes() {
  const std::string sep(kSplitMarker);
  const auto both = State({{1, kFixedRun1Entries}, {2, kFixedRun2Entries}}, kFixedRecords,
                          {{1, 4096}, {2, 123456}, {7, 32}});
  Put("chunk_index", "two-runs", both);
  Put("chunk_index", "one-run", State({{2, kFixedRun2Entries}}, kFixedRecords, {{1, 32}}));
  Put("chunk_index", "no-runs", State({}, 0, {}));
  // Run 3 from the input, with the default record table.
  Put("chunk_index", "three-runs",
      State({{1, kFixedRun1Entries}, {2, kFixedRun2Entries}, {3, 10}}, kFixedRecords, {{1, 8}}) +
          sep + Run(3, 10, 5));
  // Run 3 and the record table from the input.
  Put("chunk_index", "own-table",
      State({{3, 20}}, 40, {{2, 64}}) + sep + Run(3, 20, 6) + sep + Table(40));
}

void RecordTables() {
  Put("record_table", "empty", "");
  Put("record_table", "one", Table(1));
  Put("record_table", "many", Table(300));
}

void GroupsAndKv() {
  engine::GroupRecord g;
  g.group_uuid = kUuidC;
  g.volume_uuids = {kUuidA, kUuidB};
  g.create_date = 1700000000;
  Put("group_kv", "group", engine::EncodeGroup(g));
  g.vm_instance_uuid = kUuidB;
  g.volume_uuids.push_back("11111111111111111111111111111111");
  Put("group_kv", "group-vm", engine::EncodeGroup(g));
  std::string kv;
  engine::EncodeKv(engine::MetaToKv(Meta(1 << 30, true)), &kv);
  Put("group_kv", "meta-kv", kv);
  kv.clear();
  engine::StoreInfo info;
  info.uuid = kUuidA;
  info.key_fingerprint = 0x0123456789abcdef;
  engine::EncodeKv(engine::StoreInfoToKv(info), &kv);
  Put("group_kv", "store-info-kv", kv);
  Put("group_kv", "empty-kv", std::string(4, '\0'));
}

// fuzz_wire: a direct seed (type selector + payload) and a frame for each message.
void Wire() {
  const codec::ChunkHasher hasher;
  std::vector<std::pair<engine::MsgType, std::string>> msgs;
  engine::Hello hello;
  hello.client_nonce.fill(7);
  msgs.emplace_back(engine::MsgType::kHello, engine::EncodeHello(hello));
  engine::Challenge ch;
  ch.store_uuid = kUuidA;
  ch.server_nonce.fill(1);
  ch.server_proof.fill(2);
  msgs.emplace_back(engine::MsgType::kChallenge, engine::EncodeChallenge(ch));
  engine::Auth auth;
  auth.client_proof.fill(3);
  msgs.emplace_back(engine::MsgType::kAuth, engine::EncodeAuth(auth));
  engine::Welcome welcome;
  welcome.info.uuid = kUuidB;
  welcome.manifest_delta = welcome.takes_delete = welcome.takes_gc = true;
  msgs.emplace_back(engine::MsgType::kWelcome, engine::EncodeWelcome(welcome));
  msgs.emplace_back(engine::MsgType::kError,
                    engine::EncodeError(absl::NotFoundError("no such group \xc3\xa9")));
  const std::vector<codec::ChunkId> ids = {hasher.Hash(Data(4, 1, false)),
                                           hasher.Hash(Data(4, 2, false)), codec::ChunkId{5, 6}};
  msgs.emplace_back(engine::MsgType::kHave, engine::EncodeHave(ids));
  msgs.emplace_back(engine::MsgType::kRead, engine::EncodeRead(ids));
  msgs.emplace_back(
      engine::MsgType::kHaveReply,
      engine::EncodeHaveReply({true, false, true, true, false, false, true, false, true, true}));
  const std::string r1 = Record(2, 300, 20, true, true), r2 = Record(1, 200, 21, false, false);
  const std::vector<absl::Span<const uint8_t>> recs = {engine::AsBytes(r1), engine::AsBytes(r2)};
  msgs.emplace_back(engine::MsgType::kAppend,
                    engine::EncodeAppend(engine::VerifyMode::kChecksum, recs));
  engine::AppendStats stats{3, 2, 1000, 5};
  msgs.emplace_back(engine::MsgType::kAppendAck, engine::EncodeAppendAck(stats));
  msgs.emplace_back(engine::MsgType::kRecords, engine::EncodeRecords(recs));
  msgs.emplace_back(engine::MsgType::kPutManifest, engine::EncodePutManifest({kUuidA, 4242}));
  msgs.emplace_back(engine::MsgType::kPutManifestDelta,
                    engine::EncodePutManifestDelta({kUuidA, kUuidB, 99}));
  msgs.emplace_back(engine::MsgType::kManifestData, std::string("CFMF\x01\x00", 6));
  msgs.emplace_back(engine::MsgType::kOpenManifest, engine::EncodeOpenManifest(kUuidA));
  msgs.emplace_back(engine::MsgType::kGetGroup, engine::EncodeGetGroup(kUuidC));
  engine::GroupRecord g;
  g.group_uuid = kUuidC;
  g.vm_instance_uuid = kUuidB;
  g.volume_uuids = {kUuidA};
  msgs.emplace_back(engine::MsgType::kPutGroup, engine::EncodePutGroup(g));
  msgs.emplace_back(engine::MsgType::kGroup, engine::EncodeGroupReply(g));
  const std::vector<std::string> groups = {kUuidA, kUuidC};
  msgs.emplace_back(engine::MsgType::kGroupList, engine::EncodeGroupList(groups));
  msgs.emplace_back(engine::MsgType::kBackupList, engine::EncodeBackupList(groups));
  msgs.emplace_back(engine::MsgType::kDelete,
                    engine::EncodeDelete({engine::DeleteKind::kBackup, kUuidB}));
  engine::DeleteResult deleted;
  deleted.groups_removed = {kUuidC};
  deleted.backups_removed = {kUuidA};
  deleted.backups_kept = {kUuidB};
  msgs.emplace_back(engine::MsgType::kDeleted, engine::EncodeDeleted(deleted));
  msgs.emplace_back(engine::MsgType::kGc, engine::EncodeGc({true, 250000}));
  engine::GcStats gc;
  gc.manifests = 3;
  gc.bytes_reclaimed = 1 << 20;
  msgs.emplace_back(engine::MsgType::kGcDone, engine::EncodeGcDone(gc));
  msgs.emplace_back(engine::MsgType::kFlush, "");

  std::string handshake("\xf0", 1), session("\xf1", 1);
  for (const auto& [type, payload] : msgs) {
    const std::string name(engine::MsgTypeName(type));
    const auto* it = std::find(std::begin(kWireFuzzTypes), std::end(kWireFuzzTypes), type);
    if (it != std::end(kWireFuzzTypes)) {
      const char selector = static_cast<char>(it - std::begin(kWireFuzzTypes));
      Put("wire", absl::StrCat("msg-", name), std::string(1, selector) + payload);
    }
    std::string frame;
    engine::AppendMessage(type, payload, &frame);
    (static_cast<uint16_t>(type) <= 5 ? handshake : session) += frame;
  }
  Put("wire", "frames-handshake", handshake);
  Put("wire", "frames-session", session);
}

void Registry() {
  Put("registry", "local-and-daemon", R"({
  "backupStorages": [
    {"uuid": "0123456789abcdef0123456789abcdef", "name": "local", "store": "store-a"},
    {"uuid": "fedcba9876543210fedcba9876543210", "name": "node-2", "store": "tcp://10.0.0.2:7170",
     "keyFile": "node.key", "connections": 4, "connectTimeoutMs": 5000,
     "rateLimitBytesPerSecond": 1048576}
  ],
  "sessions": ["00000000000000000000000000000c0c", "token-2"],
  "verify": "checksum"
})");
  Put("registry", "two-local", R"({"backupStorages": [
    {"uuid": "0123456789abcdef0123456789abcdef", "store": "store-a"},
    {"uuid": "fedcba9876543210fedcba9876543210", "store": "./store-b"}], "verify": "full"})");
  Put("registry", "ipv6-daemon", R"({"backupStorages": [
    {"uuid": "0123456789abcdef0123456789abcdef", "store": "tcp://[::1]:7170",
     "keyFile": "node.key"}], "sessions": []})");
  Put("registry", "open-key", R"({"backupStorages": [
    {"uuid": "0123456789abcdef0123456789abcdef", "store": "tcp://node:1", "keyFile": "open.key"}]})");
}

void SyncActions() {
  const std::string path = kUuidC + "\n";
  Put("sync_action", "minimal",
      path + R"({"syncVmBackupFromImageStoreBackupStorage": {"srcBackupStorageUuid": ")" + kUuidA +
          R"(", "dstBackupStorageUuid": ")" + kUuidB + R"("}})");
  Put("sync_action", "tags",
      path + R"({"syncVmBackupFromImageStoreBackupStorage": {"srcBackupStorageUuid": ")" + kUuidA +
          R"(", "dstBackupStorageUuid": ")" + kUuidB +
          R"(", "groupUuid": "ignored", "systemTags": ["a::b"], "userTags": []},
 "systemTags": ["top"], "userTags": ["u1", "u2"]})");
  Put("sync_action", "same-storage",
      path + R"({"syncVmBackupFromImageStoreBackupStorage": {"srcBackupStorageUuid": ")" + kUuidA +
          R"(", "dstBackupStorageUuid": ")" + kUuidA + R"("}})");
  Put("sync_action", "not-an-action", path + R"({"other": {}})");
  Put("sync_action", "bad-path-uuid",
      "NOT-A-UUID\n" + std::string(R"({"syncVmBackupFromImageStoreBackupStorage": {}})"));
}

void Texts() {
  // Byte 0: 0 chunker spec, 1 endpoint, 2 hex id, 3 size, 4 keys file.
  Put("text", "fixed", std::string("\x00", 1) + "fixed:4096\n" + Str(Data(20000, 1, false)));
  Put("text", "cdc", std::string("\x00", 1) + "cdc:2k:8k:64k\n" + Str(Data(30000, 2, false)));
  Put("text", "cdc-small", std::string("\x00", 1) + "cdc:64:128:256\n" + Str(Data(2000, 3, true)));
  Put("text", "endpoint",
      "\x01"
      "node-2.example:7170");
  Put("text", "endpoint-v6",
      "\x01"
      "[fe80::1]:65535");
  Put("text", "hex",
      "\x02"
      "0123456789ABCDEF0123456789abcdef");
  Put("text", "size",
      "\x03"
      "64MiB");
  Put("text", "keys",
      "\x04"
      "# keys\n"
      "replica-b append 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef "
      "connections=4 inflight=32MiB quota=2T\n"
      "ops admin FEDCBA9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n");
}

}  // namespace
}  // namespace chunkferry::fuzz

int main(int argc, char** argv) {
  using namespace chunkferry::fuzz;
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  ::mkdir(g_out.c_str(), 0755);
  Records();
  Packs();
  Manifests();
  Deltas();
  IndexRuns();
  ChunkIndexes();
  RecordTables();
  GroupsAndKv();
  Wire();
  Registry();
  SyncActions();
  Texts();
  printf("seeds written to %s\n", g_out.c_str());
  return 0;
}
