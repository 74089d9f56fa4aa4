#include "engine/wire/key_authority.h"

#include <openssl/crypto.h>

#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "io/fd.h"

namespace chunkferry::engine {

KeyAuthority::KeyAuthority(KeyRing keys, std::string usage_path)
    : usage_path_(std::move(usage_path)), keys_(std::make_shared<const KeyRing>(std::move(keys))) {}

absl::Status KeyAuthority::LoadUsage() {
  if (usage_path_.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> text = io::ReadFileToString(usage_path_);
  if (absl::IsNotFound(text.status())) return absl::OkStatus();
  if (!text.ok()) return text.status();
  std::map<std::string, uint64_t> used;
  size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
    uint64_t bytes = 0;
    if (words.size() != 2 || !CheckKeyName(words[0]).ok() || !absl::SimpleAtoi(words[1], &bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("key usage file ", usage_path_, " line ",
                                                     line_number, " is not `name bytes`"));
    }
    used[std::string(words[0])] = bytes;
  }
  std::lock_guard<std::mutex> lock(mu_);
  used_ = std::move(used);
  return absl::OkStatus();
}

std::shared_ptr<const KeyRing> KeyAuthority::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_;
}

void KeyAuthority::Replace(KeyRing keys) {
  auto ring = std::make_shared<const KeyRing>(std::move(keys));
  std::lock_guard<std::mutex> lock(mu_);
  keys_ = std::move(ring);
}

absl::Status KeyAuthority::Check(absl::string_view name, const AuthKey& proven,
                                 MsgType type) const {
  const uint32_t needed = RightsFor(type);
  std::shared_ptr<const KeyRing> ring = keys();
  const ClientKey* key = ring->Find(name);
  if (key == nullptr ||
      CRYPTO_memcmp(key->key.bytes.data(), proven.bytes.data(), proven.bytes.size()) != 0) {
    return absl::UnauthenticatedError(
        absl::StrCat("key '", std::string(name), "' was revoked or replaced"));
  }
  if (needed != 0 && (key->rights & needed) == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("key '", key->name, "' (rights: ", FormatRights(key->rights),
                     ") may not send ", std::string(MsgTypeName(type))));
  }
  return absl::OkStatus();
}

absl::Status KeyAuthority::CheckQuota(absl::string_view name, uint64_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  const ClientKey* key = keys_->Find(name);
  if (key == nullptr || key->quota_bytes == 0) return absl::OkStatus();
  const auto it = used_.find(std::string(name));
  const uint64_t used = it == used_.end() ? 0 : it->second;
  if (used > key->quota_bytes || bytes > key->quota_bytes - used) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota of key '", key->name, "' used up: it has added ", used, " of its ",
                     key->quota_bytes, " bytes, and this request brings up to ", bytes));
  }
  return absl::OkStatus();
}

void KeyAuthority::Charge(absl::string_view name, uint64_t bytes) {
  if (bytes == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  used_[std::string(name)] += bytes;
  ++charges_;
}

uint64_t KeyAuthority::used(absl::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = used_.find(std::string(name));
  return it == used_.end() ? 0 : it->second;
}

absl::Status KeyAuthority::SaveUsage() {
  if (usage_path_.empty()) return absl::OkStatus();
  std::lock_guard<std::mutex> save_lock(save_mu_);
  std::string text;
  uint64_t charges = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (charges_ == saved_charges_) return absl::OkStatus();
    charges = charges_;
    for (const auto& [name, bytes] : used_) absl::StrAppend(&text, name, " ", bytes, "\n");
  }
  absl::Status st = io::WriteFileAtomic(usage_path_, text);
  if (st.ok()) saved_charges_ = charges;
  return st;
}

}  // namespace chunkferry::engine
