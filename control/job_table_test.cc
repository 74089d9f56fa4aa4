// The job table: a job's life (queued, running, succeeded or failed, expired), uuids that exist
// already, expiry on an injected clock, progress snapshots, the cap on held jobs, and shutdown.
#include "control/job_table.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "control/api_error.h"
#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr char kA[] = "0123456789abcdef0123456789abcdef";
constexpr char kB[] = "fedcba9876543210fedcba9876543210";
constexpr char kC[] = "00000000000000000000000000000001";
constexpr char kOwner[] = "owner";

// A clock the test moves by hand.
class FakeClock {
 public:
  JobClock fn() {
    return [this] { return Clock::time_point(milliseconds(now_ms_.load())); };
  }
  void Advance(milliseconds d) { now_ms_ += d.count(); }

 private:
  std::atomic<int64_t> now_ms_{1'000'000};
};

// A gate a job's work waits at until the test opens it.
class Gate {
 public:
  void Open() { promise_.set_value(); }
  void Wait() { future_.wait(); }

 private:
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
};

SyncResult Succeeded(const std::string& tag) {
  SyncResult r;
  r.inventories.push_back(Json{{"uuid", tag}});
  r.stats.volumes = 1;
  return r;
}

// Waits (bounded) until job `uuid` is no longer running; returns its snapshot.
JobSnapshot WaitFinished(JobTable& table, const std::string& uuid) {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  JobSnapshot s = table.Get(uuid);
  while (s.state == JobState::kRunning && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
    s = table.Get(uuid);
  }
  return s;
}

TEST(JobTableTest, JobRunsThenSucceedsWithItsResult) {
  FakeClock clock;
  JobTable table({.max_running = 2, .max_jobs = 8, .ttl = milliseconds(1000), .clock = clock.fn()});
  Gate gate;
  ASSERT_EQ(*table.Start(kA, kOwner,
                         [&](const engine::ProgressFn&) {
                           gate.Wait();
                           return Succeeded("a");
                         }),
            JobTable::StartOutcome::kStarted);
  const JobSnapshot running = table.Get(kA);
  EXPECT_EQ(running.state, JobState::kRunning);
  EXPECT_TRUE(running.result.inventories.empty());
  clock.Advance(milliseconds(250));
  gate.Open();
  const JobSnapshot done = WaitFinished(table, kA);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  ASSERT_EQ(done.result.inventories.size(), 1u);
  EXPECT_EQ(done.result.inventories[0]["uuid"], "a");
  EXPECT_EQ(done.result.stats.volumes, 1u);
  EXPECT_FALSE(done.queued);
  EXPECT_EQ(done.finished - done.started, milliseconds(250));
  EXPECT_EQ(JobStateName(done.state), "succeeded");
  // A uuid never started is unknown.
  EXPECT_EQ(table.Get(kB).state, JobState::kUnknown);
}

TEST(JobTableTest, ResultWithErrorFails) {
  JobTable table({});
  ASSERT_TRUE(table
                  .Start(kA, kOwner,
                         [](const engine::ProgressFn&) {
                           SyncResult r;
                           r.error = MakeError(kSysNotFound, "no group");
                           return r;
                         })
                  .ok());
  const JobSnapshot done = WaitFinished(table, kA);
  EXPECT_EQ(done.state, JobState::kFailed);
  ASSERT_TRUE(done.result.error.has_value());
  EXPECT_EQ(done.result.error->code, kSysNotFound);
  EXPECT_EQ(done.result.error->details, "no group");
}

TEST(JobTableTest, ExistingUuidDoesNotRunAgain) {
  JobTable table({});
  std::atomic<int> runs{0};
  auto work = [&](const engine::ProgressFn&) {
    ++runs;
    return Succeeded("x");
  };
  ASSERT_EQ(*table.Start(kA, kOwner, work), JobTable::StartOutcome::kStarted);
  // While it may still be running, and once it finished: the same uuid is reported, not rerun.
  EXPECT_EQ(*table.Start(kA, kOwner, work), JobTable::StartOutcome::kExists);
  EXPECT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  EXPECT_EQ(*table.Start(kA, kOwner, work), JobTable::StartOutcome::kExists);
  EXPECT_EQ(runs.load(), 1);
}

