// Mutual authentication of a store daemon and its clients with a shared key: challenge–response
// with HMAC-SHA256 (OpenSSL libcrypto), so no secret ever crosses the wire and a recorded
// exchange cannot be replayed. docs/PROTOCOL.md gives the handshake that uses these pieces.
//
// Key file: 64 lowercase hex characters (32 bytes) and "\n", mode 0600; or the name of the key
// (one of a daemon's keys file, key_ring.h), a space, the hex and "\n".
//
// All functions are thread-safe (OpenSSL 3 initialises itself).
#ifndef CHUNKFERRY_ENGINE_WIRE_AUTH_H_
#define CHUNKFERRY_ENGINE_WIRE_AUTH_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace chunkferry::engine {

inline constexpr size_t kAuthKeySize = 32;
inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kProofSize = 32;

// Labels of the two proofs. They differ, and have the same length, so that a proof made by one
// side can never be replayed as the other side's (domain separation).
inline constexpr std::string_view kServerProofLabel = "chunkferry-v1-server";
inline constexpr std::string_view kClientProofLabel = "chunkferry-v1-client";

using Nonce = std::array<uint8_t, kNonceSize>;
using AuthProof = std::array<uint8_t, kProofSize>;

// A secret that a daemon and its clients share, and the name the client gives it in HELLO.
struct AuthKey {
  std::array<uint8_t, kAuthKeySize> bytes{};
  // Empty for a daemon's single key ("default"); the name of one of a keys file's keys otherwise.
  std::string name;
};

// Creates a key file at `path` holding a fresh random key, with mode 0600. Never overwrites:
// an existing file is AlreadyExists. Other failures are the errno's Status naming the path; a
// partly written file is removed.
[[nodiscard]] absl::Status WriteNewKeyFile(const std::string& path);
// The same with a given key (FormatKeyFile: its name, when it has one, and its hex).
[[nodiscard]] absl::Status WriteKeyFile(const std::string& path, const AuthKey& key);
// A fresh random key from OpenSSL's CSPRNG; Internal when the CSPRNG fails.
[[nodiscard]] absl::StatusOr<AuthKey> NewAuthKey();

// Reads the key file at `path`. NotFound when it does not exist; PermissionDenied (saying
// "chmod 600") when group or others have any access to it, since anyone who reads the key can
// pose as any daemon or client; InvalidArgument when it is not a regular file, or not 64 hex
// characters (either case), optionally after a valid key name and a space, and an optional
// final "\n".
[[nodiscard]] absl::StatusOr<AuthKey> LoadKeyFile(const std::string& path);

// Parses a key written as 64 hex characters (either case), as in a key file or a keys file.
// InvalidArgument naming the first character that is not a hex digit, or the wrong length.
[[nodiscard]] absl::StatusOr<AuthKey> ParseKeyHex(absl::string_view hex);

// Formats `key` as the key file's text (64 lowercase hex characters and "\n").
std::string FormatKeyFile(const AuthKey& key);

// Returns 32 bytes from OpenSSL's CSPRNG. Aborts the process when the CSPRNG fails: a
// predictable nonce would silently break authentication.
Nonce RandomNonce();

// HMAC-SHA256 of `data` under `key` (any length).
std::array<uint8_t, 32> HmacSha256(absl::Span<const uint8_t> key, absl::Span<const uint8_t> data);

// Computes one side's proof: HMAC-SHA256(key, label || client_nonce || server_nonce ||
// store_uuid). `label` is kServerProofLabel or kClientProofLabel; every field but the last has a
// fixed length, so the concatenation is unambiguous.
AuthProof Proof(const AuthKey& key, std::string_view label,
                std::span<const uint8_t, kNonceSize> client_nonce,
                std::span<const uint8_t, kNonceSize> server_nonce, std::string_view store_uuid);

// Compares two proofs in time that does not depend on where they differ (CRYPTO_memcmp), so a
// peer cannot find a valid proof byte by byte. False when the sizes differ or are zero.
bool ProofEquals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_AUTH_H_
