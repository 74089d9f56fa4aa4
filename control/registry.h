// The backup-storage registry: which store each backup storage uuid of the platform names (a
// local image store directory, a store daemon on another node, or a Ceph pool), and which OAuth
// sessions the API accepts. Loaded from a JSON config file and validated whole before anything
// runs:
//
//   {
//     "backupStorages": [
//       {"uuid": "<32 hex>", "name": "local", "store": "/var/lib/chunkferry/store"},
//       {"uuid": "<32 hex>", "name": "node-2", "store": "tcp://10.0.0.2:7170",
//        "keyFile": "node-2.key", "connections": 2, "connectTimeoutMs": 10000,
//        "rateLimitBytesPerSecond": 0,
//        "tlsCa": "ca.crt" | "tlsPeerSha256": "<64 hex>", "tlsName": "10.0.0.2",
//        "tlsCert": "client.crt", "tlsKey": "client.key"},
//       {"uuid": "<32 hex>", "store": "rados:POOL[/NAMESPACE]", "cephConf": "/etc/ceph/ceph.conf",
//        "cephUser": "chunkferry", "cephKeyring": "ceph.client.chunkferry.keyring"}
//     ],
//     "sessions": ["<32 hex>", ...],
//     "managementNode": {"url": "http://10.0.0.1:8080", "timeoutMs": 5000, "cacheSeconds": 10,
//                        "tlsCa": "mn-ca.crt"},
//     "accessKeys": {"file": "access-keys", "checkTimeZone": false},
//     "webhooks": {"allow": ["http://10.0.0.5:9000/hooks/"], "attempts": 15,
//                  "retryIntervalMs": 2000, "timeoutMs": 10000, "tlsCa": "hooks-ca.crt"},
//     "timeZone": "Asia/Shanghai",
//     "verify": "full"
//   }
//
// Sessions: the static list first, then (when named) the management node's ValidateSession
// (control/session_validator.h). Access keys: control/access_key.h. "timeZone": the server's own
// zone, as the platform's management node has one (default: the host's). Webhooks: only to URLs
// under an allowed prefix (control/webhook.h); none without "webhooks".
//
// Relative paths ("store" of a local storage, "keyFile", "cephConf", "cephKeyring") are taken from
// the config file's folder.
#ifndef CHUNKFERRY_CONTROL_REGISTRY_H_
#define CHUNKFERRY_CONTROL_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "control/access_key.h"
#include "control/session_validator.h"
#include "control/webhook.h"
#include "engine/rados/rados_layout.h"
#include "engine/store/store.h"
#include "engine/wire/auth.h"
#include "engine/wire/tls.h"
#include "io/net.h"

namespace chunkferry::control {

struct BackupStorage {
  std::string uuid;  // 32 lowercase hex
  std::string name;
  bool remote = false;
  bool rados = false;                       // a RADOS pool ("store": "rados:POOL[/NAMESPACE]")
  std::string path;                         // local: the store directory (absolute)
  engine::rados::RadosUrl rados_url;        // rados: the pool and namespace
  engine::rados::RadosClientOptions ceph;   // rados: cephConf/User/Keyring/TimeoutMs
  io::Endpoint endpoint;                    // remote: the daemon
  std::string key_file;                     // remote: absolute path of the key file
  engine::AuthKey key;                      // remote: loaded from key_file at load time
  std::shared_ptr<engine::TlsContext> tls;  // remote over TLS (tlsCa / tlsPeerSha256); else null
  size_t connections = 2;
  int64_t connect_timeout_ms = 10'000;
  uint64_t rate_limit_bytes_per_s = 0;  // 0: no limit
};

struct Registry {
  std::vector<BackupStorage> storages;
  std::vector<std::string> sessions;  // accepted `Authorization: OAuth <session>` values
  // Asked about sessions not in `sessions`; null: only the static list.
  std::shared_ptr<SessionValidator> management_node;
  AccessKeys access_keys;    // no keys: every `ZStack` credential is an unknown key
  WebhookPolicy webhooks;    // where job results may be called back to; default: nowhere
  std::string time_zone_id;  // as configured; empty: the host's
  absl::TimeZone time_zone = absl::UTCTimeZone();
  engine::VerifyMode verify = engine::VerifyMode::kFull;

  // nullptr when no storage has `uuid`.
  const BackupStorage* Find(std::string_view uuid) const {
    for (const auto& s : storages) {
      if (s.uuid == uuid) return &s;
    }
    return nullptr;
  }
  // Compares in constant time per session: a session is a secret, and how long a refusal took
  // must not tell a caller how many of its first characters were right.
  bool HasSession(std::string_view session) const;
};

// Parses and validates a config. InvalidArgument naming `origin` and the JSON path of the first
// problem: not JSON, an unknown or misspelt field, a field of the wrong type, a uuid that is not
// 32 lowercase hex, a duplicate uuid, a local store directory that does not exist or holds no
// store, an unreadable or malformed key file, a bad address. `base_dir` resolves relative paths.
[[nodiscard]] absl::StatusOr<Registry> ParseRegistry(std::string_view json_text,
                                                     std::string_view origin,
                                                     const std::string& base_dir);
// Reads and parses the config file at `path`.
[[nodiscard]] absl::StatusOr<Registry> LoadRegistry(const std::string& path);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_REGISTRY_H_
