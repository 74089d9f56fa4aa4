#include "control/access_key.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "control/platform_time.h"
#include "io/fd.h"

namespace chunkferry::control {
namespace {

constexpr size_t kMaxIdLength = 128;
constexpr size_t kMaxSecretLength = 256;
// The servlet context path: not signed.
constexpr absl::string_view kContextPath = "/zstack";

bool SameSecret(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool IsKeyId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

bool IsSecret(absl::string_view s) {
  if (s.empty() || s.size() > kMaxSecretLength) return false;
  for (char c : s) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace

const AccessKey* AccessKeys::Find(absl::string_view id) const {
  const AccessKey* found = nullptr;
  for (const AccessKey& k : keys) {
    if (SameSecret(k.id, id)) found = &k;
  }
  return found;
}

absl::StatusOr<std::vector<AccessKey>> ParseAccessKeyFile(absl::string_view text,
                                                          absl::string_view origin) {
  std::vector<AccessKey> keys;
  std::set<std::string> ids;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    const auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ":", line_no, ": ", what));
    };
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    const std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    if (words.size() < 2 || words.size() > 3) {
      return bad("expected \"ID SECRET [enabled|disabled]\"");
    }
    AccessKey key;
    key.id = std::string(words[0]);
    key.secret = std::string(words[1]);
    if (!IsKeyId(key.id)) return bad("the id must be 1-128 of A-Z a-z 0-9 . _ -");
    if (!IsSecret(key.secret)) {
      return bad("the secret must be 1-256 printable ASCII characters without spaces");
    }
    if (words.size() == 3) {
      if (words[2] == "enabled") {
        key.enabled = true;
      } else if (words[2] == "disabled") {
        key.enabled = false;
      } else {
        return bad(absl::StrCat("the state must be enabled or disabled, not \"", words[2], "\""));
      }
    }
    if (!ids.insert(key.id).second) return bad(absl::StrCat("duplicate id ", key.id));
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<std::vector<AccessKey>> LoadAccessKeyFile(const std::string& path) {
  absl::StatusOr<std::string> text = io::ReadPrivateFile(path, "access-key file");
  if (!text.ok()) return text.status();
  return ParseAccessKeyFile(*text, path);
}

std::string AccessKeySignature(absl::string_view secret, absl::string_view method,
                               absl::string_view date, absl::string_view signed_path) {
  const std::string to_sign = absl::StrCat(method, "\n", date, "\n", signed_path);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(to_sign.data()), to_sign.size(), mac, &mac_len);
  return absl::Base64Escape(
      absl::string_view(reinterpret_cast<const char*>(mac), static_cast<size_t>(mac_len)));
}

AccessKeyAnswer CheckAccessKey(const AccessKeys& keys, absl::string_view method,
                               absl::string_view path, absl::string_view credential,
                               const std::string* date, absl::Time now) {
  const auto answer = [](int status, std::string text) {
    return AccessKeyAnswer{status, std::move(text), std::string()};
  };
  // The platform's texts, spelling included: its SDK shows them to the caller as they are.
  if (date == nullptr) return answer(400, "'Date' must be incuded in request header");
  absl::StatusOr<RequestDate> parsed = ParseRequestDate(*date);
  if (!parsed.ok()) {
    return answer(400, "'Date' format error, correct format is 'EEE, dd MMM yyyy HH:mm:ss z'");
  }
  // Default: the digits written against the server's own wall clock, whatever zone was written.
  const absl::Time sent = keys.check_time_zone ? absl::FromCivil(parsed->wall, parsed->zone)
                                               : absl::FromCivil(parsed->wall, keys.server_zone);
  if (absl::AbsDuration(now - sent) > kAllowedSkew) return answer(403, "requestTimeTooSkewed");
  const std::vector<absl::string_view> parts = absl::StrSplit(credential, ':');
  if (parts.size() != 2) return answer(400, "accessKey format is 'ZStack AccessKeyId:Signature'");
  const AccessKey* key = keys.Find(parts[0]);
  if (key == nullptr || !key->enabled) {
    return answer(403, absl::StrCat("access key id: ", parts[0], " does not existed or disabled"));
  }
  absl::string_view signed_path = path;
  if (absl::StartsWith(signed_path, absl::StrCat(kContextPath, "/"))) {
    signed_path.remove_prefix(kContextPath.size());
  }
  const std::string expected = AccessKeySignature(key->secret, method, *date, signed_path);
  if (!SameSecret(expected, parts[1])) return answer(403, "wrong accessKey signature");
  return AccessKeyAnswer{0, std::string(), key->id};
}

}  // namespace chunkferry::control
