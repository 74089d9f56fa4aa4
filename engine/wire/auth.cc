#include "engine/wire/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "engine/wire/key_ring.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kKeyHexLength = 2 * kAuthKeySize;
// Longest key file read: a name, a space, the hex, "\n", and one more byte to tell "too long"
// apart.
constexpr size_t kKeyFileReadLimit = kMaxKeyNameLength + 1 + kKeyHexLength + 2;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "chunkferry: fatal: %s failed\n", what);
  std::abort();
}

// Writes all of `data` to `fd`, retrying short writes and EINTR.
absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::ErrnoStatus(errno, "write", path);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// fsyncs the directory that holds `path`, so that the new file's name is durable.
absl::Status SyncParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? std::string(".") : (slash == 0 ? "/" : path.substr(0, slash));
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return io::ErrnoStatus(errno, "fsync", dir);
  return absl::OkStatus();
}

// Parses a key file's text: "[NAME ]HEX" and an optional final "\n". `read_limit` is how much
// was read at most (reaching it means the file is longer).
absl::StatusOr<AuthKey> ParseKeyText(absl::string_view text, size_t read_limit) {
  if (text.size() >= read_limit) {
    return absl::InvalidArgumentError(absl::StrCat("expected [NAME ]", kKeyHexLength,
                                                   " hex characters and a newline, found ",
                                                   "more than ", read_limit - 1, " bytes"));
  }
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  std::string name;
  if (const size_t space = text.find(' '); space != absl::string_view::npos) {
    name = std::string(text.substr(0, space));
    if (absl::Status st = CheckKeyName(name); !st.ok()) return st;
    text.remove_prefix(space + 1);
  }
  absl::StatusOr<AuthKey> key = ParseKeyHex(text);
  if (!key.ok()) return key.status();
  key->name = std::move(name);
  return key;
}

}  // namespace

std::string FormatKeyFile(const AuthKey& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(key.name.size() + 1 + kKeyHexLength + 1);
  if (!key.name.empty()) absl::StrAppend(&out, key.name, " ");
  for (const uint8_t b : key.bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  out.push_back('\n');
  return out;
}

absl::Status WriteNewKeyFile(const std::string& path) {
  absl::StatusOr<AuthKey> key = NewAuthKey();
  if (!key.ok()) return key.status();
  absl::Status st = WriteKeyFile(path, *key);
  OPENSSL_cleanse(key->bytes.data(), key->bytes.size());
  return st;
}

absl::StatusOr<AuthKey> NewAuthKey() {
  AuthKey key;
  if (RAND_bytes(key.bytes.data(), static_cast<int>(key.bytes.size())) != 1) {
    return absl::InternalError("cannot make a key: OpenSSL's random generator failed");
  }
  return key;
}

absl::Status WriteKeyFile(const std::string& path, const AuthKey& key) {
  std::string text = FormatKeyFile(key);
  const int raw_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (raw_fd < 0) {
    const int err = errno;
    OPENSSL_cleanse(text.data(), text.size());
    if (err == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("key file ", path, " already exists; refusing to overwrite a key"));
    }
    return io::ErrnoStatus(err, "create key file", path);
  }
  io::Fd fd(raw_fd);
  absl::Status st;
  // The umask can only take bits away from 0600; fchmod makes the mode exact either way.
  if (::fchmod(fd.get(), 0600) != 0) st = io::ErrnoStatus(errno, "fchmod", path);
  if (st.ok()) st = WriteAll(fd.get(), text.data(), text.size(), path);
  OPENSSL_cleanse(text.data(), text.size());
  if (st.ok() && ::fsync(fd.get()) != 0) st = io::ErrnoStatus(errno, "fsync", path);
  if (st.ok()) st = fd.Close();
  if (st.ok()) st = SyncParentDir(path);
  if (!st.ok()) {
    fd.Reset();
    ::unlink(path.c_str());
  }
  return st;
}

absl::StatusOr<AuthKey> LoadKeyFile(const std::string& path) {
  // O_NONBLOCK: a FIFO planted at the path must not hang the open (no effect on regular files).
  const int raw_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (raw_fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("key file ", path, " does not exist"));
    }
    return io::ErrnoStatus(err, "open key file", path);
  }
  io::Fd fd(raw_fd);
  if (absl::Status st = io::CheckPrivateFile(fd.get(), "key file", path); !st.ok()) {
    if (absl::IsPermissionDenied(st)) {
      // Say what the key is worth to whoever reads it.
      return absl::PermissionDeniedError(
          absl::StrCat(st.message(), " (whoever reads the key can pose as any daemon or client)"));
    }
    return st;
  }

  char buf[kKeyFileReadLimit];
  size_t size = 0;
  while (size < sizeof(buf)) {
    const ssize_t n = ::read(fd.get(), buf + size, sizeof(buf) - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      OPENSSL_cleanse(buf, sizeof(buf));
      return io::ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  absl::StatusOr<AuthKey> key = ParseKeyText(absl::string_view(buf, size), sizeof(buf));
  OPENSSL_cleanse(buf, sizeof(buf));
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", path, " is not a key: ", key.status().message()));
  }
  return key;
}

absl::StatusOr<AuthKey> ParseKeyHex(absl::string_view hex) {
  if (hex.size() != kKeyHexLength) {
    return absl::InvalidArgumentError(absl::StrCat("expected [NAME ]", kKeyHexLength,
                                                   " hex characters and a newline, found ",
                                                   hex.size(), " hex characters"));
  }
  AuthKey key;
  for (size_t i = 0; i < kAuthKeySize; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      const size_t bad = hi < 0 ? 2 * i : 2 * i + 1;
      OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
      return absl::InvalidArgumentError(absl::StrCat("character ", bad + 1, " is not a hex digit"));
    }
    key.bytes[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return key;
}

Nonce RandomNonce() {
  Nonce nonce;
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) Die("RAND_bytes");
  return nonce;
}

std::array<uint8_t, 32> HmacSha256(absl::Span<const uint8_t> key, absl::Span<const uint8_t> data) {
  std::array<uint8_t, 32> out;
  unsigned int out_length = 0;
  // HMAC() accepts a null data pointer only with length 0; an empty span may carry one.
  static const uint8_t kEmpty = 0;
  const uint8_t* data_ptr = data.empty() ? &kEmpty : data.data();
  const uint8_t* key_ptr = key.empty() ? &kEmpty : key.data();
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), data_ptr, data.size(), out.data(),
           &out_length) == nullptr ||
      out_length != out.size()) {
    Die("HMAC-SHA256");
  }
  return out;
}

AuthProof Proof(const AuthKey& key, std::string_view label,
                std::span<const uint8_t, kNonceSize> client_nonce,
                std::span<const uint8_t, kNonceSize> server_nonce, std::string_view store_uuid) {
  std::string message;
  message.reserve(label.size() + 2 * kNonceSize + store_uuid.size());
  message.append(label.data(), label.size());
  message.append(reinterpret_cast<const char*>(client_nonce.data()), client_nonce.size());
  message.append(reinterpret_cast<const char*>(server_nonce.data()), server_nonce.size());
  message.append(store_uuid.data(), store_uuid.size());
  return HmacSha256(key.bytes, {reinterpret_cast<const uint8_t*>(message.data()), message.size()});
}

bool ProofEquals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  if (a.size() != b.size() || a.empty()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace chunkferry::engine