// `done` hears of the result once a poll can read it, once, on the runner's thread.
TEST(JobTableTest, DoneIsToldTheResultOnceItIsRecorded) {
  JobTable table({});
  std::mutex mu;
  std::condition_variable cv;
  int told = 0;
  JobState seen = JobState::kUnknown;
  ASSERT_TRUE(table
                  .Start(
                      kA, kOwner, [](const engine::ProgressFn&) { return Succeeded("a"); },
                      [&](const SyncResult& result) {
                        const JobState polled = table.Get(kA).state;
                        std::lock_guard<std::mutex> lock(mu);
                        ++told;
                        seen = polled;
                        EXPECT_EQ(result.inventories[0]["uuid"], "a");
                        cv.notify_all();
                      })
                  .ok());
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return told > 0; }));
  EXPECT_EQ(seen, JobState::kSucceeded);
  EXPECT_EQ(told, 1);
}

TEST(JobTableTest, RejectsMalformedUuids) {
  JobTable table({});
  for (const char* bad : {"", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef",
                          "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef0",
                          "01234567-89ab-cdef-0123-456789abcdef"}) {
    auto r = table.Start(bad, kOwner, [](const engine::ProgressFn&) { return SyncResult{}; });
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad << ": " << r.status();
  }
  EXPECT_EQ(table.size(), 0u);
}

TEST(JobTableTest, FinishedJobsExpireAfterTtl) {
  FakeClock clock;
  JobTable table({.ttl = milliseconds(1000), .clock = clock.fn()});
  std::atomic<int> runs{0};
  auto work = [&](const engine::ProgressFn&) {
    ++runs;
    return Succeeded("x");
  };
  ASSERT_TRUE(table.Start(kA, kOwner, work).ok());
  ASSERT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  clock.Advance(milliseconds(999));
  EXPECT_EQ(table.Get(kA).state, JobState::kSucceeded);
  clock.Advance(milliseconds(1));
  EXPECT_EQ(table.Get(kA).state, JobState::kUnknown);
  EXPECT_EQ(table.size(), 0u);
  // Once forgotten, the uuid names a new job.
  EXPECT_EQ(*table.Start(kA, kOwner, work), JobTable::StartOutcome::kStarted);
  EXPECT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  EXPECT_EQ(runs.load(), 2);
}

TEST(JobTableTest, RunningJobsNeverExpire) {
  FakeClock clock;
  JobTable table({.ttl = milliseconds(10), .clock = clock.fn()});
  Gate gate;
  ASSERT_TRUE(table
                  .Start(kA, kOwner,
                         [&](const engine::ProgressFn&) {
                           gate.Wait();
                           return Succeeded("a");
                         })
                  .ok());
  clock.Advance(std::chrono::hours(2));
  EXPECT_EQ(table.Get(kA).state, JobState::kRunning);
  gate.Open();
  EXPECT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  clock.Advance(milliseconds(10));
  EXPECT_EQ(table.Get(kA).state, JobState::kUnknown);
}

TEST(JobTableTest, GetCopiesTheLatestProgress) {
  JobTable table({});
  Gate reported, gate;
  ASSERT_TRUE(table
                  .Start(kA, kOwner,
                         [&](const engine::ProgressFn& progress) {
                           engine::ProgressState s;
                           s.phase = "copy";
                           s.bytes_done = 100;
                           s.bytes_total = 400;
                           s.chunks_done = 3;
                           s.chunks_total = 12;
                           s.seconds = 2.5;
                           progress(s);
                           s.bytes_done = 200;
                           progress(s);
                           reported.Open();
                           gate.Wait();
                           return Succeeded("a");
                         })
                  .ok());
  reported.Wait();
  const JobSnapshot s = table.Get(kA);
  EXPECT_EQ(s.state, JobState::kRunning);
  EXPECT_FALSE(s.queued);
  EXPECT_EQ(s.progress.phase, "copy");
  EXPECT_EQ(s.progress.bytes_done, 200u);
  EXPECT_EQ(s.progress.bytes_total, 400u);
  EXPECT_EQ(s.progress.chunks_done, 3u);
  EXPECT_EQ(s.progress.chunks_total, 12u);
  EXPECT_DOUBLE_EQ(s.progress.seconds, 2.5);
  gate.Open();
  EXPECT_EQ(WaitFinished(table, kA).progress.bytes_done, 200u);
}

