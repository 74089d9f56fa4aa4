#include "engine/wire/key_ring.h"

#include <openssl/crypto.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "io/fd.h"
#include "io/size.h"

namespace chunkferry::engine {
namespace {

struct RightName {
  absl::string_view name;
  uint32_t bits;
};
constexpr RightName kRightNames[] = {
    {"read", kRightRead},
    {"append", kRightAppend},
    {"delete", kRightDelete},
    {"admin", kAllRights},
};

absl::StatusOr<uint32_t> ParseRights(absl::string_view text) {
  uint32_t rights = 0;
  for (absl::string_view word : absl::StrSplit(text, ',')) {
    bool known = false;
    for (const RightName& r : kRightNames) {
      if (word == r.name) {
        rights |= r.bits;
        known = true;
      }
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("unknown right '", std::string(word),
                                                     "' (rights are read, append, delete, admin)"));
    }
  }
  return rights;
}

// Applies one `limit=value` word to `key`.
absl::Status ParseLimit(absl::string_view word, ClientKey* key) {
  const size_t eq = word.find('=');
  if (eq == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(word), "' is not limit=value"));
  }
  const absl::string_view name = word.substr(0, eq);
  absl::StatusOr<uint64_t> value =
      io::ParseSize(std::string_view(word.data() + eq + 1, word.size() - eq - 1));
  if (!value.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": ", value.status().message()));
  }
  if (name == "connections") {
    if (*value == 0 || *value > 65536) {
      return absl::InvalidArgumentError("connections must be from 1 to 65536");
    }
    key->max_connections = static_cast<size_t>(*value);
  } else if (name == "inflight") {
    if (*value < kMinMaxFrame) {
      return absl::InvalidArgumentError(
          absl::StrCat("inflight must be at least ", kMinMaxFrame, " bytes (one frame)"));
    }
    key->max_inflight = *value;
  } else if (name == "quota") {
    if (*value == 0) return absl::InvalidArgumentError("quota must be positive");
    key->quota_bytes = *value;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown limit '", std::string(name),
                                                   "' (limits are connections, inflight, quota)"));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t RightsFor(MsgType type) {
  switch (type) {
    case MsgType::kHave:
      // A reader asks what exists before it reads; an appender, what to send.
      return kRightRead | kRightAppend | kRightAdmin;
    case MsgType::kGetGroup:
    case MsgType::kListGroups:
    case MsgType::kListBackups:
      // Group records are metadata: a replica must see which groups the destination holds to
      // send only the missing ones and deltas against what is there.
      return kRightRead | kRightAppend | kRightAdmin;
    case MsgType::kRead:
    case MsgType::kOpenManifest:
      return kRightRead | kRightAdmin;
    case MsgType::kAppend:
    case MsgType::kFlush:
    case MsgType::kPutManifest:
    case MsgType::kPutManifestDelta:
    case MsgType::kPutGroup:
      return kRightAppend | kRightAdmin;
    case MsgType::kDelete:
      return kRightDelete | kRightAdmin;
    case MsgType::kGc:
      return kRightAdmin;
    default:
      return 0;
  }
}

std::string FormatRights(uint32_t rights) {
  if ((rights & kRightAdmin) != 0) return "admin";
  std::vector<absl::string_view> names;
  for (const RightName& r : kRightNames) {
    if (r.bits != kAllRights && (rights & r.bits) != 0) names.push_back(r.name);
  }
  return names.empty() ? "none" : absl::StrJoin(names, ",");
}

absl::Status CheckKeyName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxKeyNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("a key name has 1 to ", kMaxKeyNameLength, " characters"));
  }
  for (const char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "key name '", std::string(name), "' may hold only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

KeyRing KeyRing::Single(const AuthKey& key) {
  KeyRing ring;
  ClientKey& k = ring.keys_.emplace_back();
  k.name = std::string(kDefaultKeyName);
  k.key = key;
  k.key.name.clear();
  k.rights = kAllRights;
  return ring;
}

absl::StatusOr<KeyRing> KeyRing::Parse(absl::string_view text, absl::string_view path) {
  KeyRing ring;
  size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(path), " line ", line_number, ": ", std::string(why)));
    };
    if (words.size() < 3) return bad("expected: name rights key [limit=value ...]");
    ClientKey key;
    if (absl::Status st = CheckKeyName(words[0]); !st.ok()) return bad(st.message());
    key.name = std::string(words[0]);
    absl::StatusOr<uint32_t> rights = ParseRights(words[1]);
    if (!rights.ok()) return bad(rights.status().message());
    key.rights = *rights;
    // The secret is never quoted back: the error says only where it is wrong.
    absl::StatusOr<AuthKey> secret = ParseKeyHex(words[2]);
    if (!secret.ok()) return bad(absl::StrCat("the key: ", secret.status().message()));
    key.key = *secret;
    key.key.name = key.name;
    for (size_t i = 3; i < words.size(); ++i) {
      if (absl::Status st = ParseLimit(words[i], &key); !st.ok()) return bad(st.message());
    }
    for (const ClientKey& other : ring.keys_) {
      if (other.name == key.name) {
        return bad(absl::StrCat("key name '", key.name, "' is used twice"));
      }
      // Two names for one secret would let its holder pick either name's rights.
      if (CRYPTO_memcmp(other.key.bytes.data(), key.key.bytes.data(), key.key.bytes.size()) == 0) {
        return bad(absl::StrCat("the key of '", key.name, "' is also the key of '", other.name,
                                "'; give every name its own key"));
      }
    }
    ring.keys_.push_back(std::move(key));
  }
  if (ring.keys_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(path), " holds no key (lines: name rights key [limits])"));
  }
  return ring;
}

absl::StatusOr<KeyRing> KeyRing::Load(const std::string& path) {
  // Bounded (1 MiB: thousands of keys) and refused when others may read it.
  absl::StatusOr<std::string> text = io::ReadPrivateFile(path, "keys file");
  if (!text.ok()) return text.status();
  absl::StatusOr<KeyRing> ring = Parse(*text, absl::StrCat("keys file ", path));
  OPENSSL_cleanse(text->data(), text->size());
  return ring;
}

const ClientKey* KeyRing::Find(absl::string_view name) const {
  for (const ClientKey& k : keys_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

}  // namespace chunkferry::engine
