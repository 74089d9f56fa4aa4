#include "engine/format/volume_backup.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codec/chunk_id.h"
#include "engine/format/byte_io.h"

namespace chunkferry::engine {
namespace {

constexpr char kGroupMagic[4] = {'C', 'F', 'G', 'R'};
constexpr uint16_t kGroupVersion = 1;

bool OneOf(absl::string_view v, std::initializer_list<absl::string_view> allowed) {
  for (auto a : allowed) {
    if (v == a) return true;
  }
  return false;
}

}  // namespace

bool IsValidUuid(absl::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string NewUuid() {
  // 128 bits from the kernel's CSPRNG on every call: no user-space generator whose state a fork
  // would copy or whose seed (32 bits from std::random_device) would make two processes collide.
  uint8_t bytes[16];
  size_t have = 0;
  while (have < sizeof(bytes)) {
    const ssize_t n = ::getrandom(bytes + have, sizeof(bytes) - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // Only without the syscall (Linux < 3.17): no uuid is better than a guessable one.
      std::perror("chunkferry: getrandom");
      std::abort();
    }
    have += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < sizeof(bytes); ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return out;
}

absl::Status ValidateMeta(const VolumeBackupMeta& m) {
  auto bad_uuid = [](absl::string_view field, absl::string_view v) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " '", v, "' is not a uuid (32 lowercase hex characters, no dashes)"));
  };
  if (!IsValidUuid(m.uuid)) return bad_uuid("uuid", m.uuid);
  if (!IsValidUuid(m.volume_uuid)) return bad_uuid("volumeUuid", m.volume_uuid);
  if (!IsValidUuid(m.group_uuid)) return bad_uuid("groupUuid", m.group_uuid);
  if (m.vm_instance_uuid && !IsValidUuid(*m.vm_instance_uuid)) {
    return bad_uuid("vmInstanceUuid", *m.vm_instance_uuid);
  }
  if (!OneOf(m.type, {"Root", "Data", "Memory", "Cache"})) {
    return absl::InvalidArgumentError(
        absl::StrCat("type '", m.type, "' is not one of Root, Data, Memory, Cache"));
  }
  if (!OneOf(m.mode, {"full", "incremental", "auto"})) {
    return absl::InvalidArgumentError(
        absl::StrCat("mode '", m.mode, "' is not one of full, incremental, auto"));
  }
  return absl::OkStatus();
}

KvPairs MetaToKv(const VolumeBackupMeta& m) {
  KvPairs kv;
  auto add = [&kv](std::string k, std::string v) { kv.emplace_back(std::move(k), std::move(v)); };
  auto add_opt = [&add](std::string k, const std::optional<std::string>& v) {
    if (v) add(std::move(k), *v);
  };
  add("uuid", m.uuid);
  add("volumeUuid", m.volume_uuid);
  add_opt("name", m.name);
  add_opt("description", m.description);
  add("type", m.type);
  add("state", m.state);
  add("status", m.status);
  add("size", absl::StrCat(m.size));
  add_opt("metadata", m.metadata);
  add("groupUuid", m.group_uuid);
  add("mode", m.mode);
  add_opt("vmInstanceUuid", m.vm_instance_uuid);
  add("createDate", absl::StrCat(m.create_date));
  add("lastOpDate", absl::StrCat(m.last_op_date));
  add("installPath", m.install_path);
  add("chunker", m.chunker);
  for (const auto& e : m.extra) kv.push_back(e);
  return kv;
}

