// The sync API over HTTP, in process: an ApiServer on 127.0.0.1 (port 0) in front of a
// SyncService over three local stores, called with httplib's client. Covers the 400s and their
// order, the call's own errors (503 with an ErrorCode), the synchronous 200, the job convention
// (202 location → polls → 200 with the schema → 404 after the TTL on an injected clock), named
// jobs that never run twice, failing jobs, the progress endpoint, 404/405/413, logs without job
// uuids, the job cap, and two concurrent PUTs of one group.
#include "control/http_api.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "control/access_key.h"
#include "control/api_error.h"
#include "control/fake_management_node.h"
#include "control/http_api_test_fixture.h"
#include "control/job_table.h"
#include "control/registry.h"
#include "control/sync_service.h"
#include "engine/format/volume_backup.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::control {
namespace {

using ::chunkferry::testing::TempDir;
using std::chrono::milliseconds;

TEST_F(HttpApiTest, UnreadableRequestsAre400WithPlainText) {
  StartServer();
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  const std::string good_auth = "OAuth " + session_;
  const std::string body = Body(src_uuid_, dst_uuid_);
  struct Case {
    const char* name;
    httplib::Headers headers;
    std::string body;
    std::string reason;  // a word the plain-text reason holds
  };
  const std::vector<Case> cases = {
      // The platform's own texts (its SDK shows them to the caller).
      {"no Authorization", {}, body, "missing header 'Authorization'"},
      {"not OAuth",
       {{"Authorization", "Bearer " + session_}},
       body,
       "Authorization type must be 'OAuth'"},
      {"a bad X-Job-UUID",
       {{"Authorization", good_auth}, {"X-Job-UUID", "0123456789ABCDEF0123456789ABCDEF"}},
       body,
       "X-Job-UUID"},
      {"a body that is not JSON", {{"Authorization", good_auth}}, "{not json", ""},
      {"no action key",
       {{"Authorization", good_auth}},
       Json{{"somethingElse", {{"srcBackupStorageUuid", src_uuid_}}}}.dump(),
       ""},
      // The checks go in order: a missing header is reported before a bad body.
      {"no Authorization and no JSON", {}, "{not json", "missing header 'Authorization'"},
      {"a bad X-Job-UUID and no JSON",
       {{"Authorization", good_auth}, {"X-Job-UUID", "123"}},
       "{not json",
       "X-Job-UUID"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = Put(SyncPath(group_), c.body, c.headers);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), kTextType);
    EXPECT_FALSE(absl::StripAsciiWhitespace(r->body).empty());
    EXPECT_FALSE(absl::StartsWith(r->body, "{")) << r->body;
    if (!c.reason.empty()) {
      EXPECT_TRUE(absl::StrContains(r->body, c.reason)) << r->body;
    }
  }
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
}

TEST_F(HttpApiTest, UnknownSessionFailsTheCallWithId1001) {
  StartServer();
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  // As on the platform, whatever follows "OAuth" is a session to check: "null" (what its SDK
  // sends after an access-key call), nothing, a made-up uuid.
  for (const char* session : {"null", "", "0123456789abcdef0123456789abcdef"}) {
    auto r = Put(SyncPath(group_), Body(src_uuid_, dst_uuid_),
                 {{"Authorization", absl::StrCat("OAuth ", session)}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), kJsonType);
    const Json body = ParseJson(r->body);
    EXPECT_EQ(body["error"].value("code", ""), kIdInvalidSession) << r->body;
    EXPECT_EQ(body["error"].value("description", ""),
              "The session is invalid, either wrong session id or the session has been expired");
    EXPECT_EQ(body["error"].value("details", ""), "Session expired");
    EXPECT_FALSE(body.contains("inventories"));
  }
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
}

// Access-key callers (PLATFORM-CLIENT.md §2): a signed PUT syncs, as a call and as a job whose
// polls carry "OAuth null" as the SDK's do; a wrong signature is the platform's 403 and changes
// nothing; per-caller job shares count the key.
TEST_F(HttpApiTest, AccessKeyCallersSignTheirCalls) {
  Registry with_keys = *service_->registry();
  with_keys.access_keys.keys = {{"AKIDEXAMPLE", "secret-example", true}};
  service_->ReplaceRegistry(with_keys);
  StartServer();
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  const std::string path = SyncPath(group_);
  auto signed_headers = [&](const std::string& secret) {
    const std::string date =
        absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(), absl::UTCTimeZone());
    // The /zstack context is not signed.
    const std::string sig = AccessKeySignature(secret, "PUT", date, path.substr(7));
    return httplib::Headers{{"Authorization", "ZStack AKIDEXAMPLE:" + sig}, {"date", date}};
  };
  auto bad = Put(path, Body(src_uuid_, dst_uuid_), signed_headers("not-the-secret"));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 403);
  EXPECT_EQ(bad->body, "wrong accessKey signature");
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);

  auto ok = Put(path, Body(src_uuid_, dst_uuid_), signed_headers("secret-example"));
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  ExpectInventories(ParseJson(ok->body), dst_uuid_);

  httplib::Headers job_headers = signed_headers("secret-example");
  const std::string job = engine::NewUuid();
  job_headers.emplace("X-Job-UUID", job);
  auto put = Put(path, Body(src_uuid_, dst2_uuid_), job_headers);
  ASSERT_TRUE(put);
  auto done = Poll(JobPathOf(put, job));
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  ExpectInventories(ParseJson(done->body), dst2_uuid_);
}

// Live sessions: with a management node in the registry, a session the static list lacks is
// asked about there: valid syncs, invalid is ID.1001 (as a call and as a job's poll).
TEST_F(HttpApiTest, LiveSessionsAreCheckedWithTheManagementNode) {
  const std::string fresh = engine::NewUuid();
  testing::FakeManagementNode mn({fresh});
  Registry live = *service_->registry();
  ManagementNode node;
  node.url = mn.url();
  live.management_node = std::make_shared<SessionValidator>(node);
  service_->ReplaceRegistry(live);
  StartServer();
  auto ok = PutSyncAs(fresh, dst_uuid_);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  const std::string stranger = engine::NewUuid();
  auto no = PutSyncAs(stranger, dst_uuid_);
  ASSERT_TRUE(no);
  EXPECT_EQ(no->status, 503);
  EXPECT_EQ(ParseJson(no->body)["error"].value("code", ""), kIdInvalidSession);
  const std::string job = engine::NewUuid();
  auto put = Put(SyncPath(group_), Body(src_uuid_, dst_uuid_),
                 {{"Authorization", "OAuth " + stranger}, {"X-Job-UUID", job}});
  auto poll = Poll(JobPathOf(put, job));
  ASSERT_TRUE(poll);
  EXPECT_EQ(poll->status, 503);
  EXPECT_EQ(ParseJson(poll->body)["error"].value("code", ""), kIdInvalidSession);
  EXPECT_EQ(mn.calls(), 2) << "each session is asked once, then remembered";
}

// X-API-Timeout is seconds, as the platform reads it, and comes back as the job's apiTimeout in
// milliseconds; a value that is not a number is refused before anything runs.
TEST_F(HttpApiTest, ApiTimeoutHeaderIsSecondsAndShowsInTheJob) {
  StartServer();
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  for (const char* bad : {"abc", "0", "-5", "1.5", "99999999999"}) {
    auto r = PutSync(group_, dst_uuid_, {{"X-API-Timeout", bad}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 500) << bad;
    EXPECT_TRUE(absl::StrContains(r->body, "X-API-Timeout")) << r->body;
  }
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
  const std::string job = engine::NewUuid();
  auto put = PutSync(group_, dst_uuid_, {{"X-Job-UUID", job}, {"X-API-Timeout", "90"}});
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  EXPECT_EQ(ParseJson(put->body).value("apiTimeout", int64_t{0}), 90000) << put->body;
  auto done = Poll(absl::StrCat("/zstack/v1/api-jobs/", job));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200) << done->body;
}

