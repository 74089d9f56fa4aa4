// The fixture of the HTTP API's tests: an ApiServer on 127.0.0.1 (port 0) in front of a
// SyncService over three local stores (a source holding one group of three volumes, two empty
// destinations), called with httplib's client, with an injected job clock and the server's log
// captured.
#ifndef CHUNKFERRY_CONTROL_HTTP_API_TEST_FIXTURE_H_
#define CHUNKFERRY_CONTROL_HTTP_API_TEST_FIXTURE_H_

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/api_error.h"
#include "control/http_api.h"
#include "control/job_table.h"
#include "control/registry.h"
#include "control/sync_service.h"
#include "engine/format/volume_backup.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::control {

inline constexpr size_t kMiB = 1 << 20;
inline constexpr char kJsonType[] = "application/json;charset=UTF-8";
inline constexpr char kTextType[] = "text/plain;charset=UTF-8";
inline constexpr int64_t kTtlSeconds = 60;

struct Volume {
  std::string image;
  std::string backup_uuid;
};

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = tmp_.Sub("src");
    dst_ = tmp_.Sub("dst");
    dst2_ = tmp_.Sub("dst2");
    for (const auto& d : {src_, dst_, dst2_}) testing::InitStore(d);
    // Opened once, as a sync does (an empty store makes its index then): "unchanged" below
    // compares with this.
    for (const auto& d : {dst_, dst2_}) {
      auto store = testing::OpenStore(d, io::Backend::kThreads, true, &pool_);
      ASSERT_TRUE(store.ok()) << store.status();
      ASSERT_TRUE((*store)->Close().ok());
    }
    // A Root and two Data volumes, imported and the store closed again: the service opens the
    // stores itself for each sync.
    {
      auto store = testing::OpenStore(src_, io::Backend::kThreads, true, &pool_);
      ASSERT_TRUE(store.ok()) << store.status();
      const std::vector<std::pair<std::string, std::string>> images = {
          {"Root", "root.img"}, {"Data", "data1.img"}, {"Data", "data2.img"}};
      testing::WriteMixedFile(tmp_.Sub("root.img"), 3 * kMiB + 512, 1);
      testing::WriteTextFile(tmp_.Sub("data1.img"), 2 * kMiB, 2);
      testing::WriteRandomFile(tmp_.Sub("data2.img"), kMiB + 4096, 3);
      for (const auto& [type, name] : images) {
        auto meta = testing::Import(**store, pool_, tmp_.Sub(name), group_, type);
        ASSERT_TRUE(meta.ok()) << meta.status();
        volumes_.push_back({tmp_.Sub(name), meta->uuid});
      }
      ASSERT_TRUE((*store)->Close().ok());
    }
    Registry registry;
    for (const auto& [uuid, dir] :
         {std::pair(src_uuid_, src_), std::pair(dst_uuid_, dst_), std::pair(dst2_uuid_, dst2_)}) {
      BackupStorage storage;
      storage.uuid = uuid;
      storage.name = dir.substr(dir.rfind('/') + 1);
      storage.path = dir;
      registry.storages.push_back(std::move(storage));
    }
    registry.sessions = {session_, other_session_};
    ServiceOptions service_options;
    service_options.queue.backend = io::Backend::kThreads;
    service_ = std::make_unique<SyncService>(std::move(registry), service_options);
  }

  void TearDown() override {
    server_.reset();
    service_.reset();
  }

  // Starts the server (options filled in with the test's clock and log capture).
  void StartServer(ApiServerOptions options = {}) {
    options.job_ttl_seconds = kTtlSeconds;
    options.clock = [this] {
      return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms_.load()));
    };
    options.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(line);
    };
    options_ = options;
    server_ = std::make_unique<ApiServer>(*service_, options);
    absl::Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_NE(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(std::chrono::seconds(300));
  }

  std::string Body(const std::string& src, const std::string& dst) const {
    return Json{{std::string(kSyncActionKey),
                 {{"srcBackupStorageUuid", src}, {"dstBackupStorageUuid", dst}}}}
        .dump();
  }
  std::string SyncPath(const std::string& group) const {
    return absl::StrCat("/zstack/v1/vm-backups/", group, "/actions");
  }

  // A PUT with the usual headers unless overridden; fails the test when no response came.
  httplib::Result Put(const std::string& path, const std::string& body,
                      const httplib::Headers& headers) {
    auto r = client_->Put(path.c_str(), headers, body, kJsonType);
    EXPECT_TRUE(r) << "no response: " << httplib::to_string(r.error());
    return r;
  }
  httplib::Result PutSyncAs(const std::string& session, const std::string& dst) {
    return Put(SyncPath(group_), Body(src_uuid_, dst), {{"Authorization", "OAuth " + session}});
  }
  httplib::Result PutSync(const std::string& group, const std::string& dst,
                          httplib::Headers extra = {}) {
    extra.emplace("Authorization", "OAuth " + session_);
    return Put(SyncPath(group), Body(src_uuid_, dst), extra);
  }
  // A job PUT of the group with `session`, polled until it succeeded; returns the job's uuid.
  std::string RunJobToTheEnd(const std::string& session) {
    const std::string job = engine::NewUuid();
    auto put = Put(SyncPath(group_), Body(src_uuid_, dst_uuid_),
                   {{"Authorization", "OAuth " + session}, {"X-Job-UUID", job}});
    EXPECT_TRUE(put && put->status == 202) << (put ? put->body : "no response");
    auto done = Poll(JobPathOf(put, job));
    EXPECT_TRUE(done && done->status == 200) << (done ? done->body : "no response");
    return job;
  }
  httplib::Result Get(const std::string& path, const httplib::Headers& headers = {}) {
    auto r = client_->Get(path.c_str(), headers);
    EXPECT_TRUE(r) << "no response: " << httplib::to_string(r.error());
    return r;
  }

  // Polls a job (as the SDK does: "OAuth null", X-JSON-Schema) until it is not 202 (bounded).
  httplib::Result Poll(const std::string& path) {
    const httplib::Headers headers = {{"Authorization", "OAuth null"}, {"X-JSON-Schema", "true"}};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    auto r = Get(path, headers);
    while (r && r->status == 202 && std::chrono::steady_clock::now() < deadline) {
      EXPECT_EQ(r->body, "{}");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      r = Get(path, headers);
    }
    return r;
  }

  static Json ParseJson(const std::string& text) {
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
    return j;
  }

  // The path of a 202 body's location, after checking its form.
  std::string JobPathOf(const httplib::Result& r, const std::string& want_uuid = "") {
    EXPECT_EQ(r->status, 202) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), kJsonType);
    const Json body = ParseJson(r->body);
    EXPECT_EQ(body.value("apiTimeout", int64_t{0}), options_.api_timeout_ms) << r->body;
    const std::string location = body.value("location", "");
    const std::string prefix =
        absl::StrCat("http://127.0.0.1:", server_->port(), "/zstack/v1/api-jobs/");
    EXPECT_TRUE(absl::StartsWith(location, prefix)) << location;
    const std::string uuid = location.substr(std::min(prefix.size(), location.size()));
    EXPECT_TRUE(IsJobUuid(uuid)) << location;
    if (!want_uuid.empty()) {
      EXPECT_EQ(uuid, want_uuid);
    }
    return absl::StrCat("/zstack/v1/api-jobs/", uuid);
  }

  // Checks a 200 body: three inventories, Root first, each held by the source and `dst`.
  void ExpectInventories(const Json& body, const std::string& dst) {
    ASSERT_TRUE(body.contains("inventories")) << body.dump();
    const Json& inv = body["inventories"];
    ASSERT_EQ(inv.size(), volumes_.size()) << body.dump();
    EXPECT_EQ(inv[0].value("type", ""), "Root");
    for (const auto& v : inv) {
      EXPECT_EQ(v.value("groupUuid", ""), group_);
      std::vector<std::string> storages;
      for (const auto& ref : v["backupStorageRefs"]) {
        storages.push_back(ref.value("backupStorageUuid", ""));
        EXPECT_EQ(ref.value("status", ""), "Ready") << ref.dump();
      }
      EXPECT_NE(std::find(storages.begin(), storages.end(), src_uuid_), storages.end()) << v.dump();
      EXPECT_NE(std::find(storages.begin(), storages.end(), dst), storages.end()) << v.dump();
    }
  }

  std::vector<std::string> Logs() {
    std::lock_guard<std::mutex> lock(log_mu_);
    return log_;
  }

  testing::TempDir tmp_;
  engine::WorkerPool pool_{2};
  std::string src_, dst_, dst2_;
  const std::string group_ = engine::NewUuid();
  const std::string src_uuid_ = engine::NewUuid(), dst_uuid_ = engine::NewUuid(),
                    dst2_uuid_ = engine::NewUuid();
  const std::string session_ = engine::NewUuid();
  const std::string other_session_ = engine::NewUuid();
  std::vector<Volume> volumes_;
  std::unique_ptr<SyncService> service_;
  ApiServerOptions options_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<httplib::Client> client_;
  std::atomic<int64_t> now_ms_{1'000'000};
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_HTTP_API_TEST_FIXTURE_H_
