// The jobs of the sync API's job mode (the platform's HTTP job convention): a PUT starts a sync
// under a job uuid and answers at once; polls read the job's state, result and progress by that
// uuid until the job expires. The uuid is the only secret of a poll (the SDK may poll with
// "OAuth null"), so generated ones come from OpenSSL's CSPRNG.
#ifndef CHUNKFERRY_CONTROL_JOB_TABLE_H_
#define CHUNKFERRY_CONTROL_JOB_TABLE_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "control/sync_service.h"
#include "engine/store/progress.h"

namespace chunkferry::control {

// True for 32 lowercase hex characters: the form of every uuid of the API.
bool IsJobUuid(std::string_view text);
// Returns 32 lowercase hex characters from OpenSSL's CSPRNG. Internal when the CSPRNG fails.
[[nodiscard]] absl::StatusOr<std::string> NewJobUuid();

using JobClock = std::function<std::chrono::steady_clock::time_point()>;

struct JobTableOptions {
  size_t max_running = 2;  // runner threads: jobs whose work runs at once (at least 1)
  size_t max_jobs = 1024;  // jobs held (queued, running, or finished and not expired)
  // Jobs one owner (the API: a session) may hold at once, so that one client cannot take the
  // whole table from the others; 0: only max_jobs.
  size_t max_jobs_per_owner = 0;
  // Refused requests (Refuse) kept for their polls, apart from max_jobs: the oldest go first.
  size_t max_refused = 256;
  std::chrono::milliseconds ttl = std::chrono::hours(1);  // how long a finished job is kept
  JobClock clock = nullptr;                               // empty: std::chrono::steady_clock::now
};

enum class JobState { kUnknown, kRunning, kSucceeded, kFailed };
// "unknown", "running", "succeeded", "failed".
std::string_view JobStateName(JobState state);

// A copy of a job, taken under the table's lock.
struct JobSnapshot {
  JobState state = JobState::kUnknown;             // kRunning covers queued jobs too
  bool queued = false;                             // kRunning and no runner has picked it up yet
  SyncResult result;                               // set when the job finished
  engine::ProgressState progress;                  // the latest progress the work reported
  std::chrono::steady_clock::time_point started;   // when Start accepted it
  std::chrono::steady_clock::time_point finished;  // when its work returned
};

// A job's work: runs on a runner thread, reports progress through the function it is given
// (which lives until the work returns), and returns the result. A result with `error` set makes
// the job kFailed.
using JobWork = std::function<SyncResult(const engine::ProgressFn& progress)>;
// Told a job's result on its runner thread once the result is recorded (a poll reads it).
using JobDone = std::function<void(const SyncResult& result)>;

// Thread-safe. Runs jobs on `max_running` runner threads in the order they were started; the
// others wait in a queue (and count as running). Finished jobs are kept for `ttl`, then forgotten
// (swept lazily, by Start and Get). The destructor waits for the jobs whose work is running and
// drops the queued ones that no runner has picked up (they never run).
class JobTable {
 public:
  explicit JobTable(JobTableOptions options);
  ~JobTable();
  JobTable(const JobTable&) = delete;
  JobTable& operator=(const JobTable&) = delete;

  enum class StartOutcome { kStarted, kExists };

  // Starts `work` as job `uuid` of `owner`. kExists when a job with that uuid is held (running or
  // not yet expired): `work` is dropped and nothing runs again. InvalidArgument when `uuid` is
  // not 32 lowercase hex; ResourceExhausted when the table holds max_jobs jobs, or `owner`
  // max_jobs_per_owner; FailedPrecondition once Shutdown began. A refused uuid (Refuse) is
  // forgotten and started. `done` (optional) is called when the work has returned; never for a
  // job dropped from the queue by Shutdown.
  [[nodiscard]] absl::StatusOr<StartOutcome> Start(const std::string& uuid,
                                                   const std::string& owner, JobWork work,
                                                   JobDone done = nullptr);

  // Records job `uuid` as failed with `result` (its error set) without running anything: what a
  // request refused before any work (a session the server does not accept) leaves for its polls,
  // as the platform's clients expect. Refused jobs do not count toward max_jobs or any owner's
  // limit, so a flood of them cannot lock honest clients out: at most max_refused are kept, each
  // for the TTL, the oldest forgotten first. Nothing happens for a uuid held as a job or refused
  // already: false then (and when shutting down), true when recorded.
  bool Refuse(const std::string& uuid, SyncResult result);

  // A copy of job `uuid`; state kUnknown when no such job is held (never started, or expired).
  JobSnapshot Get(const std::string& uuid);

  // Jobs held now (after sweeping the expired ones).
  size_t size();

  // Refuses new jobs, drops the queued ones, and waits for the running ones. Idempotent.
  void Shutdown();

 private:
  struct Job {
    JobWork work;  // cleared once run, so what it captured is freed early
    JobDone done;
    std::string owner;
    JobSnapshot snapshot;
  };

  std::chrono::steady_clock::time_point Now() const;
  // Forgets the finished jobs whose TTL has passed. Needs mu_.
  void SweepLocked(std::chrono::steady_clock::time_point now);
  // Forgets job `uuid` and counts it off its owner. Needs mu_.
  void EraseLocked(const std::string& uuid);
  void RunnerLoop();

  const JobTableOptions options_;
  std::mutex shutdown_mu_;
  std::mutex mu_;
  std::condition_variable queue_cv_;
  bool shutting_down_ = false;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::map<std::string, size_t> held_by_owner_;  // jobs_ per owner (owners holding none absent)
  std::map<std::string, JobSnapshot> refused_;
  std::deque<std::string> refused_order_;  // refused_ oldest first (may name forgotten ones)
  std::deque<std::string> queue_;          // uuids waiting for a runner
  // Finished jobs in the order they finished: with one TTL for all, also the order they expire.
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> finished_;
  std::vector<std::thread> runners_;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_JOB_TABLE_H_