TEST_F(HttpApiTest, SynchronousPutAnswers200WithTheInventories) {
  StartServer();
  auto r = PutSync(group_, dst_uuid_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), kJsonType);
  const Json body = ParseJson(r->body);
  ExpectInventories(body, dst_uuid_);
  // Exactly SuccessBody of the result: no schema unless asked for.
  EXPECT_EQ(r->body, SuccessBody(body["inventories"], false).dump());
  EXPECT_FALSE(body.contains("schema"));

  // The group is on the destination, byte for byte.
  {
    auto dst = testing::OpenStore(dst_, io::Backend::kThreads, false, &pool_);
    ASSERT_TRUE(dst.ok()) << dst.status();
    for (size_t i = 0; i < volumes_.size(); ++i) {
      EXPECT_TRUE(testing::RestoresIdentical(**dst, pool_, volumes_[i].backup_uuid,
                                             volumes_[i].image, tmp_.Sub("out")))
          << i;
    }
  }

  // Again, asking for the schema: nothing more is stored, the body carries the schema map.
  const uint64_t packs = testing::TotalPackBytes(dst_);
  auto again = PutSync(group_, dst_uuid_, {{"X-JSON-Schema", "true"}});
  ASSERT_TRUE(again);
  ASSERT_EQ(again->status, 200) << again->body;
  const Json with_schema = ParseJson(again->body);
  ExpectInventories(with_schema, dst_uuid_);
  ASSERT_TRUE(with_schema.contains("schema")) << again->body;
  EXPECT_EQ(with_schema["schema"].value("inventories[0]", ""),
            "org.zstack.header.storage.backup.VolumeBackupInventory");
  EXPECT_EQ(again->body, SuccessBody(with_schema["inventories"], true).dump());
  EXPECT_EQ(testing::TotalPackBytes(dst_), packs);
}

TEST_F(HttpApiTest, UnknownGroupIs503Sys1003AndChangesNothing) {
  StartServer();
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  auto r = PutSync(engine::NewUuid(), dst_uuid_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), kJsonType);
  EXPECT_EQ(ParseJson(r->body)["error"].value("code", ""), kSysNotFound) << r->body;
  EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
}

// Every row of the contract's error list, over HTTP in synchronous mode: 503, the ErrorCode with
// its code and fixed description, and the destination exactly as it was. (SYS.1001, a daemon
// that never answers, is the same path from the service: control/sync_service_test.cc.)
TEST_F(HttpApiTest, EveryErrorRowIs503WithItsCodeAndChangesNothing) {
  // The groups the rows need, beside the fixture's good one.
  const std::string no_root = engine::NewUuid(), two_roots = engine::NewUuid(),
                    damaged = engine::NewUuid();
  {
    auto store = testing::OpenStore(src_, io::Backend::kThreads, true, &pool_);
    ASSERT_TRUE(store.ok()) << store.status();
    testing::WriteRandomFile(tmp_.Sub("extra1.img"), kMiB, 11);
    testing::WriteRandomFile(tmp_.Sub("extra2.img"), kMiB, 12);
    testing::WriteRandomFile(tmp_.Sub("extra3.img"), 2 * kMiB, 13);
    ASSERT_TRUE(testing::Import(**store, pool_, tmp_.Sub("extra1.img"), no_root, "Data").ok());
    ASSERT_TRUE(testing::Import(**store, pool_, tmp_.Sub("extra1.img"), two_roots, "Root").ok());
    ASSERT_TRUE(testing::Import(**store, pool_, tmp_.Sub("extra2.img"), two_roots, "Root").ok());
    auto meta = testing::Import(**store, pool_, tmp_.Sub("extra3.img"), damaged, "Root");
    ASSERT_TRUE(meta.ok()) << meta.status();
    // One record of the damaged group's only volume (random bytes: no other group shares it).
    const auto entries = testing::ManifestEntries(**store, meta->uuid);
    ASSERT_FALSE(entries.empty());
    const auto loc = (*store)->index().Find(entries[entries.size() / 2].id);
    ASSERT_TRUE(loc.has_value());
    ASSERT_TRUE((*store)->Close().ok());
    testing::FlipByte(testing::PackPath(src_, loc->record.pack),
                      testing::PayloadOffset(src_, loc->record) + 10, 0x20);
  }
  StartServer();
  struct Row {
    const char* what;
    std::string group;
    std::string body;
    std::string_view code;
  };
  const std::string good = Body(src_uuid_, dst_uuid_);
  const std::vector<Row> rows = {
      {"a missing field", group_,
       Json{{std::string(kSyncActionKey), {{"srcBackupStorageUuid", src_uuid_}}}}.dump(),
       kSysInvalidArgument},
      {"a malformed storage uuid", group_, Body("NOT-A-UUID", dst_uuid_), kSysInvalidArgument},
      {"a malformed group uuid", "0123456789ABCDEF0123456789ABCDEF", good, kSysInvalidArgument},
      {"the source as destination", group_, Body(dst_uuid_, dst_uuid_), kSysInvalidArgument},
      {"an unknown group", engine::NewUuid(), good, kSysNotFound},
      {"an unknown source", group_, Body(engine::NewUuid(), dst_uuid_), kSysNotFound},
      {"an unknown destination", group_, Body(src_uuid_, engine::NewUuid()), kSysNotFound},
      {"a group without a Root volume", no_root, good, kSysOperationFailed},
      {"a group with two Root volumes", two_roots, good, kSysOperationFailed},
      {"a damaged source record", damaged, good, kSysInternal},
  };
  const auto before = testing::ListFiles(dst_, {"LOCK"});
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    auto r = Put(SyncPath(row.group), row.body, {{"Authorization", "OAuth " + session_}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), kJsonType);
    const Json body = ParseJson(r->body);
    EXPECT_FALSE(body.contains("inventories")) << r->body;
    EXPECT_EQ(body["error"].value("code", ""), row.code) << r->body;
    EXPECT_EQ(body["error"].value("description", ""), ErrorDescription(row.code)) << r->body;
    EXPECT_FALSE(body["error"].value("details", "").empty()) << r->body;
    EXPECT_EQ(testing::ListFiles(dst_, {"LOCK"}), before);
  }
}

TEST_F(HttpApiTest, JobModeRunsThePutAsAJobUntilItExpires) {
  StartServer({.job_mode_default = true, .api_timeout_ms = 7200000});
  auto put = PutSync(group_, dst_uuid_);
  ASSERT_TRUE(put);
  const std::string job = JobPathOf(put);
  const std::string job_uuid = job.substr(job.rfind('/') + 1);

  auto done = Poll(job);
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  EXPECT_EQ(done->get_header_value("Content-Type"), kJsonType);
  const Json body = ParseJson(done->body);
  ExpectInventories(body, dst_uuid_);
  // The poll asked for the schema: every inventory and ref is named, parents first.
  ASSERT_TRUE(body.contains("schema")) << done->body;
  EXPECT_EQ(done->body, SuccessBody(body["inventories"], true).dump());
  EXPECT_EQ(body["schema"].value("inventories[2].backupStorageRefs[1]", ""),
            "org.zstack.header.storage.backup.VolumeBackupStorageRefInventory");
  // Without X-JSON-Schema, no schema.
  auto plain = Get(job);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200);
  EXPECT_FALSE(ParseJson(plain->body).contains("schema"));

  // The progress endpoint reports the finished job.
  auto progress = Get(absl::StrCat("/chunkferry/v1/api-jobs/", job_uuid, "/progress"));
  ASSERT_TRUE(progress);
  ASSERT_EQ(progress->status, 200) << progress->body;
  EXPECT_EQ(progress->get_header_value("Content-Type"), kJsonType);
  const Json p = ParseJson(progress->body);
  std::vector<std::string> keys;
  for (const auto& [k, v] : p.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"jobUuid", "state", "phase", "bytesDone", "bytesTotal",
                                            "chunksDone", "chunksTotal", "bytesSent", "chunksSent",
                                            "bytesPerSecond", "seconds", "etaSeconds"}))
      << p.dump();
  EXPECT_EQ(p.value("jobUuid", ""), job_uuid);
  EXPECT_EQ(p.value("state", ""), "succeeded");
  EXPECT_GT(p.value("bytesTotal", uint64_t{0}), 0u) << p.dump();
  EXPECT_EQ(p.value("bytesDone", uint64_t{0}), p.value("bytesTotal", uint64_t{1})) << p.dump();
  EXPECT_EQ(p.value("chunksDone", uint64_t{0}), p.value("chunksTotal", uint64_t{1})) << p.dump();
  EXPECT_GT(p.value("bytesSent", uint64_t{0}), 0u) << p.dump();
  EXPECT_GT(p.value("chunksSent", uint64_t{0}), 0u) << p.dump();
  // The same sync again: all done, nothing sent (the destination holds every chunk).
  const std::string again = RunJobToTheEnd(session_);
  auto repeat = Get(absl::StrCat("/chunkferry/v1/api-jobs/", again, "/progress"));
  ASSERT_TRUE(repeat);
  const Json rp = ParseJson(repeat->body);
  EXPECT_EQ(rp.value("bytesDone", uint64_t{0}), rp.value("bytesTotal", uint64_t{1})) << rp.dump();
  EXPECT_EQ(rp.value("bytesSent", uint64_t{1}), 0u) << rp.dump();
  EXPECT_EQ(rp.value("chunksSent", uint64_t{1}), 0u) << rp.dump();

  // Kept for the TTL, then gone.
  now_ms_ += kTtlSeconds * 1000 - 1;
  EXPECT_EQ(Get(job)->status, 200);
  now_ms_ += 1;
  auto expired = Get(job);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->status, 404) << expired->body;
  EXPECT_EQ(expired->get_header_value("Content-Type"), kTextType);
  EXPECT_EQ(Get(absl::StrCat("/chunkferry/v1/api-jobs/", job_uuid, "/progress"))->status, 404);

  // The job uuid appears in no log line whole; the poll lines are there.
  bool saw_poll = false;
  for (const auto& line : Logs()) {
    EXPECT_FALSE(absl::StrContains(line, job_uuid)) << line;
    EXPECT_FALSE(absl::StrContains(line, session_)) << line;
    if (absl::StrContains(line, "GET /zstack/v1/api-jobs/" + job_uuid.substr(0, 8)) &&
        absl::StrContains(line, " 200 ")) {
      saw_poll = true;
    }
  }
  EXPECT_TRUE(saw_poll);
}

