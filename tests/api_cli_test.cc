// `chunkferry api` as a real process: started with a registry config on 127.0.0.1 (port chosen
// by the kernel, learned from --ready-file), it serves a synchronous sync and a job, stops
// cleanly on SIGTERM, and the destination restores byte for byte; a bad config is refused with a
// clear message and a nonzero exit.
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/format/volume_backup.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "tests/cli_fixture.h"
#include "tests/test_util.h"
#include "tests/tls_identity.h"

namespace chunkferry {
namespace {

constexpr size_t kMiB = 1 << 20;
constexpr char kJsonType[] = "application/json;charset=UTF-8";

// An API daemon process.
class ApiDaemon : public testing::DaemonProcess {
 public:
  ApiDaemon(const std::string& config, const std::string& ready_file, const std::string& io,
            const std::vector<std::string>& extra = {})
      : DaemonProcess(Args(config, io, extra), ready_file) {}

 private:
  static std::vector<std::string> Args(const std::string& config, const std::string& io,
                                       const std::vector<std::string>& extra) {
    std::vector<std::string> args = {CHUNKFERRY_CLI, "api",         "--config", config,
                                     "--listen",     "127.0.0.1:0", io};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

class ApiCliTest : public testing::CliFixture {
 protected:
  std::string Import(const std::string& store, const std::string& image, const std::string& type) {
    return ParseJson(
               Run({"import", "--store", store, "--image", image, "--group", group_, "--volume",
                    engine::NewUuid(), "--type", type, "--vm", vm_, "--json", "--quiet"})
                   .out)
        .value("uuid", "");
  }

  // Writes a registry config naming stores by paths relative to it.
  std::string WriteConfig(const Json& config) {
    const std::string path = tmp_.Sub("registry.json");
    const std::string text = config.dump(2);
    testing::WriteFile(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
    ::chmod(path.c_str(), 0600);  // it lists sessions: refused when others may read it
    return path;
  }

  // The registry both tests use: store `a` (source) and `b` (destination), one session.
  std::string WriteStoresConfig() {
    return WriteConfig({{"backupStorages",
                         {{{"uuid", src_}, {"name", "local"}, {"store", "a"}},
                          {{"uuid", dst_}, {"name", "remote"}, {"store", "b"}}}},
                        {"sessions", {session_}}});
  }

  // An HTTP client of the daemon at HOST:PORT, patient enough for a whole sync.
  static std::unique_ptr<httplib::Client> ClientOf(const std::string& address) {
    const size_t colon = address.rfind(':');
    auto client = std::make_unique<httplib::Client>(address.substr(0, colon),
                                                    std::stoi(address.substr(colon + 1)));
    client->set_read_timeout(std::chrono::seconds(300));
    return client;
  }

  // Polls job `job` until it is no longer running (2 minutes at most): the last answer.
  static httplib::Result PollJob(httplib::Client& client, const std::string& job) {
    const std::string poll = absl::StrCat("/zstack/v1/api-jobs/", job);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    auto done = client.Get(poll.c_str());
    while (done && done->status == 202 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      done = client.Get(poll.c_str());
    }
    return done;
  }

  const std::string group_ = engine::NewUuid();
  const std::string vm_ = engine::NewUuid();
  const std::string src_ = engine::NewUuid(), dst_ = engine::NewUuid();
  const std::string session_ = engine::NewUuid();
};

TEST_P(ApiCliTest, ServesSyncsAndStopsCleanlyOnSigterm) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string root = tmp_.Sub("root.img"), data = tmp_.Sub("data.img");
  testing::WriteMixedFile(root, 3 * kMiB + 100, 21);
  testing::WriteTextFile(data, 2 * kMiB, 22);
  const std::vector<std::pair<std::string, std::string>> volumes = {
      {Import(a, root, "Root"), root}, {Import(a, data, "Data"), data}};
  const std::string config = WriteStoresConfig();

  ApiDaemon daemon(config, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty()) << "the API daemon did not start";
  const auto client_of_daemon = ClientOf(daemon.address());
  httplib::Client& client = *client_of_daemon;
  const std::string path = absl::StrCat("/zstack/v1/vm-backups/", group_, "/actions");
  const std::string body = Json{{"syncVmBackupFromImageStoreBackupStorage",
                                 {{"srcBackupStorageUuid", src_}, {"dstBackupStorageUuid", dst_}}}}
                               .dump();

  // Synchronous: 200 with both volumes held by both storages.
  auto r = client.Put(path.c_str(), {{"Authorization", "OAuth " + session_}}, body, kJsonType);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  ASSERT_EQ(r->status, 200) << r->body;
  const Json result = ParseJson(r->body);
  ASSERT_EQ(result["inventories"].size(), 2u) << r->body;
  for (const auto& inv : result["inventories"]) {
    ASSERT_EQ(inv["backupStorageRefs"].size(), 2u) << inv.dump();
    EXPECT_EQ(inv["backupStorageRefs"][1].value("backupStorageUuid", ""), dst_) << inv.dump();
  }

  // As a job: 202, then polled to 200 with the same inventories' uuids.
  const std::string job = engine::NewUuid();
  auto put = client.Put(path.c_str(), {{"Authorization", "OAuth " + session_}, {"X-Job-UUID", job}},
                        body, kJsonType);
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  EXPECT_EQ(ParseJson(put->body).value("location", ""),
            absl::StrCat("http://", daemon.address(), "/zstack/v1/api-jobs/", job));
  auto done = PollJob(client, job);
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  EXPECT_EQ(ParseJson(done->body)["inventories"][0].value("uuid", ""),
            result["inventories"][0].value("uuid", ""));

  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  // The destination restores every volume byte for byte.
  for (size_t i = 0; i < volumes.size(); ++i) {
    const std::string out = tmp_.Sub(absl::StrCat("out", i));
    Run({"restore", "--store", b, "--backup", volumes[i].first, "--output", out, "--quiet"});
    EXPECT_TRUE(testing::FilesEqual(volumes[i].second, out)) << i;
  }
}

// SIGHUP reloads the registry: a session taken out of it is refused at once (ID.1001) and a new
// one accepted; a config that no longer parses keeps the registry in force.
TEST_P(ApiCliTest, SighupReloadsTheRegistry) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string root = tmp_.Sub("root.img");
  testing::WriteMixedFile(root, kMiB, 23);
  Import(a, root, "Root");
  const std::string config = WriteStoresConfig();
  ApiDaemon daemon(config, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty()) << "the API daemon did not start";
  const auto client = ClientOf(daemon.address());
  const std::string path = absl::StrCat("/zstack/v1/vm-backups/", group_, "/actions");
  const std::string body = Json{{"syncVmBackupFromImageStoreBackupStorage",
                                 {{"srcBackupStorageUuid", src_}, {"dstBackupStorageUuid", dst_}}}}
                               .dump();
  // The body of a synchronous PUT with `session`: 200, or 503 with its ErrorCode.
  auto call = [&](const std::string& session) {
    auto r = client->Put(path.c_str(), {{"Authorization", "OAuth " + session}}, body, kJsonType);
    EXPECT_TRUE(r) << httplib::to_string(r.error());
    return r ? std::pair(r->status, r->body) : std::pair(-1, std::string());
  };
  EXPECT_EQ(call(session_).first, 200);

  const std::string fresh = engine::NewUuid();
  WriteConfig({{"backupStorages",
                {{{"uuid", src_}, {"name", "local"}, {"store", "a"}},
                 {{"uuid", dst_}, {"name", "remote"}, {"store", "b"}}}},
               {"sessions", {fresh}}});
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  bool revoked = false;
  for (int i = 0; i < 100 && !revoked; ++i) {
    const auto [status, text] = call(session_);
    revoked = status == 503 && absl::StrContains(text, "ID.1001");
    if (!revoked) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(revoked) << "the session taken out of the registry was still accepted";
  EXPECT_EQ(call(fresh).first, 200);

  // Broken: the registry in force stays.
  WriteConfig(Json{{"backupStorages", "not a list"}});
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(call(fresh).first, 200);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
}

TEST_P(ApiCliTest, SigtermWaitsForARunningJob) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  // Incompressible, so that the sync is likely still running when the signal comes.
  const std::string root = tmp_.Sub("root.img");
  testing::WriteRandomFile(root, 24 * kMiB, 31);
  const std::string backup = Import(a, root, "Root");
  const std::string config = WriteStoresConfig();
  ApiDaemon daemon(config, tmp_.Sub("ready"), IoFlag());
  ASSERT_FALSE(daemon.address().empty()) << "the API daemon did not start";
  const auto client_of_daemon = ClientOf(daemon.address());
  httplib::Client& client = *client_of_daemon;
  const std::string job = engine::NewUuid();
  auto put = client.Put(absl::StrCat("/zstack/v1/vm-backups/", group_, "/actions").c_str(),
                        {{"Authorization", "OAuth " + session_}, {"X-Job-UUID", job}},
                        Json{{"syncVmBackupFromImageStoreBackupStorage",
                              {{"srcBackupStorageUuid", src_}, {"dstBackupStorageUuid", dst_}}}}
                            .dump(),
                        kJsonType);
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  // Wait until a runner took the job (a queued job is dropped on stop, by design).
  const std::string progress = absl::StrCat("/chunkferry/v1/api-jobs/", job, "/progress");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto p = client.Get(progress.c_str());
    ASSERT_TRUE(p);
    ASSERT_EQ(p->status, 200) << p->body;
    if (ParseJson(p->body).value("phase", "") != "queued") break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the job stayed queued";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // The daemon finishes the sync before it exits: the group is whole on the destination.
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  const std::string out = tmp_.Sub("out");
  Run({"restore", "--store", b, "--backup", backup, "--output", out, "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(root, out));
}

// --tls-cert/--tls-key: the same sync and job over HTTPS (the job's location says https), checked
// by a client that trusts only the test CA; a plain-HTTP client is answered 400 and syncs nothing.
TEST_P(ApiCliTest, ServesSyncsOverHttpsOnly) {
  const std::string a = tmp_.Sub("a"), b = tmp_.Sub("b");
  for (const auto& s : {a, b}) Run({"store", "init", "--store", s, "--quiet"});
  const std::string root = tmp_.Sub("root.img");
  testing::WriteMixedFile(root, 2 * kMiB + 7, 41);
  const std::string backup = Import(a, root, "Root");
  testing::TlsIdentity ca, server;
  ASSERT_TRUE(ca.Make(tmp_.path(), "ca", true, nullptr).ok());
  ASSERT_TRUE(server.Make(tmp_.path(), "api", false, &ca).ok());
  ApiDaemon daemon(WriteStoresConfig(), tmp_.Sub("ready"), IoFlag(),
                   {"--tls-cert", server.cert_file(), "--tls-key", server.key_file()});
  ASSERT_FALSE(daemon.address().empty()) << "the API daemon did not start";
  const std::string path = absl::StrCat("/zstack/v1/vm-backups/", group_, "/actions");
  const std::string body = Json{{"syncVmBackupFromImageStoreBackupStorage",
                                 {{"srcBackupStorageUuid", src_}, {"dstBackupStorageUuid", dst_}}}}
                               .dump();

  auto plain = ClientOf(daemon.address());
  auto refused =
      plain->Put(path.c_str(), {{"Authorization", "OAuth " + session_}}, body, kJsonType);
  ASSERT_TRUE(refused) << httplib::to_string(refused.error());
  EXPECT_EQ(refused->status, 400);

  httplib::Client client(absl::StrCat("https://", daemon.address()));
  client.set_ca_cert_path(ca.cert_file().c_str());
  client.enable_server_certificate_verification(true);
  client.set_read_timeout(std::chrono::seconds(300));
  const std::string job = engine::NewUuid();
  auto put = client.Put(path.c_str(), {{"Authorization", "OAuth " + session_}, {"X-Job-UUID", job}},
                        body, kJsonType);
  ASSERT_TRUE(put) << httplib::to_string(put.error());
  ASSERT_EQ(put->status, 202) << put->body;
  EXPECT_EQ(ParseJson(put->body).value("location", ""),
            absl::StrCat("https://", daemon.address(), "/zstack/v1/api-jobs/", job));
  auto done = PollJob(client, job);
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  EXPECT_EQ(ParseJson(done->body)["inventories"].size(), 1u) << done->body;
  auto sync = client.Put(path.c_str(), {{"Authorization", "OAuth " + session_}}, body, kJsonType);
  ASSERT_TRUE(sync);
  EXPECT_EQ(sync->status, 200) << sync->body;

  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
  const std::string out = tmp_.Sub("out");
  Run({"restore", "--store", b, "--backup", backup, "--output", out, "--quiet"});
  EXPECT_TRUE(testing::FilesEqual(root, out));
}

TEST_P(ApiCliTest, BadConfigIsRefusedClearly) {
  const std::string a = tmp_.Sub("a");
  Run({"store", "init", "--store", a, "--quiet"});
  const std::string config = WriteConfig(
      {{"backupStorages", {{{"uuid", "not-a-uuid"}, {"name", "local"}, {"store", "a"}}}},
       {"sessions", {session_}}});
  auto bad = Run({"api", "--config", config, "--listen", "127.0.0.1:0"}, 1);
  EXPECT_TRUE(absl::StrContains(bad.err, "registry.json")) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "not-a-uuid")) << bad.err;

  auto missing = Run({"api", "--config", tmp_.Sub("nowhere.json"), "--listen", "127.0.0.1:0"}, 1);
  EXPECT_TRUE(absl::StrContains(missing.err, "nowhere.json")) << missing.err;

  auto usage = Run({"api", "--listen", "127.0.0.1:0"}, 2);
  EXPECT_TRUE(absl::StrContains(usage.err, "--config")) << usage.err;
}

INSTANTIATE_TEST_SUITE_P(Backends, ApiCliTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry
