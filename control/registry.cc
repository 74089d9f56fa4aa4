#include "control/registry.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/platform_time.h"
#include "engine/format/volume_backup.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::control {
namespace {

using InJson = nlohmann::json;

constexpr absl::string_view kRemotePrefix = "tcp://";
// Far beyond any real registry; a bound, so that a wrong path (a disk image) fails fast.
constexpr size_t kMaxConfigBytes = 16u << 20;

// Reports problems as "ORIGIN: PATH: what".
class Checker {
 public:
  Checker(absl::string_view origin, std::string base_dir)
      : origin_(origin), base_dir_(std::move(base_dir)) {}

  absl::Status Error(absl::string_view path, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(origin_, ": ", path, ": ", what));
  }

  // Fails on a key of `object` that is not in `known`: a misspelt option must not be ignored.
  absl::Status OnlyKnownKeys(const InJson& object, absl::string_view path,
                             std::initializer_list<absl::string_view> known) const {
    for (const auto& [key, value] : object.items()) {
      bool ok = false;
      for (auto k : known) ok = ok || key == k;
      if (!ok) {
        std::string list;
        for (auto k : known) absl::StrAppend(&list, list.empty() ? "" : ", ", k);
        return Error(path, absl::StrCat("unknown field \"", key, "\" (known: ", list, ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const InJson& object, absl::string_view path, const char* key,
                                     bool required) const {
    auto it = object.find(key);
    if (it == object.end()) {
      if (required) return Error(path, absl::StrCat("missing field \"", key, "\""));
      return std::string();
    }
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      return Error(absl::StrCat(path, ".", key), "must be a non-empty string");
    }
    return it->get<std::string>();
  }

  // An integer in [lo, hi]; `fallback` when absent.
  absl::StatusOr<int64_t> Integer(const InJson& object, absl::string_view path, const char* key,
                                  int64_t lo, int64_t hi, int64_t fallback) const {
    auto it = object.find(key);
    if (it == object.end()) return fallback;
    if (!it->is_number_integer()) {
      return Error(absl::StrCat(path, ".", key), "must be an integer");
    }
    // Unsigned values past INT64_MAX are out of every range here.
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Error(absl::StrCat(path, ".", key), absl::StrCat("must be in ", lo, "..", hi));
    }
    const int64_t v = it->get<int64_t>();
    if (v < lo || v > hi) {
      return Error(absl::StrCat(path, ".", key), absl::StrCat("must be in ", lo, "..", hi));
    }
    return v;
  }

  std::string Resolve(const std::string& p) const {
    if (p.empty() || p[0] == '/') return p;
    return absl::StrCat(base_dir_, "/", p);
  }

 private:
  std::string origin_;
  std::string base_dir_;
};

absl::StatusOr<BackupStorage> ParseStorage(const Checker& c, const InJson& j,
                                           const std::string& path) {
  if (!j.is_object()) return c.Error(path, "must be an object");
  auto st =
      c.OnlyKnownKeys(j, path,
                      {"uuid", "name", "store", "keyFile", "connections", "connectTimeoutMs",
                       "rateLimitBytesPerSecond", "tlsCa", "tlsPeerSha256", "tlsName", "tlsCert",
                       "tlsKey", "cephConf", "cephUser", "cephKeyring", "cephTimeoutMs"});
  if (!st.ok()) return st;
  BackupStorage s;
  auto uuid = c.String(j, path, "uuid", true);
  if (!uuid.ok()) return uuid.status();
  if (!engine::IsValidUuid(*uuid)) {
    return c.Error(absl::StrCat(path, ".uuid"),
                   absl::StrCat("\"", *uuid, "\" is not a uuid (32 lowercase hex characters)"));
  }
  s.uuid = *uuid;
  auto name = c.String(j, path, "name", false);
  if (!name.ok()) return name.status();
  s.name = name->empty() ? s.uuid : *name;
  auto store = c.String(j, path, "store", true);
  if (!store.ok()) return store.status();
  auto key_file = c.String(j, path, "keyFile", false);
  if (!key_file.ok()) return key_file.status();

  std::string ceph[3];
  for (int i = 0; i < 3; ++i) {
    auto v = c.String(j, path, std::array{"cephConf", "cephUser", "cephKeyring"}[i], false);
    if (!v.ok()) return v.status();
    ceph[i] = *v;
  }
  const bool ceph_given =
      !ceph[0].empty() || !ceph[1].empty() || !ceph[2].empty() || j.contains("cephTimeoutMs");
  if (ceph_given && !engine::rados::IsRadosUrl(*store)) {
    return c.Error(path,
                   "\"cephConf\", \"cephUser\", \"cephKeyring\" and \"cephTimeoutMs\" are for "
                   "a RADOS pool (\"store\": \"rados:POOL[/NAMESPACE]\")");
  }
  auto ceph_timeout = c.Integer(j, path, "cephTimeoutMs", 1'000, 3'600'000, 30'000);
  if (!ceph_timeout.ok()) return ceph_timeout.status();
  if (engine::rados::IsRadosUrl(*store)) {
    if (!key_file->empty()) {
      return c.Error(absl::StrCat(path, ".keyFile"),
                     "is for a daemon (\"store\": \"tcp://HOST:PORT\"), not a RADOS pool");
    }
    auto url = engine::rados::ParseRadosUrl(*store);
    if (!url.ok()) return c.Error(absl::StrCat(path, ".store"), url.status().message());
    s.rados = true;
    s.rados_url = *url;
    s.ceph.conf_path = ceph[0].empty() ? "" : c.Resolve(ceph[0]);
    s.ceph.client_name = ceph[1];
    s.ceph.keyring = ceph[2].empty() ? "" : c.Resolve(ceph[2]);
    s.ceph.timeout_ms = *ceph_timeout;
    // The cluster is reached at the first call that needs it, not at load: a registry names
    // pools of clusters that may be down for a while, and the load must not wait on them.
  } else if (absl::StartsWith(*store, kRemotePrefix)) {
    s.remote = true;
    auto ep = io::ParseEndpoint(std::string_view(*store).substr(kRemotePrefix.size()));
    if (!ep.ok()) return c.Error(absl::StrCat(path, ".store"), ep.status().message());
    s.endpoint = *ep;
    if (key_file->empty()) {
      return c.Error(path, "a daemon (\"store\": \"tcp://...\") needs \"keyFile\"");
    }
    s.key_file = c.Resolve(*key_file);
    auto key = engine::LoadKeyFile(s.key_file);
    if (!key.ok()) return c.Error(absl::StrCat(path, ".keyFile"), key.status().message());
    s.key = *key;
    // TLS to the daemon: on with a CA file or a pinned fingerprint; checked (and its files read)
    // now, so a bad path fails the load rather than a sync.
    engine::TlsOptions tls;
    for (auto [field, out, file] :
         {std::tuple{"tlsCa", &tls.ca_file, true},
          std::tuple{"tlsPeerSha256", &tls.peer_sha256, false},
          std::tuple{"tlsName", &tls.server_name, false},
          std::tuple{"tlsCert", &tls.cert_file, true}, std::tuple{"tlsKey", &tls.key_file, true}}) {
      auto v = c.String(j, path, field, false);
      if (!v.ok()) return v.status();
      *out = file && !v->empty() ? c.Resolve(*v) : *v;
    }
    if (!tls.ca_file.empty() || !tls.peer_sha256.empty()) {
      auto context = engine::TlsContext::Make(tls, engine::TlsRole::kClient);
      if (!context.ok()) return c.Error(path, context.status().message());
      s.tls = *context;
    } else if (!tls.server_name.empty() || !tls.cert_file.empty() || !tls.key_file.empty()) {
      return c.Error(path,
                     "\"tlsName\", \"tlsCert\" and \"tlsKey\" need \"tlsCa\" or "
                     "\"tlsPeerSha256\" (TLS on)");
    }
  } else {
    if (!key_file->empty()) {
      return c.Error(absl::StrCat(path, ".keyFile"),
                     "is for a daemon (\"store\": \"tcp://HOST:PORT\"), not a directory");
    }
    const std::string dir = c.Resolve(*store);
    char real[PATH_MAX];
    if (realpath(dir.c_str(), real) == nullptr) {
      return c.Error(absl::StrCat(path, ".store"), absl::StrCat(dir, ": ", std::strerror(errno)));
    }
    s.path = real;
    const std::string descriptor = absl::StrCat(s.path, "/STORE");
    if (access(descriptor.c_str(), R_OK) != 0) {
      return c.Error(absl::StrCat(path, ".store"),
                     absl::StrCat(s.path, " is not a chunkferry store (no readable STORE file; ",
                                  "create one with `chunkferry store init`)"));
    }
  }
  // Options that only a daemon link uses are accepted for both, so a storage can move.
  auto conns = c.Integer(j, path, "connections", 1, 64, 2);
  if (!conns.ok()) return conns.status();
  s.connections = static_cast<size_t>(*conns);
  auto timeout = c.Integer(j, path, "connectTimeoutMs", 1, 3'600'000, 10'000);
  if (!timeout.ok()) return timeout.status();
  s.connect_timeout_ms = *timeout;
  auto rate = c.Integer(j, path, "rateLimitBytesPerSecond", 0, INT64_MAX, 0);
  if (!rate.ok()) return rate.status();
  s.rate_limit_bytes_per_s = static_cast<uint64_t>(*rate);
  return s;
}

absl::StatusOr<ManagementNode> ParseManagementNode(const Checker& c, const InJson& j) {
  if (!j.is_object()) return c.Error("managementNode", "must be an object");
  CF_RETURN_IF_ERROR(
      c.OnlyKnownKeys(j, "managementNode", {"url", "timeoutMs", "cacheSeconds", "tlsCa"}));
  ManagementNode node;
  auto url = c.String(j, "managementNode", "url", true);
  if (!url.ok()) return url.status();
  // The platform's REST base: scheme, host and port only; the calls' paths are appended.
  const bool https = absl::StartsWith(*url, "https://");
  const absl::string_view rest = absl::string_view(*url).substr(https ? 8 : 7);
  if ((!https && !absl::StartsWith(*url, "http://")) || rest.empty() ||
      rest.find_first_of("/?#@ ") != absl::string_view::npos) {
    return c.Error(
        "managementNode.url",
        absl::StrCat("must be http://HOST:PORT or https://HOST:PORT, not \"", *url, "\""));
  }
  node.url = *url;
  auto timeout = c.Integer(j, "managementNode", "timeoutMs", 100, 600'000, node.timeout_ms);
  if (!timeout.ok()) return timeout.status();
  node.timeout_ms = *timeout;
  auto cache = c.Integer(j, "managementNode", "cacheSeconds", 0, 3600, node.cache_seconds);
  if (!cache.ok()) return cache.status();
  node.cache_seconds = *cache;
  auto ca = c.String(j, "managementNode", "tlsCa", false);
  if (!ca.ok()) return ca.status();
  if (!ca->empty()) {
    if (!https) return c.Error("managementNode.tlsCa", "only for an https:// url");
    node.tls_ca = c.Resolve(*ca);
  }
  return node;
}

absl::StatusOr<WebhookPolicy> ParseWebhooks(const Checker& c, const InJson& j) {
  if (!j.is_object()) return c.Error("webhooks", "must be an object");
  CF_RETURN_IF_ERROR(c.OnlyKnownKeys(
      j, "webhooks", {"allow", "attempts", "retryIntervalMs", "timeoutMs", "tlsCa"}));
  WebhookPolicy policy;
  auto allow = j.find("allow");
  if (allow == j.end() || !allow->is_array()) {
    return c.Error("webhooks.allow", "must be a list of URL prefixes");
  }
  for (size_t i = 0; i < allow->size(); ++i) {
    const InJson& prefix = (*allow)[i];
    const std::string path = absl::StrCat("webhooks.allow[", i, "]");
    if (!prefix.is_string()) return c.Error(path, "must be a string");
    absl::Status ok = CheckWebhookPrefix(prefix.get_ref<const std::string&>());
    if (!ok.ok()) return c.Error(path, ok.message());
    policy.allow.push_back(prefix.get<std::string>());
  }
  auto attempts = c.Integer(j, "webhooks", "attempts", 1, 100, policy.attempts);
  if (!attempts.ok()) return attempts.status();
  policy.attempts = static_cast<int>(*attempts);
  auto interval = c.Integer(j, "webhooks", "retryIntervalMs", 0, 600'000, policy.retry_interval_ms);
  if (!interval.ok()) return interval.status();
  policy.retry_interval_ms = *interval;
  auto timeout = c.Integer(j, "webhooks", "timeoutMs", 100, 600'000, policy.timeout_ms);
  if (!timeout.ok()) return timeout.status();
  policy.timeout_ms = *timeout;
  auto ca = c.String(j, "webhooks", "tlsCa", false);
  if (!ca.ok()) return ca.status();
  if (!ca->empty()) policy.tls_ca = c.Resolve(*ca);
  return policy;
}

}  // namespace

absl::StatusOr<Registry> ParseRegistry(std::string_view json_text, std::string_view origin,
                                       const std::string& base_dir) {
  const Checker c(absl::string_view(origin.data(), origin.size()), base_dir);
  InJson root = InJson::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return c.Error("(file)", "not valid JSON");
  if (!root.is_object()) return c.Error("(file)", "must be a JSON object");
  auto st = c.OnlyKnownKeys(root, "(file)",
                            {"backupStorages", "sessions", "managementNode", "accessKeys",
                             "webhooks", "timeZone", "verify"});
  if (!st.ok()) return st;

  Registry r;
  auto storages = root.find("backupStorages");
  if (storages == root.end()) return c.Error("(file)", "missing field \"backupStorages\"");
  if (!storages->is_array() || storages->empty()) {
    return c.Error("backupStorages", "must be a non-empty list");
  }
  std::set<std::string> uuids, places;
  for (size_t i = 0; i < storages->size(); ++i) {
    const std::string path = absl::StrCat("backupStorages[", i, "]");
    auto s = ParseStorage(c, (*storages)[i], path);
    if (!s.ok()) return s.status();
    if (!uuids.insert(s->uuid).second) {
      return c.Error(absl::StrCat(path, ".uuid"), absl::StrCat("duplicate uuid ", s->uuid));
    }
    // Two uuids naming one store would let two syncs write it at once.
    const std::string place = s->remote  ? io::FormatEndpoint(s->endpoint)
                              : s->rados ? s->rados_url.ToString()
                                         : s->path;
    if (!places.insert(place).second) {
      return c.Error(absl::StrCat(path, ".store"),
                     absl::StrCat(place, " is already the store of another backup storage"));
    }
    r.storages.push_back(*std::move(s));
  }

  if (auto it = root.find("sessions"); it != root.end()) {
    if (!it->is_array()) return c.Error("sessions", "must be a list of strings");
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& v = (*it)[i];
      const std::string path = absl::StrCat("sessions[", i, "]");
      if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
        return c.Error(path, "must be a non-empty string");
      }
      const std::string& token = v.get_ref<const std::string&>();
      for (char ch : token) {
        if (ch <= ' ' || ch > '~') return c.Error(path, "must be printable ASCII without spaces");
      }
      r.sessions.push_back(token);
    }
  }
  auto zone_id = c.String(root, "(file)", "timeZone", false);
  if (!zone_id.ok()) return zone_id.status();
  absl::StatusOr<absl::TimeZone> zone = ServerZone(*zone_id);
  if (!zone.ok()) return c.Error("timeZone", zone.status().message());
  r.time_zone_id = *zone_id;
  r.time_zone = *zone;
  if (auto it = root.find("managementNode"); it != root.end()) {
    auto node = ParseManagementNode(c, *it);
    if (!node.ok()) return node.status();
    r.management_node = std::make_shared<SessionValidator>(*std::move(node));
  }
  if (auto it = root.find("accessKeys"); it != root.end()) {
    if (!it->is_object()) return c.Error("accessKeys", "must be an object");
    CF_RETURN_IF_ERROR(c.OnlyKnownKeys(*it, "accessKeys", {"file", "checkTimeZone"}));
    auto file = c.String(*it, "accessKeys", "file", true);
    if (!file.ok()) return file.status();
    auto keys = LoadAccessKeyFile(c.Resolve(*file));
    if (!keys.ok()) return c.Error("accessKeys.file", keys.status().message());
    r.access_keys.keys = *std::move(keys);
    if (auto tz = it->find("checkTimeZone"); tz != it->end()) {
      if (!tz->is_boolean()) return c.Error("accessKeys.checkTimeZone", "must be true or false");
      r.access_keys.check_time_zone = tz->get<bool>();
    }
    r.access_keys.server_zone = r.time_zone;
  }
  if (auto it = root.find("webhooks"); it != root.end()) {
    auto webhooks = ParseWebhooks(c, *it);
    if (!webhooks.ok()) return webhooks.status();
    r.webhooks = *std::move(webhooks);
  }
  if (auto it = root.find("verify"); it != root.end()) {
    if (it->is_string() && *it == "full") {
      r.verify = engine::VerifyMode::kFull;
    } else if (it->is_string() && *it == "checksum") {
      r.verify = engine::VerifyMode::kChecksum;
    } else {
      return c.Error("verify", "must be \"full\" or \"checksum\"");
    }
  }
  return r;
}

bool Registry::HasSession(std::string_view session) const {
  bool found = false;
  for (const std::string& s : sessions) {
    // Lengths are not secret (sessions are uuids); the bytes are.
    if (s.size() == session.size() && CRYPTO_memcmp(s.data(), session.data(), s.size()) == 0) {
      found = true;
    }
  }
  return found;
}

absl::StatusOr<Registry> LoadRegistry(const std::string& path) {
  // O_NONBLOCK: a FIFO planted at the path must not hang the open.
  absl::StatusOr<io::Fd> fd = io::OpenFile(path, O_RDONLY | O_NONBLOCK);
  if (!fd.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read config ", path, ": ", fd.status().message()));
  }
  absl::StatusOr<std::string> text = io::ReadBounded(fd->get(), kMaxConfigBytes, "config", path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read config ", path, ": ", text.status().message()));
  }
  const size_t slash = path.rfind('/');
  const std::string base = slash == std::string::npos ? std::string(".")
                           : slash == 0               ? std::string("/")
                                                      : path.substr(0, slash);
  CF_ASSIGN_OR_RETURN(Registry registry, ParseRegistry(*text, path, base));
  // Sessions are the API's passwords: a config that lists them is a secret.
  if (!registry.sessions.empty()) {
    CF_RETURN_IF_ERROR(io::CheckPrivateFile(fd->get(), "config (it lists sessions)", path));
  }
  return registry;
}

}  // namespace chunkferry::control
