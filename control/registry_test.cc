#include "control/registry.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/wire/auth.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"

namespace chunkferry::control {
namespace {

using chunkferry::testing::InitStore;
using chunkferry::testing::TempDir;

constexpr char kUuidA[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kUuidB[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitStore(dir_.Sub("local"));
    ASSERT_TRUE(engine::WriteNewKeyFile(dir_.Sub("node2.key")).ok());
  }
  // A valid config; `{A}`/`{B}` name the storages' uuids.
  std::string Config(const std::string& extra_local = "", const std::string& top = "") const {
    return absl::StrReplaceAll(
        R"({"backupStorages": [
              {"uuid": "{A}", "name": "local", "store": "local"{X}},
              {"uuid": "{B}", "store": "tcp://127.0.0.1:7170", "keyFile": "node2.key",
               "connections": 4, "connectTimeoutMs": 500, "rateLimitBytesPerSecond": 1000}
            ],
            "sessions": ["0123456789abcdef0123456789abcdef"]{T}})",
        {{"{A}", kUuidA}, {"{B}", kUuidB}, {"{X}", extra_local}, {"{T}", top}});
  }
  absl::StatusOr<Registry> Parse(const std::string& text) const {
    return ParseRegistry(text, "test.json", dir_.path());
  }
  // Expects InvalidArgument whose message holds `where` and `what`.
  void ExpectError(const std::string& text, const std::string& where, const std::string& what) {
    auto r = Parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("test.json: "), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find(where), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status();
  }

  TempDir dir_;
};

