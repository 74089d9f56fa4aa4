// Sync over TCP end to end, with real processes: a `chunkferry serve` daemon on 127.0.0.1 (port
// chosen by the kernel, learned from --ready-file) and `chunkferry sync` pushing and pulling a
// multi-volume group. Covers byte-identical restores from both ends, idempotent re-sync, a v2
// that moves only its new records, a wrong key, and a daemon or client killed mid-sync followed
// by a rerun that converges.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "engine/format/volume_backup.h"
#include "engine/wire/auth.h"
#include "engine/wire/tls.h"
#include "engine/wire/wire_conn.h"
#include "engine/wire/wire_messages.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/net.h"
#include "tests/cli_fixture.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"

namespace chunkferry {
namespace {

using ::chunkferry::testing::TempDir;
using Json = nlohmann::ordered_json;

constexpr size_t kMiB = 1 << 20;

// A store daemon process serving one store.
class Daemon : public testing::DaemonProcess {
 public:
  Daemon(const std::string& store, const std::string& ready_file, const std::string& io,
         const std::string& listen = "127.0.0.1:0", std::vector<std::string> extra = {})
      : DaemonProcess(Argv(store, io, listen, std::move(extra)), ready_file) {}
  std::string url() const { return "tcp://" + address(); }

 private:
  static std::vector<std::string> Argv(const std::string& store, const std::string& io,
                                       const std::string& listen, std::vector<std::string> extra) {
    std::vector<std::string> argv = {CHUNKFERRY_CLI, "serve", "--store", store,
                                     "--listen",     listen,  io};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
};

class SyncTest : public testing::CliFixture {
 protected:
  Json Import(const std::string& store, const std::string& image, const std::string& group,
              const std::string& type) {
    return ParseJson(
        Run({"import", "--store", store, "--image", image, "--group", group, "--volume",
             engine::NewUuid(), "--type", type, "--vm", vm_, "--json", "--quiet"})
            .out);
  }

  Json Sync(const std::string& from, const std::string& to, const std::string& group,
            const std::string& key, int want = 0) {
    auto r = Run({"sync", "--from", from, "--to", to, "--group", group, "--key-file", key, "--json",
                  "--quiet"},
                 want);
    return want == 0 ? ParseJson(r.out) : Json{{"stderr", r.err}};
  }

  // `store` verifies clean and each (backup uuid, image) restores byte for byte.
  void ExpectVerifiesAndRestores(const std::string& store,
                                 const std::vector<std::pair<std::string, std::string>>& backups) {
    const Json verify = ParseJson(Run({"verify", "--store", store, "--json", "--quiet"}).out);
    EXPECT_EQ(verify.value("ok", false), true) << verify.dump();
    const std::string out = tmp_.Sub("out");
    for (const auto& [uuid, image] : backups) {
      Run({"restore", "--store", store, "--backup", uuid, "--output", out, "--quiet", "--force"});
      EXPECT_TRUE(testing::FilesEqual(image, out)) << uuid;
    }
  }