TEST_F(HttpApiTest, FailingJobsAnswer503WithTheirErrorCode) {
  StartServer();
  const std::string unknown_group_job = engine::NewUuid();
  auto put = PutSync(engine::NewUuid(), dst_uuid_, {{"X-Job-UUID", unknown_group_job}});
  ASSERT_TRUE(put);
  auto r = Poll(JobPathOf(put, unknown_group_job));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), kJsonType);
  EXPECT_EQ(ParseJson(r->body)["error"].value("code", ""), kSysNotFound) << r->body;

  // A session the registry does not know reaches a job client as an ErrorCode through the poll.
  const std::string bad_session_job = engine::NewUuid();
  auto put2 = Put(SyncPath(group_), Body(src_uuid_, dst_uuid_),
                  {{"Authorization", "OAuth null"}, {"X-Job-UUID", bad_session_job}});
  ASSERT_TRUE(put2);
  auto r2 = Poll(JobPathOf(put2, bad_session_job));
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 503) << r2->body;
  EXPECT_EQ(ParseJson(r2->body)["error"].value("code", ""), kIdInvalidSession) << r2->body;

  // A missing field fails the call (SYS.1007), it is not a 400.
  const std::string missing_job = engine::NewUuid();
  auto put3 = Put(SyncPath(group_),
                  Json{{std::string(kSyncActionKey), {{"srcBackupStorageUuid", src_uuid_}}}}.dump(),
                  {{"Authorization", "OAuth " + session_}, {"X-Job-UUID", missing_job}});
  ASSERT_TRUE(put3);
  auto r3 = Poll(JobPathOf(put3, missing_job));
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->status, 503) << r3->body;
  EXPECT_EQ(ParseJson(r3->body)["error"].value("code", ""), kSysInvalidArgument) << r3->body;
  EXPECT_EQ(testing::TotalPackBytes(dst_), 0u);
}

TEST_F(HttpApiTest, NamedJobRunsOnceHowEverOftenItIsSent) {
  StartServer();  // synchronous by default: X-Job-UUID alone makes the PUT a job
  const std::string job_uuid = engine::NewUuid();
  auto put = PutSync(group_, dst_uuid_, {{"X-Job-UUID", job_uuid}, {"X-JSON-Schema", "true"}});
  ASSERT_TRUE(put);
  const std::string job = JobPathOf(put, job_uuid);
  auto done = Poll(job);
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  const uint64_t packs = testing::TotalPackBytes(dst_);
  EXPECT_GT(packs, 0u);

  // Sent again, even with another body (a group that does not exist): the same 202, and the job
  // keeps its result, so nothing ran again.
  auto again = PutSync(engine::NewUuid(), dst_uuid_, {{"X-Job-UUID", job_uuid}});
  ASSERT_TRUE(again);
  EXPECT_EQ(JobPathOf(again, job_uuid), job);
  auto still = Poll(job);
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200) << still->body;
  EXPECT_EQ(still->body, done->body);
  EXPECT_EQ(testing::TotalPackBytes(dst_), packs);
}

TEST_F(HttpApiTest, LocationFollowsTheHostHeader) {
  StartServer({.job_mode_default = true});
  auto put = PutSync(group_, dst_uuid_, {{"Host", "backup-api.example:8443"}});
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  const std::string location = ParseJson(put->body).value("location", "");
  EXPECT_TRUE(absl::StartsWith(location, "http://backup-api.example:8443/zstack/v1/api-jobs/"))
      << location;
  auto done = Poll(location.substr(location.find("/zstack/")));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200) << done->body;
}