TEST(JobTableTest, QueuedJobsWaitForARunnerAndCountAsRunning) {
  JobTable table({.max_running = 1});
  Gate gate;
  std::atomic<bool> b_ran{false};
  ASSERT_TRUE(table
                  .Start(kA, kOwner,
                         [&](const engine::ProgressFn&) {
                           gate.Wait();
                           return Succeeded("a");
                         })
                  .ok());
  ASSERT_TRUE(table
                  .Start(kB, kOwner,
                         [&](const engine::ProgressFn&) {
                           b_ran = true;
                           return Succeeded("b");
                         })
                  .ok());
  const JobSnapshot b = table.Get(kB);
  EXPECT_EQ(b.state, JobState::kRunning);
  EXPECT_TRUE(b.queued);
  EXPECT_FALSE(b_ran.load());
  gate.Open();
  EXPECT_EQ(WaitFinished(table, kB).state, JobState::kSucceeded);
  EXPECT_TRUE(b_ran.load());
}

TEST(JobTableTest, RefusesJobsPastTheCapUntilSomeExpire) {
  FakeClock clock;
  JobTable table({.max_running = 1, .max_jobs = 2, .ttl = milliseconds(50), .clock = clock.fn()});
  Gate gate;
  auto blocked = [&](const engine::ProgressFn&) {
    gate.Wait();
    return Succeeded("x");
  };
  ASSERT_TRUE(table.Start(kA, kOwner, blocked).ok());
  ASSERT_TRUE(table.Start(kB, kOwner, blocked).ok());  // queued: counts too
  auto refused = table.Start(kC, kOwner, blocked);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("too many jobs"), std::string::npos);
  // A held uuid is still answered, even at the cap.
  EXPECT_EQ(*table.Start(kA, kOwner, blocked), JobTable::StartOutcome::kExists);
  gate.Open();
  ASSERT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  ASSERT_EQ(WaitFinished(table, kB).state, JobState::kSucceeded);
  // Finished but kept: still full.
  EXPECT_TRUE(absl::IsResourceExhausted(table.Start(kC, kOwner, blocked).status()));
  clock.Advance(milliseconds(50));
  EXPECT_EQ(*table.Start(kC, kOwner, blocked), JobTable::StartOutcome::kStarted);
  EXPECT_EQ(WaitFinished(table, kC).state, JobState::kSucceeded);
}

// One owner cannot take the whole table: past its share it is refused while another owner is
// served; its share frees as its jobs expire.
TEST(JobTableTest, OneOwnerHoldsAtMostItsShare) {
  FakeClock clock;
  JobTable table({.max_running = 1,
                  .max_jobs = 8,
                  .max_jobs_per_owner = 2,
                  .ttl = milliseconds(50),
                  .clock = clock.fn()});
  auto work = [](const engine::ProgressFn&) { return Succeeded("x"); };
  ASSERT_TRUE(table.Start(kA, "greedy", work).ok());
  ASSERT_TRUE(table.Start(kB, "greedy", work).ok());
  auto refused = table.Start(kC, "greedy", work);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_EQ(*table.Start(kC, "honest", work), JobTable::StartOutcome::kStarted);
  ASSERT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  ASSERT_EQ(WaitFinished(table, kB).state, JobState::kSucceeded);
  ASSERT_EQ(WaitFinished(table, kC).state, JobState::kSucceeded);
  clock.Advance(milliseconds(50));
  EXPECT_EQ(*table.Start("0000000000000000000000000000000a", "greedy", work),
            JobTable::StartOutcome::kStarted);
}