TEST_F(RegistryTest, LoadsLocalAndRemoteStorages) {
  auto r = Parse(Config());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->storages.size(), 2u);
  const BackupStorage* a = r->Find(kUuidA);
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->remote);
  EXPECT_EQ(a->name, "local");
  EXPECT_EQ(a->path.front(), '/');  // resolved against the config's folder
  EXPECT_NE(a->path.find("/local"), std::string::npos);
  const BackupStorage* b = r->Find(kUuidB);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->remote);
  EXPECT_EQ(b->name, kUuidB);  // a storage without a name is called by its uuid
  EXPECT_EQ(io::FormatEndpoint(b->endpoint), "127.0.0.1:7170");
  EXPECT_EQ(b->connections, 4u);
  EXPECT_EQ(b->connect_timeout_ms, 500);
  EXPECT_EQ(b->rate_limit_bytes_per_s, 1000u);
  auto key = engine::LoadKeyFile(dir_.Sub("node2.key"));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(b->key.bytes, key->bytes);
  EXPECT_EQ(r->Find("cccccccccccccccccccccccccccccccc"), nullptr);
  EXPECT_TRUE(r->HasSession("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(r->HasSession("0123456789abcdef0123456789abcdee"));
  EXPECT_EQ(r->verify, engine::VerifyMode::kFull);
}

TEST_F(RegistryTest, ADaemonMayBeReachedOverTls) {
  testing::TlsIdentity ca;
  ASSERT_TRUE(ca.Make(dir_.path(), "ca", true, nullptr).ok());
  const std::string remote =
      absl::StrCat(R"({"backupStorages": [{"uuid": ")", kUuidB,
                   R"(", "store": "tcp://127.0.0.1:7170", )", R"("keyFile": "node2.key", )");
  auto with = [&](const std::string& tls) { return absl::StrCat(remote, tls, "}]}"); };
  auto r = Parse(with(R"("tlsCa": "ca.crt", "tlsName": "127.0.0.1")"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NE(r->Find(kUuidB)->tls, nullptr);
  EXPECT_EQ(r->Find(kUuidB)->tls->options().ca_file, dir_.Sub("ca.crt"));  // relative to it
  auto pinned = Parse(with(absl::StrCat(R"("tlsPeerSha256": ")", std::string(64, 'a'), R"(")")));
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_NE(pinned->Find(kUuidB)->tls, nullptr);
  auto plain = Parse(with(R"("connections": 2)"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->Find(kUuidB)->tls, nullptr);
  ExpectError(with(R"("tlsName": "127.0.0.1")"), "backupStorages[0]", "need \"tlsCa\"");
  ExpectError(with(R"("tlsPeerSha256": "12:34")"), "backupStorages[0]", "not a SHA-256");
  ExpectError(with(R"("tlsCa": "absent.crt")"), "backupStorages[0]", "absent.crt");
}

TEST_F(RegistryTest, LoadsFromAFileWithPathsRelativeToIt) {
  const std::string path = dir_.Sub("registry.json");
  const std::string text = Config("", R"(, "verify": "checksum")");
  chunkferry::testing::WriteFile(
      path, absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto r = LoadRegistry(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->verify, engine::VerifyMode::kChecksum);
  auto missing = LoadRegistry(dir_.Sub("nope.json"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);
}

// Sessions are the API's passwords: a config that lists them and that group or others may read
// is refused; one without sessions (the C ABI's) may be readable.
TEST_F(RegistryTest, AConfigListingSessionsMustBePrivate) {
  const std::string path = dir_.Sub("registry.json");
  auto write = [&](const std::string& text, mode_t mode) {
    ::unlink(path.c_str());
    chunkferry::testing::WriteFile(
        path,
        absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  };
  for (mode_t loose : {0644, 0640, 0604, 0660}) {
    write(Config(), loose);
    auto r = LoadRegistry(path);
    ASSERT_FALSE(r.ok()) << std::oct << loose;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  }
  write(Config(), 0600);
  EXPECT_TRUE(LoadRegistry(path).ok());
  write(Config(), 0400);
  EXPECT_TRUE(LoadRegistry(path).ok());
  std::string no_sessions = Config();
  no_sessions.replace(no_sessions.find(R"("0123456789abcdef0123456789abcdef")"), 34, "");
  write(no_sessions, 0644);
  auto r = LoadRegistry(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->sessions.empty());
}

TEST_F(RegistryTest, RejectsMalformedConfigsWithThePlace) {
  ExpectError("{", "(file)", "not valid JSON");
  ExpectError("[]", "(file)", "must be a JSON object");
  ExpectError(R"({"sessions": []})", "(file)", "missing field \"backupStorages\"");
  ExpectError(R"({"backupStorages": []})", "backupStorages", "non-empty list");
  ExpectError(Config("", R"(, "sesions": [])"), "(file)", "unknown field \"sesions\"");
  ExpectError(Config(R"(, "adress": "x")"), "backupStorages[0]", "unknown field \"adress\"");
  ExpectError(Config("", R"(, "verify": "none")"), "verify", "\"full\" or \"checksum\"");
  ExpectError(absl::StrReplaceAll(Config(), {{kUuidA, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}),
              "backupStorages[0].uuid", "32 lowercase hex");
  ExpectError(absl::StrReplaceAll(Config(), {{kUuidB, kUuidA}}), "backupStorages[1].uuid",
              "duplicate uuid");
  ExpectError(absl::StrReplaceAll(Config(), {{R"("store": "local")", R"("store": 7)"}}),
              "backupStorages[0].store", "non-empty string");
  ExpectError(absl::StrReplaceAll(Config(), {{R"("connections": 4)", R"("connections": 0)"}}),
              "backupStorages[1].connections", "1..64");
  ExpectError(absl::StrReplaceAll(Config(), {{R"("connections": 4)", R"("connections": "4")"}}),
              "backupStorages[1].connections", "integer");
  ExpectError(Config("", R"(, "sessions": ["a b"])"), "sessions[0]", "without spaces");
}

// The platform-client fields: the management node for live sessions, access keys (a private file
// beside the config), the server's time zone; each refused clearly when wrong.
TEST_F(RegistryTest, ManagementNodeAccessKeysAndTimeZone) {
  const std::string keys = dir_.Sub("access-keys");
  const std::string text = "AKIDEXAMPLE secret-example\nAKIDOLD old disabled\n";
  testing::WriteFile(keys, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  ASSERT_EQ(::chmod(keys.c_str(), 0600), 0);
  auto r = Parse(Config("", R"(, "managementNode": {"url": "http://10.0.0.1:8080",
      "timeoutMs": 3000, "cacheSeconds": 30},
      "accessKeys": {"file": "access-keys", "checkTimeZone": true},
      "timeZone": "Asia/Shanghai")"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NE(r->management_node, nullptr);
  EXPECT_EQ(r->management_node->node().url, "http://10.0.0.1:8080");
  EXPECT_EQ(r->management_node->node().timeout_ms, 3000);
  EXPECT_EQ(r->management_node->node().cache_seconds, 30);
  ASSERT_EQ(r->access_keys.keys.size(), 2u);
  EXPECT_FALSE(r->access_keys.keys[1].enabled);
  EXPECT_TRUE(r->access_keys.check_time_zone);
  EXPECT_EQ(r->time_zone.name(), "Asia/Shanghai");
  EXPECT_EQ(r->access_keys.server_zone.name(), "Asia/Shanghai");
  // Without them: static sessions only, no keys, the host's zone.
  auto plain = Parse(Config());
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->management_node, nullptr);
  EXPECT_TRUE(plain->access_keys.keys.empty());
  EXPECT_EQ(plain->time_zone.name(), absl::LocalTimeZone().name());

  ExpectError(Config("", R"(, "managementNode": {"url": "10.0.0.1:8080"})"), "managementNode.url",
              "http://HOST:PORT");
  ExpectError(Config("", R"(, "managementNode": {"url": "http://h:1/zstack"})"),
              "managementNode.url", "http://HOST:PORT");
  ExpectError(Config("", R"(, "managementNode": {"url": "http://h:1", "timeoutMs": 5})"),
              "managementNode.timeoutMs", "100..600000");
  ExpectError(Config("", R"(, "managementNode": {"url": "http://h:1", "tlsCa": "ca.crt"})"),
              "managementNode.tlsCa", "https");
  ExpectError(Config("", R"(, "managementNode": {"uri": "http://h:1"})"), "managementNode",
              "unknown field \"uri\"");
  ExpectError(Config("", R"(, "accessKeys": {"file": "nowhere"})"), "accessKeys.file", "nowhere");
  ExpectError(Config("", R"(, "accessKeys": {"file": "access-keys", "checkTimeZone": "no"})"),
              "accessKeys.checkTimeZone", "true or false");
  ExpectError(Config("", R"(, "timeZone": "+08:00")"), "timeZone", "unknown time zone");
  ASSERT_EQ(::chmod(keys.c_str(), 0644), 0);
  ExpectError(Config("", R"(, "accessKeys": {"file": "access-keys"})"), "accessKeys.file",
              "chmod 600");
}

TEST_F(RegistryTest, Webhooks) {
  auto r = Parse(Config("", R"(, "webhooks": {"allow": ["http://10.0.0.5:9000/hooks/",
      "https://mn.example/"], "attempts": 3, "retryIntervalMs": 500, "timeoutMs": 2000,
      "tlsCa": "hooks-ca.crt"})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->webhooks.allow,
            (std::vector<std::string>{"http://10.0.0.5:9000/hooks/", "https://mn.example/"}));
  EXPECT_EQ(r->webhooks.attempts, 3);
  EXPECT_EQ(r->webhooks.retry_interval_ms, 500);
  EXPECT_EQ(r->webhooks.timeout_ms, 2000);
  EXPECT_EQ(r->webhooks.tls_ca, dir_.Sub("hooks-ca.crt"));
  // Without "webhooks": none allowed, the platform's retries.
  auto plain = Parse(Config());
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->webhooks.allow.empty());
  EXPECT_EQ(plain->webhooks.attempts, 15);
  EXPECT_EQ(plain->webhooks.retry_interval_ms, 2000);
  EXPECT_EQ(plain->webhooks.timeout_ms, 10000);

  ExpectError(Config("", R"(, "webhooks": {})"), "webhooks.allow", "list of URL prefixes");
  ExpectError(Config("", R"(, "webhooks": {"allow": "http://h/"})"), "webhooks.allow",
              "list of URL prefixes");
  ExpectError(Config("", R"(, "webhooks": {"allow": [7]})"), "webhooks.allow[0]",
              "must be a string");
  ExpectError(Config("", R"(, "webhooks": {"allow": ["http://h/", "http://10.0.0.5"]})"),
              "webhooks.allow[1]", "must have a path");
  ExpectError(Config("", R"(, "webhooks": {"allow": ["ftp://h/"]})"), "webhooks.allow[0]",
              "not an http");
  ExpectError(Config("", R"(, "webhooks": {"allow": ["http://h/"], "attempts": 0})"),
              "webhooks.attempts", "1..100");
  ExpectError(Config("", R"(, "webhooks": {"allow": ["http://h/"], "timeoutMs": 1})"),
              "webhooks.timeoutMs", "100..600000");
  ExpectError(Config("", R"(, "webhooks": {"allow": ["http://h/"], "retries": 3})"), "webhooks",
              "unknown field \"retries\"");
}

TEST_F(RegistryTest, RejectsStoresThatCannotBeReached) {
  ExpectError(absl::StrReplaceAll(Config(), {{R"("store": "local")", R"("store": "missing")"}}),
              "backupStorages[0].store", "No such file or directory");
  ASSERT_EQ(mkdir(dir_.Sub("empty").c_str(), 0755), 0);
  ExpectError(absl::StrReplaceAll(Config(), {{R"("store": "local")", R"("store": "empty")"}}),
              "backupStorages[0].store", "not a chunkferry store");
  ExpectError(absl::StrReplaceAll(Config(), {{"node2.key", "missing.key"}}),
              "backupStorages[1].keyFile", "missing.key");
  ExpectError(absl::StrReplaceAll(Config(), {{R"(, "keyFile": "node2.key")", ""}}),
              "backupStorages[1]", "needs \"keyFile\"");
  ExpectError(absl::StrReplaceAll(Config(), {{"tcp://127.0.0.1:7170", "tcp://127.0.0.1"}}),
              "backupStorages[1].store", "");
  ExpectError(Config(R"(, "keyFile": "node2.key")"), "backupStorages[0].keyFile",
              "is for a daemon");
}

TEST_F(RegistryTest, RejectsTwoStoragesOnOneStore) {
  // Two uuids on one store would let two syncs write it at once.
  const std::string text = absl::StrReplaceAll(
      Config(), {{"tcp://127.0.0.1:7170", dir_.Sub("local")}, {R"(, "keyFile": "node2.key")", ""}});
  ExpectError(text, "backupStorages[1].store", "already the store of another backup storage");
}

TEST_F(RegistryTest, ARadosPoolIsAStoreToo) {
  const std::string rados =
      R"({"uuid": "cccccccccccccccccccccccccccccccc", "store": "rados:backups/bs-c",
          "cephConf": "ceph.conf", "cephUser": "chunkferry", "cephKeyring": "c.keyring",
          "cephTimeoutMs": 5000})";
  const std::string text =
      absl::StrReplaceAll(Config(), {{R"("connections": 4,)", R"("connections": 4,)"},
                                     {"\n            ],", absl::StrCat(",\n", rados, "],")}});
  auto r = Parse(text);
  ASSERT_TRUE(r.ok()) << r.status() << text;
  const BackupStorage* c = r->Find("cccccccccccccccccccccccccccccccc");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->rados);
  EXPECT_FALSE(c->remote);
  EXPECT_EQ(c->rados_url.pool, "backups");
  EXPECT_EQ(c->rados_url.ns, "bs-c");
  EXPECT_EQ(c->ceph.conf_path, dir_.Sub("ceph.conf"));  // resolved against the config's folder
  EXPECT_EQ(c->ceph.client_name, "chunkferry");
  EXPECT_EQ(c->ceph.keyring, dir_.Sub("c.keyring"));
  EXPECT_EQ(c->ceph.timeout_ms, 5000);
  ExpectError(absl::StrReplaceAll(text, {{R"("cephTimeoutMs": 5000)", R"("cephTimeoutMs": 5)"}}),
              "backupStorages[2].cephTimeoutMs", "must be in 1000..3600000");
  ExpectError(Config(R"(, "cephTimeoutMs": 5000)"), "backupStorages[0]", "are for a RADOS pool");
  // Bad pool names, ceph settings on a directory, a key file on a pool.
  ExpectError(absl::StrReplaceAll(text, {{"rados:backups/bs-c", "rados:back ups"}}),
              "backupStorages[2].store", "letters, digits");
  ExpectError(Config(R"(, "cephUser": "x")"), "backupStorages[0]", "are for a RADOS pool");
  ExpectError(absl::StrReplaceAll(text, {{R"("cephUser": "chunkferry")", R"("keyFile": "k")"}}),
              "backupStorages[2].keyFile", "not a RADOS pool");
  // The same pool twice is one store under two uuids.
  ExpectError(
      absl::StrReplaceAll(text, {{R"("store": "local")", R"("store": "rados:backups/bs-c")"}}),
      "backupStorages", "already the store of another backup storage");
}

}  // namespace
}  // namespace chunkferry::control
