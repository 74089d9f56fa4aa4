// The store daemon's client keys: several named keys, each with its own rights and limits, so
// that a replica may only append, a restore node may only read, and one leaked key does not give
// everything away. Read from a keys file (docs/SECURITY.md, "Keys file") that `chunkferry serve
// --keys` reloads on SIGHUP; a daemon started with one shared key file has a ring of one key
// named "default" with every right.
//
// Keys file: text, mode 0600, one key per line, `#` starts a comment:
//
//   # name      rights         key (64 hex)   limits (all optional)
//   replica-b   append         6f1c…e0        connections=4 inflight=64MiB quota=2TiB
//   restore-1   read           ab12…9f
//   ops         admin          77d0…41
//
// Immutable once made; thread-safe to share.
#ifndef CHUNKFERRY_ENGINE_WIRE_KEY_RING_H_
#define CHUNKFERRY_ENGINE_WIRE_KEY_RING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/wire/auth.h"
#include "engine/wire/wire_messages.h"

namespace chunkferry::engine {

// What a key may do, as bits of ClientKey::rights.
enum KeyRight : uint32_t {
  kRightRead = 1u << 0,    // READ, OPEN_MANIFEST, HAVE, GET_GROUP, LIST_GROUPS
  kRightAppend = 1u << 1,  // HAVE, APPEND, FLUSH, PUT_MANIFEST(_DELTA), PUT_GROUP, GET/LIST_GROUPS
  kRightDelete = 1u << 2,  // DELETE
  kRightAdmin = 1u << 3,   // everything, GC included
};
inline constexpr uint32_t kAllRights = kRightRead | kRightAppend | kRightDelete | kRightAdmin;

// The name a client gives when it names no key (HELLO without one), and the name of the single
// key of a daemon started with --key-file.
inline constexpr absl::string_view kDefaultKeyName = "default";

struct ClientKey {
  std::string name;
  AuthKey key;
  uint32_t rights = 0;         // KeyRight bits
  size_t max_connections = 0;  // authenticated connections of this key at once; 0 = no own limit
  uint64_t max_inflight = 0;   // announced in WELCOME when below the daemon's; 0 = the daemon's
  uint64_t quota_bytes = 0;    // bytes this key may add to the store in all; 0 = no quota
};

// The rights a message needs: any one of the returned bits suffices. 0 for messages that need
// none (BYE, ERROR, the handshake's).
uint32_t RightsFor(MsgType type);
// "read,append", "admin", "none".
std::string FormatRights(uint32_t rights);
// Checks a key name: 1..kMaxKeyNameLength (wire_messages.h) characters of [A-Za-z0-9._-].
[[nodiscard]] absl::Status CheckKeyName(absl::string_view name);

class KeyRing {
 public:
  // A ring of one key named "default" with every right and no limits: the daemon's shared key.
  static KeyRing Single(const AuthKey& key);
  // Parses a keys file's text. InvalidArgument naming the line (never echoing a secret) for a
  // malformed line, an unknown right or limit, a repeated name or secret, or no key at all.
  [[nodiscard]] static absl::StatusOr<KeyRing> Parse(absl::string_view text,
                                                     absl::string_view path = "keys file");
  // Reads and parses the keys file at `path`, refused like a key file when group or others have
  // any access to it.
  [[nodiscard]] static absl::StatusOr<KeyRing> Load(const std::string& path);

  // The key named `name`, or nullptr.
  const ClientKey* Find(absl::string_view name) const;
  const std::vector<ClientKey>& keys() const { return keys_; }

 private:
  std::vector<ClientKey> keys_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_KEY_RING_H_