TEST_F(HttpApiTest, JobsPastTheCapAreRefused) {
  StartServer({.max_jobs = 1});
  const std::string first = RunJobToTheEnd(session_);
  // The finished job is kept for the TTL, so the table is full.
  auto refused = PutSync(group_, dst_uuid_, {{"X-Job-UUID", engine::NewUuid()}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(ParseJson(refused->body)["error"].value("code", ""), kSysOperationFailed);
  EXPECT_TRUE(absl::StrContains(refused->body, "too many jobs")) << refused->body;
  // Its own uuid is still answered.
  auto same = PutSync(group_, dst_uuid_, {{"X-Job-UUID", first}});
  ASSERT_TRUE(same);
  EXPECT_EQ(same->status, 202) << same->body;
  // Once it expired, a new job is taken.
  now_ms_ += kTtlSeconds * 1000;
  const std::string second = engine::NewUuid();
  auto taken = PutSync(group_, dst_uuid_, {{"X-Job-UUID", second}});
  ASSERT_TRUE(taken);
  EXPECT_EQ(Poll(JobPathOf(taken, second))->status, 200);
}

// The attack: job PUTs with a made-up session, far more than the table holds. Each still gets the
// platform's answer (202, then ID.1001 when polled), but none takes a place: an honest job is
// served at once.
TEST_F(HttpApiTest, AMadeUpSessionCannotFillTheJobTable) {
  StartServer({.max_jobs = 2});
  std::vector<std::string> bogus;
  for (int i = 0; i < 40; ++i) {
    bogus.push_back(engine::NewUuid());
    auto r = Put(SyncPath(group_), Body(src_uuid_, dst_uuid_),
                 {{"Authorization", "OAuth " + engine::NewUuid()}, {"X-Job-UUID", bogus.back()}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202) << r->body;
  }
  auto poll = Poll(JobPathOf(Put(SyncPath(group_), Body(src_uuid_, dst_uuid_),
                                 {{"Authorization", "OAuth null"}, {"X-Job-UUID", bogus[0]}}),
                             bogus[0]));
  ASSERT_TRUE(poll);
  EXPECT_EQ(poll->status, 503);
  EXPECT_EQ(ParseJson(poll->body)["error"].value("code", ""), kIdInvalidSession) << poll->body;
  const std::string honest = engine::NewUuid();
  auto put = PutSync(group_, dst_uuid_, {{"X-Job-UUID", honest}});
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  EXPECT_EQ(Poll(JobPathOf(put, honest))->status, 200);
}

// One session cannot hold more than its share of the table: past it, its PUTs are refused (503,
// Retry-After) while another session is still served.
TEST_F(HttpApiTest, OneSessionHoldsAtMostItsShareOfJobs) {
  StartServer({.max_jobs = 8, .max_jobs_per_session = 1});
  RunJobToTheEnd(session_);
  auto refused = PutSync(group_, dst_uuid_, {{"X-Job-UUID", engine::NewUuid()}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(refused->get_header_value("Retry-After"), "10");
  RunJobToTheEnd(other_session_);
}

TEST_F(HttpApiTest, ConcurrentPutsOfOneGroupStoreItOnce) {
  StartServer();
  std::vector<int> statuses(2, 0);
  std::vector<std::string> bodies(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", server_->port());
      c.set_read_timeout(std::chrono::seconds(300));
      auto r = c.Put(SyncPath(group_).c_str(), {{"Authorization", "OAuth " + session_}},
                     Body(src_uuid_, dst_uuid_), kJsonType);
      if (r) {
        statuses[i] = r->status;
        bodies[i] = r->body;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(statuses[i], 200) << bodies[i];
    ExpectInventories(ParseJson(bodies[i]), dst_uuid_);
  }
  // The same bytes as one sync into an empty store.
  auto single = PutSync(group_, dst2_uuid_);
  ASSERT_TRUE(single);
  ASSERT_EQ(single->status, 200) << single->body;
  EXPECT_GT(testing::TotalPackBytes(dst2_), 0u);
  EXPECT_EQ(testing::TotalPackBytes(dst_), testing::TotalPackBytes(dst2_));
}

TEST_F(HttpApiTest, UnknownPathsWrongMethodsAndLargeBodies) {
  StartServer({.max_body_bytes = 4096});
  auto r = Get("/zstack/v1/nothing-here");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->get_header_value("Content-Type"), kTextType);
  EXPECT_EQ(Get(SyncPath(group_) + "/more")->status, 404);
  EXPECT_EQ(Get("/zstack/v1/api-jobs/not-a-uuid")->status, 404);
  EXPECT_EQ(Get(absl::StrCat("/zstack/v1/api-jobs/", engine::NewUuid()))->status, 404);
  EXPECT_EQ(Get(absl::StrCat("/chunkferry/v1/api-jobs/", engine::NewUuid(), "/progress"))->status,
            404);

  auto get_sync = Get(SyncPath(group_), {{"Authorization", "OAuth " + session_}});
  ASSERT_TRUE(get_sync);
  EXPECT_EQ(get_sync->status, 405);
  EXPECT_EQ(get_sync->get_header_value("Allow"), "PUT");
  EXPECT_EQ(get_sync->get_header_value("Content-Type"), kTextType);
  auto post_sync = client_->Post(SyncPath(group_).c_str(), Body(src_uuid_, dst_uuid_), kJsonType);
  ASSERT_TRUE(post_sync);
  EXPECT_EQ(post_sync->status, 405);
  auto put_job = Put(absl::StrCat("/zstack/v1/api-jobs/", engine::NewUuid()), "{}", {});
  ASSERT_TRUE(put_job);
  EXPECT_EQ(put_job->status, 405);
  EXPECT_EQ(put_job->get_header_value("Allow"), "GET, HEAD");

  const std::string big(8192, ' ');
  auto too_big = Put(SyncPath(group_), big, {{"Authorization", "OAuth " + session_}});
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  EXPECT_EQ(too_big->get_header_value("Content-Type"), kTextType);
  EXPECT_TRUE(absl::StrContains(too_big->body, "4096")) << too_big->body;
  EXPECT_EQ(testing::TotalPackBytes(dst_), 0u);

  // One log line per request, with its status.
  bool saw_405 = false, saw_413 = false;
  for (const auto& line : Logs()) {
    if (absl::StrContains(line, "GET " + SyncPath(group_) + " 405 ")) saw_405 = true;
    if (absl::StrContains(line, "PUT " + SyncPath(group_) + " 413 ")) saw_413 = true;
  }
  EXPECT_TRUE(saw_405) << absl::StrJoin(Logs(), "\n");
  EXPECT_TRUE(saw_413) << absl::StrJoin(Logs(), "\n");
}

// curl's --data and --data-binary send application/x-www-form-urlencoded unless told otherwise: a
// JSON body over 8 KiB sent so is still the API's JSON (httplib alone refused it with a 413 that
// named the 1 MiB limit). A multipart body is refused as such, with nothing stored.
TEST_F(HttpApiTest, BodiesAreJsonWhateverTheirDeclaredFormType) {
  StartServer();
  const std::string body = Body(src_uuid_, dst_uuid_);
  const std::string padded =
      absl::StrCat(body.substr(0, body.size() - 1), std::string(20000, ' '), "}");
  const httplib::Headers auth = {{"Authorization", "OAuth " + session_}};
  auto multipart =
      client_->Put(SyncPath(group_).c_str(), auth, padded, "multipart/form-data; boundary=xyz");
  ASSERT_TRUE(multipart);
  EXPECT_EQ(multipart->status, 415) << multipart->body;
  EXPECT_EQ(multipart->get_header_value("Content-Type"), kTextType);
  EXPECT_EQ(testing::TotalPackBytes(dst_), 0u);

  auto r =
      client_->Put(SyncPath(group_).c_str(), auth, padded, "application/x-www-form-urlencoded");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  ExpectInventories(ParseJson(r->body), dst_uuid_);
  EXPECT_GT(testing::TotalPackBytes(dst_), 0u);
}

TEST_F(HttpApiTest, StartFailsClearlyWhenThePortIsTaken) {
  StartServer();
  ApiServerOptions options;
  options.port = server_->port();
  ApiServer second(*service_, options);
  absl::Status st = second.Start();
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), absl::StrCat(server_->port()))) << st;
  // Stopping twice, and a server that never started, are fine.
  server_->Stop();
  server_->Stop();
}

}  // namespace
}  // namespace chunkferry::control
