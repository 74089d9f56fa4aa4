#include "engine/rados/rados_layout.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/format/byte_io.h"
#include "engine/format/kv_block.h"

namespace chunkferry::engine::rados {
namespace {

constexpr char kUrlPrefix[] = "rados:";
constexpr uint8_t kManifestRefVersion = 1;
constexpr uint8_t kPendingDeleteVersion = 1;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

void PutString(std::string* out, absl::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

}  // namespace

std::string RadosUrl::ToString() const {
  return ns.empty() ? absl::StrCat(kUrlPrefix, pool) : absl::StrCat(kUrlPrefix, pool, "/", ns);
}

bool IsRadosUrl(absl::string_view text) { return absl::StartsWith(text, kUrlPrefix); }

absl::StatusOr<RadosUrl> ParseRadosUrl(absl::string_view text) {
  if (!IsRadosUrl(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a RADOS store (rados:POOL[/NAMESPACE])"));
  }
  absl::string_view rest = text.substr(sizeof(kUrlPrefix) - 1);
  RadosUrl url;
  const size_t slash = rest.find('/');
  url.pool = std::string(rest.substr(0, slash));
  if (slash != absl::string_view::npos) url.ns = std::string(rest.substr(slash + 1));
  auto check = [&](const std::string& part, absl::string_view what,
                   bool may_be_empty) -> absl::Status {
    if (part.empty() && !may_be_empty) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "' names no ", what, " (rados:POOL[/NAMESPACE])"));
    }
    for (char c : part) {
      if (!IsNameChar(c)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", text, "': the ", what, " may hold only letters, digits, '.', '_' and '-'"));
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status st = check(url.pool, "pool", false); !st.ok()) return st;
  if (slash != absl::string_view::npos) {
    if (absl::Status st = check(url.ns, "namespace", false); !st.ok()) return st;
  }
  return url;
}

absl::Status CheckPoolName(absl::string_view pool) {
  if (pool.empty() || !std::all_of(pool.begin(), pool.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", pool, "' is not a pool name: letters, digits, '.', '_' and '-', at least one"));
  }
  return absl::OkStatus();
}

std::string PackObject(uint32_t pack_id) { return absl::StrFormat("pack.%08x", pack_id); }

std::string IndexObject(uint32_t shard) { return absl::StrFormat("index.%04x", shard); }

uint32_t IndexShard(const codec::ChunkId& id, uint32_t shards) {
  return static_cast<uint32_t>(id.lo & 0xffff) % shards;
}

std::string ManifestPartObject(absl::string_view backup_uuid, uint64_t tag, uint32_t part) {
  return absl::StrFormat("manifest.%s.%016x.%u", backup_uuid, tag, part);
}

std::string IndexKey(const codec::ChunkId& id) {
  std::string key(codec::kChunkIdSize, '\0');
  id.EncodeTo(reinterpret_cast<uint8_t*>(key.data()));
  return key;
}

absl::StatusOr<codec::ChunkId> ParseIndexKey(absl::string_view key) {
  if (key.size() != codec::kChunkIdSize) {
    return absl::DataLossError(absl::StrCat("index key of ", key.size(), " bytes, not 16"));
  }
  return codec::ChunkId::DecodeFrom(reinterpret_cast<const uint8_t*>(key.data()));
}

std::string EncodeIndexValue(const RecordLocation& loc) {
  std::string v;
  PutU32(&v, loc.pack);
  PutU32(&v, loc.size);
  PutU64(&v, loc.offset);
  return v;
}

absl::StatusOr<RecordLocation> DecodeIndexValue(absl::string_view value) {
  if (value.size() != kIndexValueSize) {
    return absl::DataLossError(absl::StrCat("index value of ", value.size(), " bytes, not 16"));
  }
  ByteReader r(value);
  RecordLocation loc;
  loc.pack = r.U32();
  loc.size = r.U32();
  loc.offset = r.U64();
  if (loc.pack == 0 || loc.size < codec::kRecordFixedHeaderSize || loc.offset < kPackHeaderSize ||
      loc.offset > (uint64_t{1} << 40)) {
    return absl::DataLossError("index value names no record a pack can hold");
  }
  return loc;
}

std::string GroupKey(absl::string_view uuid) { return absl::StrCat(kGroupPrefix, uuid); }
std::string BackupKey(absl::string_view uuid) { return absl::StrCat(kBackupPrefix, uuid); }
std::string DeletingKey(absl::string_view uuid) { return absl::StrCat(kDeletingPrefix, uuid); }

uint32_t ManifestRef::parts() const {
  return static_cast<uint32_t>((length + kManifestPartBytes - 1) / kManifestPartBytes);
}

namespace {

void AppendManifestRef(std::string* out, const ManifestRef& ref) {
  PutU64(out, ref.tag);
  PutU64(out, ref.length);
  PutU64(out, ref.checksum);
  std::string kv;
  EncodeKv(MetaToKv(ref.meta), &kv);
  PutString(out, kv);
}

absl::StatusOr<ManifestRef> ReadManifestRef(ByteReader& r, absl::string_view what) {
  ManifestRef ref;
  ref.tag = r.U64();
  ref.length = r.U64();
  ref.checksum = r.U64();
  const uint32_t kv_len = r.U32();
  if (!r.ok() || kv_len > r.remaining()) {
    return absl::DataLossError(absl::StrCat(what, ": manifest reference is cut short"));
  }
  ByteReader kv_reader(r.Bytes(kv_len));
  auto kv = DecodeKv(kv_reader, what);
  if (!kv.ok()) return kv.status();
  auto meta = MetaFromKv(*kv, what);
  if (!meta.ok()) return meta.status();
  ref.meta = *std::move(meta);
  if (ref.length == 0 || ref.length > kMaxManifestBytes) {
    return absl::DataLossError(absl::StrCat(what, ": manifest length out of range"));
  }
  return ref;
}

}  // namespace

std::string EncodeManifestRef(const ManifestRef& ref) {
  std::string out(1, static_cast<char>(kManifestRefVersion));
  AppendManifestRef(&out, ref);
  return out;
}

absl::StatusOr<ManifestRef> DecodeManifestRef(absl::string_view bytes, absl::string_view what) {
  ByteReader r(bytes);
  if (r.U8() != kManifestRefVersion) {
    return absl::DataLossError(absl::StrCat(what, ": unknown manifest reference version"));
  }
  auto ref = ReadManifestRef(r, what);
  if (!ref.ok()) return ref.status();
  if (r.remaining() != 0) {
    return absl::DataLossError(absl::StrCat(what, ": trailing bytes after a manifest reference"));
  }
  return ref;
}

std::string EncodePendingDelete(const PendingDelete& pending) {
  std::string out(1, static_cast<char>(kPendingDeleteVersion));
  PutU32(&out, static_cast<uint32_t>(pending.manifests.size()));
  for (const auto& [uuid, ref] : pending.manifests) {
    PutString(&out, uuid);
    AppendManifestRef(&out, ref);
  }
  return out;
}

absl::StatusOr<PendingDelete> DecodePendingDelete(absl::string_view bytes, absl::string_view what) {
  ByteReader r(bytes);
  if (r.U8() != kPendingDeleteVersion) {
    return absl::DataLossError(absl::StrCat(what, ": unknown pending delete version"));
  }
  const uint32_t n = r.U32();
  PendingDelete pending;
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    const uint32_t len = r.U32();
    if (!r.ok() || len > r.remaining()) break;
    std::string uuid(r.Bytes(len));
    if (!IsValidUuid(uuid)) {
      return absl::DataLossError(absl::StrCat(what, ": a pending delete names a bad uuid"));
    }
    auto ref = ReadManifestRef(r, what);
    if (!ref.ok()) return ref.status();
    pending.manifests.emplace_back(std::move(uuid), *std::move(ref));
  }
  if (!r.ok() || pending.manifests.size() != n || r.remaining() != 0) {
    return absl::DataLossError(absl::StrCat(what, ": pending delete is damaged"));
  }
  return pending;
}

}  // namespace chunkferry::engine::rados