// Refused requests are answered (failed, with their error) without ever holding a place in the
// table: any number of them leaves room for real jobs, and they are kept only up to max_refused.
TEST(JobTableTest, RefusalsNeverFillTheTable) {
  FakeClock clock;
  JobTable table({.max_running = 1,
                  .max_jobs = 2,
                  .max_refused = 4,
                  .ttl = milliseconds(50),
                  .clock = clock.fn()});
  SyncResult refused;
  refused.error = MakeError(kIdInvalidSession, "no");
  std::vector<std::string> uuids;
  for (int i = 0; i < 100; ++i) {
    uuids.push_back(absl::StrFormat("%032x", i + 1));
    EXPECT_TRUE(table.Refuse(uuids.back(), refused));
    EXPECT_FALSE(table.Refuse(uuids.back(), refused));  // sent again: still one
  }
  EXPECT_EQ(table.size(), 0u);
  for (int i = 0; i < 96; ++i) EXPECT_EQ(table.Get(uuids[i]).state, JobState::kUnknown) << i;
  for (int i = 96; i < 100; ++i) {
    const JobSnapshot s = table.Get(uuids[i]);
    EXPECT_EQ(s.state, JobState::kFailed);
    ASSERT_TRUE(s.result.error.has_value());
    EXPECT_EQ(s.result.error->code, kIdInvalidSession);
  }
  auto work = [](const engine::ProgressFn&) { return Succeeded("x"); };
  EXPECT_EQ(*table.Start(kA, kOwner, work), JobTable::StartOutcome::kStarted);
  EXPECT_EQ(*table.Start(kB, kOwner, work), JobTable::StartOutcome::kStarted);
  // A refused uuid that then comes with a good session runs. (Both jobs finish before the clock
  // moves, so that what expires below does not depend on the runner's timing.)
  ASSERT_EQ(WaitFinished(table, kA).state, JobState::kSucceeded);
  ASSERT_EQ(WaitFinished(table, kB).state, JobState::kSucceeded);
  table.Refuse(kC, refused);
  EXPECT_EQ(table.Get(kC).state, JobState::kFailed);
  clock.Advance(milliseconds(50));  // kA, kB and the refusal expire
  EXPECT_EQ(table.Get(kC).state, JobState::kUnknown) << "refusals expire with the TTL";
  table.Refuse(kC, refused);
  EXPECT_EQ(*table.Start(kC, kOwner, work), JobTable::StartOutcome::kStarted);
  EXPECT_EQ(WaitFinished(table, kC).state, JobState::kSucceeded);
}

TEST(JobTableTest, ShutdownWaitsForRunningJobsAndDropsQueuedOnes) {
  auto table = std::make_unique<JobTable>(JobTableOptions{.max_running = 1});
  Gate a_started, gate;
  std::atomic<bool> a_done{false}, b_ran{false};
  ASSERT_TRUE(table
                  ->Start(kA, kOwner,
                          [&](const engine::ProgressFn&) {
                            a_started.Open();
                            gate.Wait();
                            a_done = true;
                            return Succeeded("a");
                          })
                  .ok());
  ASSERT_TRUE(table
                  ->Start(kB, kOwner,
                          [&](const engine::ProgressFn&) {
                            b_ran = true;
                            return Succeeded("b");
                          })
                  .ok());
  a_started.Wait();  // A runs (a job no runner picked up yet would be dropped)
  std::thread stopper([&] { table->Shutdown(); });
  // Once Shutdown began, new jobs are refused; only then let A finish. (A C started before that
  // is queued behind A, and dropped like B.)
  auto c_work = [&](const engine::ProgressFn&) {
    b_ran = true;
    return SyncResult{};
  };
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  absl::Status st;
  while (Clock::now() < deadline) {
    st = table->Start(kC, kOwner, c_work).status();
    if (absl::IsFailedPrecondition(st)) break;
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(table->Get(kB).state, JobState::kUnknown);  // dropped, never to run
  gate.Open();
  stopper.join();
  EXPECT_TRUE(a_done.load());
  EXPECT_EQ(table->Get(kA).state, JobState::kSucceeded);
  EXPECT_EQ(table->Get(kC).state, JobState::kUnknown);
  table.reset();               // a second Shutdown (the destructor's) is harmless
  EXPECT_FALSE(b_ran.load());  // neither B nor C ran
}

TEST(JobTableTest, NewJobUuidsAreRandomAndWellFormed) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto uuid = NewJobUuid();
    ASSERT_TRUE(uuid.ok()) << uuid.status();
    EXPECT_TRUE(IsJobUuid(*uuid)) << *uuid;
    seen.insert(*uuid);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace chunkferry::control