absl::StatusOr<VolumeBackupMeta> MetaFromKv(const KvPairs& kv, absl::string_view what) {
  VolumeBackupMeta m;
  bool have_uuid = false, have_size = false;
  for (const auto& [k, v] : kv) {
    if (k == "uuid") {
      m.uuid = v;
      have_uuid = true;
    } else if (k == "volumeUuid") {
      m.volume_uuid = v;
    } else if (k == "name") {
      m.name = v;
    } else if (k == "description") {
      m.description = v;
    } else if (k == "type") {
      m.type = v;
    } else if (k == "state") {
      m.state = v;
    } else if (k == "status") {
      m.status = v;
    } else if (k == "size") {
      if (!absl::SimpleAtoi(v, &m.size)) {
        return absl::DataLossError(absl::StrCat(what, ": size '", v, "' is not a number"));
      }
      have_size = true;
    } else if (k == "metadata") {
      m.metadata = v;
    } else if (k == "groupUuid") {
      m.group_uuid = v;
    } else if (k == "mode") {
      m.mode = v;
    } else if (k == "vmInstanceUuid") {
      m.vm_instance_uuid = v;
    } else if (k == "createDate" || k == "lastOpDate") {
      int64_t t = 0;
      if (!absl::SimpleAtoi(v, &t)) {
        return absl::DataLossError(absl::StrCat(what, ": ", k, " '", v, "' is not a number"));
      }
      (k == "createDate" ? m.create_date : m.last_op_date) = t;
    } else if (k == "installPath") {
      m.install_path = v;
    } else if (k == "chunker") {
      m.chunker = v;
    } else {
      m.extra.emplace_back(k, v);
    }
  }
  if (!have_uuid || !have_size) {
    return absl::DataLossError(absl::StrCat(what, ": metadata lacks uuid or size"));
  }
  return m;
}

std::string DefaultInstallPath(absl::string_view group_uuid, absl::string_view backup_uuid) {
  return absl::StrCat("chunkferry://volume-backups/", group_uuid, "/", backup_uuid);
}

bool GroupOnlyGrows(const GroupRecord& old, const GroupRecord& grown) {
  size_t kept = 0;
  for (const auto& v : grown.volume_uuids) {
    if (kept < old.volume_uuids.size() && v == old.volume_uuids[kept]) ++kept;
  }
  return kept == old.volume_uuids.size() && old.group_uuid == grown.group_uuid &&
         old.vm_instance_uuid == grown.vm_instance_uuid && old.create_date == grown.create_date;
}

std::string EncodeGroup(const GroupRecord& g) {
  std::string out(kGroupMagic, sizeof(kGroupMagic));
  PutU16(&out, kGroupVersion);
  PutU16(&out, 0);
  KvPairs kv;
  kv.emplace_back("groupUuid", g.group_uuid);
  if (g.vm_instance_uuid) kv.emplace_back("vmInstanceUuid", *g.vm_instance_uuid);
  kv.emplace_back("createDate", absl::StrCat(g.create_date));
  for (const auto& v : g.volume_uuids) kv.emplace_back("volume", v);
  EncodeKv(kv, &out);
  PutU64(&out, codec::Checksum64(AsBytes(out)));
  return out;
}

absl::StatusOr<GroupRecord> DecodeGroup(absl::string_view bytes, absl::string_view what) {
  if (bytes.size() < 16 || bytes.substr(0, 4) != absl::string_view(kGroupMagic, 4)) {
    return absl::DataLossError(absl::StrCat(what, ": not a group record (bad magic or too short)"));
  }
  const uint64_t stored =
      LoadU64(reinterpret_cast<const uint8_t*>(bytes.data() + bytes.size() - 8));
  if (codec::Checksum64(AsBytes(bytes.substr(0, bytes.size() - 8))) != stored) {
    return absl::DataLossError(absl::StrCat(what, ": checksum mismatch"));
  }
  ByteReader r(bytes.substr(0, bytes.size() - 8));
  r.Take(4);
  const uint16_t version = r.U16();
  r.U16();
  if (version != kGroupVersion) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": group record version ", version,
                                                      " is not supported (this build reads ",
                                                      kGroupVersion, ")"));
  }
  auto kv = DecodeKv(r, what);
  if (!kv.ok()) return kv.status();
  GroupRecord g;
  for (const auto& [k, v] : *kv) {
    if (k == "groupUuid") {
      g.group_uuid = v;
    } else if (k == "vmInstanceUuid") {
      g.vm_instance_uuid = v;
    } else if (k == "createDate") {
      if (!absl::SimpleAtoi(v, &g.create_date)) {
        return absl::DataLossError(absl::StrCat(what, ": createDate is not a number"));
      }
    } else if (k == "volume") {
      g.volume_uuids.push_back(v);
    }
  }
  if (!IsValidUuid(g.group_uuid)) {
    return absl::DataLossError(absl::StrCat(what, ": group uuid is missing or malformed"));
  }
  for (const auto& v : g.volume_uuids) {
    if (!IsValidUuid(v)) {
      return absl::DataLossError(absl::StrCat(what, ": volume uuid '", v, "' is malformed"));
    }
  }
  return g;
}

}  // namespace chunkferry::engine