  const std::string vm_ = engine::NewUuid();
};

TEST_P(SyncTest, PushPullResyncAndIncremental) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b"), c = tmp_.Sub("c");
  for (const auto& s : {a, b, c}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string key = b + "/auth.key";
  ASSERT_TRUE(engine::LoadKeyFile(key).ok()) << "store init made no key file";

  // One Root and two Data volumes; the second Data volume repeats part of the first, so the
  // group dedupes across volumes.
  const std::string root = tmp_.Sub("root.img"), d1 = tmp_.Sub("d1.img"), d2 = tmp_.Sub("d2.img");
  testing::WriteMixedFile(root, 6 * kMiB + 4321, 11);
  testing::WriteTextFile(d1, 4 * kMiB, 12);
  testing::WriteTextFile(d2, 4 * kMiB, 12);
  const std::string group = engine::NewUuid();
  std::vector<std::pair<std::string, std::string>> volumes;  // backup uuid, image
  volumes.emplace_back(Import(a, root, group, "Root").value("uuid", ""), root);
  volumes.emplace_back(Import(a, d1, group, "Data").value("uuid", ""), d1);
  volumes.emplace_back(Import(a, d2, group, "Data").value("uuid", ""), d2);
  const uint64_t a_packs = testing::TotalPackBytes(a);

  Daemon daemon(b, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty()) << "the daemon did not start";

  // Push: every stored record of A crosses once.
  const Json push = Sync(a, daemon.url(), group, key);
  EXPECT_EQ(push.value("volumes", 0), 3) << push.dump();
  EXPECT_GT(push.value("bytesSent", uint64_t{0}), 0u) << push.dump();
  EXPECT_LE(push.value("bytesSent", uint64_t{0}), a_packs) << push.dump();
  // Again: nothing moves.
  const Json again = Sync(a, daemon.url(), group, key);
  EXPECT_EQ(again.value("bytesSent", uint64_t{1}), 0u) << again.dump();
  EXPECT_EQ(again.value("chunksMissing", uint64_t{1}), 0u) << again.dump();

  // A wrong key is refused, clearly, and changes nothing.
  const std::string wrong = tmp_.Sub("wrong.key");
  ASSERT_TRUE(engine::WriteNewKeyFile(wrong).ok());
  const Json refused = Sync(a, daemon.url(), group, wrong, 1);
  EXPECT_TRUE(absl::StrContains(refused.value("stderr", ""), "authentication")) << refused.dump();

  // Pull into C and restore every volume byte for byte.
  const Json pull = Sync(daemon.url(), c, group, key);
  EXPECT_EQ(pull.value("volumes", 0), 3) << pull.dump();
  for (size_t i = 0; i < volumes.size(); ++i) {
    const std::string out = tmp_.Sub(absl::StrCat("pulled", i));
    Run({"restore", "--store", c, "--backup", volumes[i].first, "--output", out, "--quiet"});
    EXPECT_TRUE(testing::FilesEqual(volumes[i].second, out)) << i;
  }

  // v2 of the first Data volume with scattered 4 KiB rewrites: only its new records move.
  const std::string d1v2 = tmp_.Sub("d1v2.img");
  {
    std::vector<uint8_t> bytes = testing::ReadFile(d1);
    const auto noise = testing::RandomBytes(bytes.size() / 100, 99);
    const size_t blocks = bytes.size() / 4096, changed = noise.size() / 4096;
    for (size_t k = 0; k < changed; ++k) {
      const size_t at = (k * 7919 % blocks) * 4096;
      std::copy_n(noise.begin() + k * 4096, 4096, bytes.begin() + at);
    }
    testing::WriteFile(d1v2, bytes);
  }
  const std::string group2 = engine::NewUuid();
  const uint64_t before = testing::TotalPackBytes(a);
  const Json v2 = Import(a, d1v2, group2, "Root");
  const uint64_t grown = testing::TotalPackBytes(a) - before;
  ASSERT_GT(grown, 0u);
  const Json inc = Sync(a, daemon.url(), group2, key);
  EXPECT_EQ(inc.value("bytesSent", uint64_t{0}), grown) << inc.dump();

  // The daemon stops cleanly; the served store verifies and restores the v2.
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  const Json verify = ParseJson(Run({"verify", "--store", b, "--json", "--quiet"}).out);
  EXPECT_EQ(verify.value("ok", false), true) << verify.dump();
  const std::string out = tmp_.Sub("v2-out");
  Run({"restore", "--store", b, "--backup", v2.value("uuid", ""), "--output", out, "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(d1v2, out));
}

// restore straight from a daemon: every volume byte for byte in both verify modes, without a
// local copy of the group; a store with keyed ids (whose key stays on the daemon's node) restores
// with checksum verification only, and asking for full verification says so.
TEST_P(SyncTest, RestoreStraightFromADaemon) {
  const std::string a = tmp_.Sub("a"), k = tmp_.Sub("keyed"), idkey = tmp_.Sub("id.key");
  const std::string hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  testing::WriteFile(idkey, {reinterpret_cast<const uint8_t*>(hex.data()), hex.size()});
  ASSERT_EQ(::chmod(idkey.c_str(), 0600), 0);
  Run({"store", "init", "--store", a, "--quiet"});
  Run({"store", "init", "--store", k, "--id-key-file", idkey, "--quiet"});
  const std::string root = tmp_.Sub("root.img"), data = tmp_.Sub("data.img");
  testing::WriteMixedFile(root, 3 * kMiB + 99, 51);
  testing::WriteSparseFile(data, 5 * kMiB, {{kMiB, 300000}, {4 * kMiB, 4096}}, 52);
  const std::string group = engine::NewUuid();
  std::vector<std::pair<std::string, std::string>> volumes;  // backup uuid, image
  for (const auto& store : {a, k}) {
    volumes.emplace_back(Import(store, root, group, "Root").value("uuid", ""), root);
    volumes.emplace_back(Import(store, data, group, "Data").value("uuid", ""), data);
  }
  Daemon plain(a, tmp_.Sub("ready-a"), IoFlag());
  Daemon keyed(k, tmp_.Sub("ready-k"), IoFlag());
  ASSERT_FALSE(plain.address().empty() || keyed.address().empty()) << "a daemon did not start";
  const std::string out = tmp_.Sub("out");
  for (const char* verify : {"full", "checksum"}) {
    for (size_t i = 0; i < 2; ++i) {
      const Json r = ParseJson(Run({"restore", "--store", plain.url(), "--key-file",
                                    a + "/auth.key", "--backup", volumes[i].first, "--output", out,
                                    "--force", "--verify", verify, "--json", "--quiet"})
                                   .out);
      EXPECT_GT(r.value("storedBytes", uint64_t{0}), 0u) << r.dump();
      EXPECT_TRUE(testing::FilesEqual(volumes[i].second, out)) << verify << " " << i;
    }
  }
  EXPECT_LT(testing::AllocatedBytes(out), uint64_t{5 * kMiB}) << "holes were written out";
  // To standard output, from the directory and from the daemon: the image's bytes alone (the
  // --json report goes to standard error), and the same report of holes.
  const auto image = testing::ReadFile(data);
  std::vector<Json> reports;
  for (const std::string& store : {a, plain.url()}) {
    std::vector<std::string> args = {"restore",  "--store", store,    "--backup", volumes[1].first,
                                     "--output", "-",       "--json", "--quiet"};
    if (store != a) args.insert(args.end(), {"--key-file", a + "/auth.key"});
    const auto r = Run(args);
    EXPECT_TRUE(std::vector<uint8_t>(r.out.begin(), r.out.end()) == image)
        << store << ": standard output is not the image (" << r.out.size() << " bytes)";
    reports.push_back(ParseJson(r.err));
  }
  EXPECT_GT(reports[0].value("holeBytes", uint64_t{0}), 0u) << reports[0].dump();
  EXPECT_EQ(reports[0].value("holeBytes", uint64_t{0}), reports[1].value("holeBytes", uint64_t{1}))
      << reports[0].dump() << " " << reports[1].dump();
  EXPECT_EQ(reports[0].value("dataBytes", uint64_t{0}), reports[1].value("dataBytes", uint64_t{1}));
  const auto refused = Run({"restore", "--store", keyed.url(), "--key-file", k + "/auth.key",
                            "--backup", volumes[2].first, "--output", tmp_.Sub("never")},
                           2);
  EXPECT_TRUE(absl::StrContains(refused.err, "--verify checksum")) << refused.err;
  EXPECT_FALSE(testing::FileExists(tmp_.Sub("never")));
  Run({"restore", "--store", keyed.url(), "--key-file", k + "/auth.key", "--backup",
       volumes[2].first, "--output", out, "--force", "--verify", "checksum", "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(root, out));
  // No key file for a daemon is a usage error, a wrong backup a clear failure.
  Run({"restore", "--store", plain.url(), "--backup", volumes[0].first, "--output", out}, 2);
  Run({"restore", "--store", plain.url(), "--key-file", a + "/auth.key", "--backup",
       engine::NewUuid(), "--output", tmp_.Sub("never")},
      1);
  EXPECT_FALSE(testing::FileExists(tmp_.Sub("never")));
}

// delete and gc of a store a daemon serves go through the daemon; the store stays whole.
TEST_P(SyncTest, DeleteAndGcThroughTheDaemon) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string key = b + "/auth.key";
  const std::string old_img = tmp_.Sub("old.img"), new_img = tmp_.Sub("new.img");
  testing::WriteRandomFile(old_img, 3 * kMiB, 21);
  testing::WriteRandomFile(new_img, 1 * kMiB, 22);
  const std::string old_group = engine::NewUuid(), new_group = engine::NewUuid();
  Import(a, old_img, old_group, "Root");
  const std::string kept = Import(a, new_img, new_group, "Root").value("uuid", "");

  Daemon daemon(b, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty()) << "the daemon did not start";
  Sync(a, daemon.url(), old_group, key);
  Sync(a, daemon.url(), new_group, key);

  const Json deleted = ParseJson(
      Run({"delete", "--store", daemon.url(), "--group", old_group, "--key-file", key, "--json"})
          .out);
  EXPECT_EQ(deleted["groups_removed"], Json::array({old_group})) << deleted.dump();
  // The daemon holds the store: a local gc is refused, pointing at the daemon.
  auto busy = Run({"gc", "--store", b, "--quiet"}, 1);
  EXPECT_TRUE(absl::StrContains(busy.err, "being written by another process")) << busy.err;
  Run({"gc", "--store", daemon.url()}, 2);  // no key
  const Json gc = ParseJson(Run({"gc", "--store", daemon.url(), "--key-file", key, "--json"}).out);
  EXPECT_GE(gc.value("bytes_reclaimed", uint64_t{0}), 3 * kMiB) << gc.dump();
  EXPECT_EQ(gc.value("manifests", 0), 1) << gc.dump();

  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  const Json verify = ParseJson(Run({"verify", "--store", b, "--json", "--quiet"}).out);
  EXPECT_EQ(verify.value("ok", false), true) << verify.dump();
  EXPECT_LT(testing::TotalPackBytes(b), 2 * kMiB);
  const std::string out = tmp_.Sub("kept.out");
  Run({"restore", "--store", b, "--backup", kept, "--output", out, "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(new_img, out));
}

// Named keys end to end: `key add` makes them, `serve --keys` enforces each one's rights,
// `key remove` + SIGHUP revokes one while the daemon runs, and a broken keys file on SIGHUP
// keeps the keys in force.
TEST_P(SyncTest, NamedKeysAreEnforcedAndReloadedOnSighup) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b"), c = tmp_.Sub("c");
  for (const auto& s : {a, b, c}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string keys = tmp_.Sub("keys"), replica = tmp_.Sub("replica.key"),
                    restore = tmp_.Sub("restore.key");
  Run({"key", "add", "--keys", keys, "--name", "replica", "--rights", "append", "--out", replica});
  Run({"key", "add", "--keys", keys, "--name", "restore", "--rights", "read", "--out", restore});
  // A bad right changes nothing: no client file, the keys file as it was.
  const std::vector<uint8_t> keys_before = testing::ReadFile(keys);
  Run({"key", "add", "--keys", keys, "--name", "x", "--rights", "write", "--out",
       tmp_.Sub("x.key")},
      1);
  EXPECT_FALSE(testing::FileExists(tmp_.Sub("x.key")));
  EXPECT_EQ(testing::ReadFile(keys), keys_before);

  const std::string image = tmp_.Sub("root.img"), image2 = tmp_.Sub("root2.img");
  testing::WriteMixedFile(image, 3 * kMiB, 31);
  testing::WriteMixedFile(image2, 2 * kMiB, 32);
  const std::string group = engine::NewUuid(), group2 = engine::NewUuid();
  const std::string backup = Import(a, image, group, "Root").value("uuid", "");
  Import(a, image2, group2, "Root");

  Daemon daemon(b, tmp_.Sub("ready"), IoFlag(), "127.0.0.1:0", {"--keys", keys});
  ASSERT_FALSE(daemon.address().empty()) << "the daemon did not start";

  Sync(a, daemon.url(), group, replica);
  // The replica's key cannot pull or delete; the reader's cannot push or delete.
  EXPECT_TRUE(absl::StrContains(Sync(daemon.url(), c, group, replica, 1).value("stderr", ""),
                                "may not send"));
  EXPECT_TRUE(absl::StrContains(Sync(a, daemon.url(), group2, restore, 1).value("stderr", ""),
                                "(rights: read) may not send APPEND"));
  auto del = Run({"delete", "--store", daemon.url(), "--group", group, "--key-file", restore}, 1);
  EXPECT_TRUE(absl::StrContains(del.err, "may not send DELETE")) << del.err;
  Sync(daemon.url(), c, group, restore);
  ExpectVerifiesAndRestores(c, {{backup, image}});
  // What the replica added is counted in the store's key-usage file.
  auto usage = io::ReadFileToString(b + "/key-usage");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_TRUE(absl::StartsWith(*usage, "replica ")) << *usage;

  // Revoked while the daemon runs.
  Run({"key", "remove", "--keys", keys, "--name", "replica"});
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  bool revoked = false;
  for (int i = 0; i < 100 && !revoked; ++i) {
    auto r = testing::RunProcess({CHUNKFERRY_CLI, "sync", "--from", a, "--to", daemon.url(),
                                  "--group", group2, "--key-file", replica, IoFlag()});
    revoked = r.exit_code == 1 && absl::StrContains(r.err, "authentication");
    if (!revoked) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(revoked);

  // A broken keys file on SIGHUP: the daemon keeps the keys it has and goes on serving.
  { testing::WriteFile(keys, {reinterpret_cast<const uint8_t*>("nonsense\n"), 9}); }
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Sync(daemon.url(), c, group, restore);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
}

// `serve --tls-cert` and `sync --tls-ca` / `--tls-peer-sha256`: the sync goes over TLS and
// restores identically; a plain client, an untrusted certificate and a wrong fingerprint are
// refused and change nothing.
TEST_P(SyncTest, SyncOverTlsAndTheRefusalsAroundIt) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b"), c = tmp_.Sub("c");
  for (const auto& s : {a, b, c}) Run({"store", "init", "--store", s, "--quiet"});
  testing::TlsIdentity ca, server, stranger;
  ASSERT_TRUE(ca.Make(tmp_.path(), "ca", true, nullptr).ok());
  ASSERT_TRUE(server.Make(tmp_.path(), "server", false, &ca).ok());
  ASSERT_TRUE(stranger.Make(tmp_.path(), "stranger", false, nullptr).ok());
  const std::string image = tmp_.Sub("root.img");
  testing::WriteMixedFile(image, 3 * kMiB, 41);
  const std::string group = engine::NewUuid();
  const std::string backup = Import(a, image, group, "Root").value("uuid", "");
  const std::string key = b + "/auth.key";

  Daemon daemon(b, tmp_.Sub("ready"), IoFlag(), "127.0.0.1:0",
                {"--tls-cert", server.cert_file(), "--tls-key", server.key_file()});
  ASSERT_FALSE(daemon.address().empty()) << "the daemon did not start";
  auto sync = [&](const std::string& from, const std::string& to, std::vector<std::string> tls,
                  int want) {
    std::vector<std::string> args = {"sync",    "--from", from,         "--to", to,
                                     "--group", group,    "--key-file", key,    "--quiet"};
    args.insert(args.end(), tls.begin(), tls.end());
    return Run(args, want);
  };
  auto plain = sync(a, daemon.url(), {}, 1);
  EXPECT_TRUE(absl::StrContains(plain.err, "speaks TLS only")) << plain.err;
  auto untrusted = sync(a, daemon.url(), {"--tls-ca", stranger.cert_file()}, 1);
  EXPECT_TRUE(absl::StrContains(untrusted.err, "certificate")) << untrusted.err;
  auto pin = engine::CertificateSha256(stranger.cert_file());
  ASSERT_TRUE(pin.ok());
  sync(a, daemon.url(), {"--tls-peer-sha256", *pin}, 1);
  auto listed = testing::ListFiles(b + "/groups");
  EXPECT_TRUE(listed.empty()) << "a refused sync published a group";

  sync(a, daemon.url(), {"--tls-ca", ca.cert_file(), "--tls-name", "127.0.0.1"}, 0);
  auto good_pin = engine::CertificateSha256(server.cert_file());
  ASSERT_TRUE(good_pin.ok());
  sync(daemon.url(), c, {"--tls-peer-sha256", *good_pin}, 0);
  ExpectVerifiesAndRestores(c, {{backup, image}});
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
}

TEST_P(SyncTest, KilledDaemonOrClientThenRerunConverges) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string key = b + "/auth.key";
  // Incompressible data, so that the transfer takes long enough to be cut.
  const std::string img = tmp_.Sub("big.img");
  testing::WriteRandomFile(img, 48 * kMiB, 5);
  const std::string group = engine::NewUuid();
  const std::string backup = Import(a, img, group, "Root").value("uuid", "");
  const std::string ready = tmp_.Sub("ready");

  int cut_in_flight = 0;
  for (const char* victim : {"daemon", "client"}) {
    SCOPED_TRACE(victim);
    Daemon daemon(b, ready, IoFlag());
    ASSERT_FALSE(daemon.address().empty());
    const uint64_t start = testing::TotalPackBytes(b);
    const pid_t sync =
        testing::StartProcess({CHUNKFERRY_CLI, "sync", "--from", a, "--to", daemon.url(), "--group",
                               group, "--key-file", key, "--quiet", IoFlag()});
    // Cut it once the destination has some of the data, or after a while.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline &&
           testing::TotalPackBytes(b) < start + 4 * kMiB) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    int early = 0;
    const bool in_flight = ::waitpid(sync, &early, WNOHANG) == 0;
    if (in_flight) ++cut_in_flight;
    if (std::string(victim) == "daemon") {
      daemon.Stop(SIGKILL);
      int status = early;
      if (in_flight) ::waitpid(sync, &status, 0);
      // The client noticed and failed cleanly (or finished first, if the machine was quick).
      EXPECT_TRUE(WIFEXITED(status));
    } else {
      ::kill(sync, SIGKILL);
      int status = 0;
      if (in_flight) ::waitpid(sync, &status, 0);
    }
  }
  // At least one of the two cuts must have caught a sync in flight, or nothing was tested.
  EXPECT_GT(cut_in_flight, 0);
  // No half group is visible on the destination.
  {
    auto ls = Run({"ls", "--store", b, "--json"});
    EXPECT_FALSE(absl::StrContains(ls.out, group)) << ls.out;
  }
  // The rerun converges and sends no more than what is missing.
  Daemon daemon(b, ready, IoFlag());
  ASSERT_FALSE(daemon.address().empty());
  const Json rerun = Sync(a, daemon.url(), group, key);
  EXPECT_LE(rerun.value("bytesSent", uint64_t{0}), testing::TotalPackBytes(a)) << rerun.dump();
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  ExpectVerifiesAndRestores(b, {{backup, img}});
}

// A daemon that stops answering mid-sync (SIGSTOP: the process is there, the socket open, nothing
// moves) makes the client give up after --io-timeout seconds without progress, with an error that
// says so; once the daemon runs again it keeps serving and the rerun converges.
TEST_P(SyncTest, AStalledDaemonTimesOutAndKeepsServingAfterwards) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string key = b + "/auth.key";
  const std::string img = tmp_.Sub("big.img");
  testing::WriteRandomFile(img, 48 * kMiB, 6);
  const std::string group = engine::NewUuid();
  const std::string backup = Import(a, img, group, "Root").value("uuid", "");
  Daemon daemon(b, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty());

  const std::string err = tmp_.Sub("sync.err");
  const uint64_t start = testing::TotalPackBytes(b);
  const pid_t sync = testing::StartProcess(
      {"/bin/sh", "-c",
       absl::StrCat("exec '", CHUNKFERRY_CLI, "' sync --from '", a, "' --to ", daemon.url(),
                    " --group ", group, " --key-file '", key, "' --io-timeout 2 --quiet ", IoFlag(),
                    " 2>'", err, "'")});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline &&
         testing::TotalPackBytes(b) < start + 2 * kMiB) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int status = 0;
  if (::waitpid(sync, &status, WNOHANG) != 0) {
    GTEST_SKIP() << "the sync finished before the daemon could be stopped";
  }
  ::kill(daemon.pid(), SIGSTOP);
  const auto stopped = std::chrono::steady_clock::now();
  ::waitpid(sync, &status, 0);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  ::kill(daemon.pid(), SIGCONT);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0) << "a sync against a stopped daemon cannot succeed";
  auto text = io::ReadFileToString(err);
  ASSERT_TRUE(text.ok());
  EXPECT_TRUE(absl::StrContains(*text, "no progress for 2 s")) << *text;
  // Not a result check on speed: the client gave up on its own, long before the default 60 s.
  EXPECT_LT(waited, 50) << *text;
  EXPECT_FALSE(absl::StrContains(Run({"ls", "--store", b, "--json"}).out, group));

  // The daemon, running again, serves the rerun; the group lands whole.
  Sync(a, daemon.url(), group, key);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  ExpectVerifiesAndRestores(b, {{backup, img}});
}

// The daemon dies (SIGKILL, as in a power cut) right after each commit step of a push in turn:
// after the flush (chunks durable, no manifest), after the first and the second manifest (no
// group), after the group (published, not acknowledged). Each time the sync fails, verify passes,
// the group is visible only when it is whole, and a rerun converges to byte-identical restores.
TEST_P(SyncTest, ADaemonCrashAfterEachCommitStepLeavesNoHalfGroup) {
  const std::string a = tmp_.Sub("a");
  Run({"store", "init", "--store", a, "--quiet"});
  const std::string root = tmp_.Sub("root.img"), data = tmp_.Sub("data.img");
  testing::WriteMixedFile(root, 2 * kMiB + 123, 31);
  testing::WriteTextFile(data, kMiB, 32);
  const std::string group = engine::NewUuid();
  const std::vector<std::pair<std::string, std::string>> volumes = {
      {Import(a, root, group, "Root").value("uuid", ""), root},
      {Import(a, data, group, "Data").value("uuid", ""), data}};

  for (const char* step : {"flush", "manifest:1", "manifest:2", "group"}) {
    SCOPED_TRACE(step);
    const std::string b = tmp_.Sub(absl::StrCat("b-", absl::StrReplaceAll(step, {{":", "-"}})));
    Run({"store", "init", "--store", b, "--quiet"});
    const std::string key = b + "/auth.key";
    ::setenv("CHUNKFERRY_SERVE_CRASH_AT", step, 1);
    auto crashing = std::make_unique<Daemon>(b, tmp_.Sub("ready"), IoFlag());
    ::unsetenv("CHUNKFERRY_SERVE_CRASH_AT");
    ASSERT_FALSE(crashing->address().empty());
    const Json failed = Sync(a, crashing->url(), group, key, 1);
    const int status = crashing->Wait();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the daemon did not crash at " << step << ": " << failed.dump();

    ExpectVerifiesAndRestores(b, {});
    const bool visible = absl::StrContains(Run({"ls", "--store", b, "--json"}).out, group);
    EXPECT_EQ(visible, std::string(step) == "group") << "a group is visible only when whole";

    Daemon daemon(b, tmp_.Sub("ready"), IoFlag());
    ASSERT_FALSE(daemon.address().empty());
    Sync(a, daemon.url(), group, key);
    EXPECT_EQ(daemon.Stop(SIGTERM), 0);
    ExpectVerifiesAndRestores(b, volumes);
  }
}

// A peer holding the key can make the daemon allocate a whole frame (up to max_frame, 64 MiB)
// per connection. When memory runs out (here: an address-space limit set on the running daemon
// just above what it uses), that connection ends and the daemon goes on serving the others.
TEST_P(SyncTest, AnAllocationFailureEndsOneConnectionNotTheDaemon) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers reserve address space that RLIMIT_AS cannot leave them";
#else
  const std::string b = tmp_.Sub("b");
  Run({"store", "init", "--store", b, "--quiet"});
  auto key = engine::LoadKeyFile(b + "/auth.key");
  ASSERT_TRUE(key.ok()) << key.status();
  Daemon daemon(b, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty());
  auto status = io::ReadFileToString(absl::StrCat("/proc/", daemon.pid(), "/status"));
  ASSERT_TRUE(status.ok());
  const size_t at = status->find("VmSize:");
  ASSERT_NE(at, std::string::npos);
  const uint64_t vm_kib = std::strtoull(status->c_str() + at + 7, nullptr, 10);
  // Room for a connection (its thread stacks, its queue) but not for the frame below.
  const rlimit limit{(vm_kib << 10) + (48u << 20), RLIM_INFINITY};
  ASSERT_EQ(::prlimit(daemon.pid(), RLIMIT_AS, &limit, nullptr), 0);

