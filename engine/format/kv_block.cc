#include "engine/format/kv_block.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace chunkferry::engine {

absl::Status CheckKv(const KvPairs& pairs) {
  if (pairs.size() > kMaxKvPairs) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata has ", pairs.size(), " fields; at most ", kMaxKvPairs));
  }
  for (const auto& [k, v] : pairs) {
    if (k.size() > 0xffff || v.size() > kMaxKvValue) {
      return absl::InvalidArgumentError(absl::StrCat("metadata field '", k.substr(0, 64),
                                                     "' is too long (", v.size(),
                                                     " bytes; at most ", kMaxKvValue, ")"));
    }
  }
  return absl::OkStatus();
}

void EncodeKv(const KvPairs& pairs, std::string* out) {
  PutU32(out, static_cast<uint32_t>(pairs.size()));
  for (const auto& [k, v] : pairs) {
    PutU16(out, static_cast<uint16_t>(k.size()));
    out->append(k);
    PutU32(out, static_cast<uint32_t>(v.size()));
    out->append(v);
  }
}

absl::StatusOr<KvPairs> DecodeKv(ByteReader& reader, absl::string_view what) {
  const uint32_t count = reader.U32();
  if (!reader.ok() || count > kMaxKvPairs) {
    return absl::DataLossError(absl::StrCat(what, ": metadata block is damaged (pair count)"));
  }
  KvPairs pairs;
  pairs.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint16_t klen = reader.U16();
    std::string key(reader.Bytes(klen));
    const uint32_t vlen = reader.U32();
    if (!reader.ok() || vlen > kMaxKvValue) {
      return absl::DataLossError(absl::StrCat(what, ": metadata block is damaged at pair ", i));
    }
    std::string value(reader.Bytes(vlen));
    if (!reader.ok()) {
      return absl::DataLossError(absl::StrCat(what, ": metadata block is truncated at pair ", i));
    }
    pairs.emplace_back(std::move(key), std::move(value));
  }
  return pairs;
}

}  // namespace chunkferry::engine
