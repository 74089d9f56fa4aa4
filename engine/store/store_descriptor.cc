#include "engine/store/store_descriptor.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"

namespace chunkferry::engine {
namespace {

constexpr char kFormatName[] = "chunkferry-store";
constexpr int kFormatVersion = 1;

bool IsCommonKey(absl::string_view key) {
  return key == "format" || key == "version" || key == "uuid" || key == "chunker" ||
         key == "zstd_level" || key == "record_target";
}

}  // namespace

std::string FormatStoreDescriptor(const StoreInfo& info, const DescriptorExtras& extras) {
  std::string text =
      absl::StrCat("format=", kFormatName, "\nversion=", kFormatVersion, "\nuuid=", info.uuid,
                   "\nchunker=", info.chunker.ToString(), "\nzstd_level=", info.zstd_level,
                   "\nrecord_target=", info.record_target, "\n");
  for (const auto& [key, value] : extras) absl::StrAppend(&text, key, "=", value, "\n");
  return text;
}

absl::StatusOr<StoreInfo> ParseStoreDescriptor(const std::string& text, absl::string_view where,
                                               DescriptorExtras* extras) {
  StoreInfo info;
  bool have_format = false, have_version = false, have_uuid = false, have_chunker = false;
  auto bad = [where](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("store descriptor ", where, ": ", why));
  };
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos)
      return bad(absl::StrCat("line '", line, "' is not key=value"));
    const absl::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "format") {
      if (value != kFormatName)
        return bad(absl::StrCat("format '", value, "' is not ", kFormatName));
      have_format = true;
    } else if (key == "version") {
      int v = 0;
      if (!absl::SimpleAtoi(value, &v)) return bad("version is not a number");
      if (v != kFormatVersion) {
        return absl::FailedPreconditionError(absl::StrCat("store ", where, " has format version ",
                                                          v, "; this build reads version ",
                                                          kFormatVersion));
      }
      have_version = true;
    } else if (key == "uuid") {
      if (!IsValidUuid(value)) return bad("uuid is malformed");
      info.uuid = std::string(value);
      have_uuid = true;
    } else if (key == "chunker") {
      auto spec = codec::ChunkerSpec::Parse(std::string(value));
      if (!spec.ok()) return bad(spec.status().message());
      info.chunker = *spec;
      have_chunker = true;
    } else if (key == "zstd_level") {
      if (!absl::SimpleAtoi(value, &info.zstd_level)) return bad("zstd_level is not a number");
    } else if (key == "record_target") {
      if (!absl::SimpleAtoi(value, &info.record_target) || info.record_target == 0 ||
          info.record_target > codec::kMaxRecordRawLength) {
        return bad("record_target is out of range");
      }
    } else if (extras != nullptr && !IsCommonKey(key) && !extras->count(std::string(key))) {
      (*extras)[std::string(key)] = std::string(value);
    } else {
      return bad(absl::StrCat("unknown or repeated key '", key, "'"));
    }
  }
  if (!have_format || !have_version || !have_uuid || !have_chunker) {
    return bad("format, version, uuid or chunker is missing");
  }
  return info;
}

absl::StatusOr<StoreInfo> NewStoreInfo(const StoreInitOptions& options) {
  StoreInfo info;
  info.uuid = options.uuid.empty() ? NewUuid() : options.uuid;
  if (!IsValidUuid(info.uuid)) {
    return absl::InvalidArgumentError(absl::StrCat("store uuid '", info.uuid, "' is malformed"));
  }
  info.chunker = options.chunker;
  info.zstd_level = options.zstd_level;
  info.record_target = options.record_target;
  if (info.record_target == 0 || info.record_target > codec::kMaxRecordRawLength) {
    return absl::InvalidArgumentError("record target must be between 1 byte and 16 MiB");
  }
  if (!options.id_key_hex.empty()) {
    for (char c : options.id_key_hex) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError("id key must be hex");
      }
    }
    if (options.id_key_hex.size() < 32 || options.id_key_hex.size() % 2 != 0) {
      return absl::InvalidArgumentError("id key must be at least 16 bytes (32 hex characters)");
    }
  }
  return info;
}

absl::StatusOr<codec::ChunkHasher> HasherFromIdKey(absl::string_view text) {
  const absl::string_view hex = absl::StripAsciiWhitespace(text);
  const std::string bytes = absl::HexStringToBytes(hex);
  return codec::ChunkHasher::Make(AsBytes(bytes));
}

}  // namespace chunkferry::engine