  const size_t colon = daemon.address().rfind(':');
  const io::Endpoint ep{daemon.address().substr(0, colon),
                        static_cast<uint16_t>(std::stoi(daemon.address().substr(colon + 1)))};
  auto dial = [&]() -> std::unique_ptr<engine::WireConn> {
    auto fd = io::Connect(ep, 5000);
    if (!fd.ok()) return nullptr;
    auto wc = engine::WireConn::Make(*std::move(fd), "daemon", GetParam());
    if (!wc.ok() || !engine::ClientHandshake(**wc, *key, "").ok()) return nullptr;
    return *std::move(wc);
  };
  {
    auto greedy = dial();
    ASSERT_NE(greedy, nullptr);
    const std::vector<uint8_t> big(60u << 20, 0x5a);  // an APPEND the daemon must hold whole
    (void)greedy->Send(engine::MsgType::kAppend, absl::MakeConstSpan(big));
    EXPECT_FALSE(greedy->Recv(20'000).ok()) << "the daemon answered a frame it cannot hold";
  }
  int wait_status = 0;
  ASSERT_EQ(::waitpid(daemon.pid(), &wait_status, WNOHANG), 0) << "the daemon died";
  auto honest = dial();
  ASSERT_NE(honest, nullptr) << "the daemon no longer serves";
  const codec::ChunkId id{1, 2};
  ASSERT_TRUE(honest->Send(engine::MsgType::kHave, engine::EncodeHave({&id, 1})).ok());
  EXPECT_TRUE(honest->Expect(engine::MsgType::kHaveReply).ok());
  honest.reset();
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
#endif
}

TEST_P(SyncTest, BadDaemonAddressAndFlagsAreClearErrors) {
  const std::string a = tmp_.Sub("a");
  Run({"store", "init", "--store", a, "--quiet"});
  // Nothing listens on port 1.
  auto r = Run({"sync", "--from", a, "--to", "tcp://127.0.0.1:1", "--group", engine::NewUuid(),
                "--key-file", a + "/auth.key", "--quiet"},
               1);
  EXPECT_TRUE(absl::StrContains(r.err, "127.0.0.1:1")) << r.err;
  Run({"sync", "--from", a, "--to", "tcp://127.0.0.1:99999", "--group", engine::NewUuid()}, 2);
  for (const char* t : {"0", "-5", "1.5", "86401"}) {
    r = Run({"sync", "--from", a, "--to", "tcp://127.0.0.1:1", "--group", engine::NewUuid(),
             "--key-file", a + "/auth.key", "--io-timeout", t},
            2);
    EXPECT_TRUE(absl::StrContains(r.err, "--io-timeout")) << r.err;
  }
  // A crash point the daemon does not know is refused before it serves anything.
  ::setenv("CHUNKFERRY_SERVE_CRASH_AT", "manifest:0", 1);
  r = Run({"serve", "--store", a, "--listen", "127.0.0.1:0"}, 2);
  ::unsetenv("CHUNKFERRY_SERVE_CRASH_AT");
  EXPECT_TRUE(absl::StrContains(r.err, "CHUNKFERRY_SERVE_CRASH_AT")) << r.err;
  Run({"serve", "--store", a, "--listen", "nonsense"}, 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, SyncTest, ::testing::ValuesIn(testing::AllBackends()),
                         [](const auto& p) { return std::string(io::BackendName(p.param)); });

}  // namespace
}  // namespace chunkferry
