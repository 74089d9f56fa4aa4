#include "control/job_table.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/str_cat.h"

namespace chunkferry::control {

bool IsJobUuid(std::string_view text) {
  if (text.size() != 32) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<std::string> NewJobUuid() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return absl::InternalError("cannot make a job uuid: OpenSSL's random generator failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kUnknown:
      break;
  }
  return "unknown";
}

JobTable::JobTable(JobTableOptions options) : options_(std::move(options)) {
  const size_t runners = options_.max_running == 0 ? 1 : options_.max_running;
  runners_.reserve(runners);
  for (size_t i = 0; i < runners; ++i) runners_.emplace_back([this] { RunnerLoop(); });
}

JobTable::~JobTable() { Shutdown(); }

std::chrono::steady_clock::time_point JobTable::Now() const {
  return options_.clock ? options_.clock() : std::chrono::steady_clock::now();
}

void JobTable::SweepLocked(std::chrono::steady_clock::time_point now) {
  while (!finished_.empty() && now - finished_.front().first >= options_.ttl) {
    EraseLocked(finished_.front().second);
    finished_.pop_front();
  }
  while (!refused_order_.empty()) {
    auto it = refused_.find(refused_order_.front());
    if (it != refused_.end() && now - it->second.finished < options_.ttl) break;
    if (it != refused_.end()) refused_.erase(it);
    refused_order_.pop_front();
  }
}

void JobTable::EraseLocked(const std::string& uuid) {
  auto it = jobs_.find(uuid);
  if (it == jobs_.end()) return;
  auto held = held_by_owner_.find(it->second->owner);
  if (held != held_by_owner_.end() && --held->second == 0) held_by_owner_.erase(held);
  jobs_.erase(it);
}

absl::StatusOr<JobTable::StartOutcome> JobTable::Start(const std::string& uuid,
                                                       const std::string& owner, JobWork work,
                                                       JobDone done) {
  if (!IsJobUuid(uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a job uuid is 32 lowercase hex characters, not '", uuid, "'"));
  }
  const auto now = Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return absl::FailedPreconditionError("the job table is shutting down");
    SweepLocked(now);
    if (jobs_.count(uuid) > 0) return StartOutcome::kExists;
    if (jobs_.size() >= options_.max_jobs) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many jobs: ", jobs_.size(), " are running, queued or finished within the last ",
          options_.ttl.count() / 1000, " s (the limit is ", options_.max_jobs, "); retry later"));
    }
    auto held = held_by_owner_.find(owner);
    if (options_.max_jobs_per_owner > 0 && held != held_by_owner_.end() &&
        held->second >= options_.max_jobs_per_owner) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many jobs of this session: ", held->second,
          " are running, queued or finished within the last ", options_.ttl.count() / 1000,
          " s (the limit is ", options_.max_jobs_per_owner, "); retry later"));
    }
    refused_.erase(uuid);
    ++held_by_owner_[owner];
    auto job = std::make_shared<Job>();
    job->work = std::move(work);
    job->done = std::move(done);
    job->owner = owner;
    job->snapshot.state = JobState::kRunning;
    job->snapshot.queued = true;
    job->snapshot.started = now;
    jobs_.emplace(uuid, std::move(job));
    queue_.push_back(uuid);
  }
  queue_cv_.notify_one();
  return StartOutcome::kStarted;
}

bool JobTable::Refuse(const std::string& uuid, SyncResult result) {
  if (!IsJobUuid(uuid)) return false;
  const auto now = Now();
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return false;
  SweepLocked(now);
  // The same uuid again keeps its first answer and its place: resending cannot grow the table.
  if (jobs_.count(uuid) > 0 || refused_.count(uuid) > 0) return false;
  JobSnapshot& snap = refused_[uuid];
  snap.state = JobState::kFailed;
  snap.result = std::move(result);
  snap.started = snap.finished = now;
  refused_order_.push_back(uuid);
  while (refused_.size() > std::max<size_t>(options_.max_refused, 1)) {
    refused_.erase(refused_order_.front());
    refused_order_.pop_front();
  }
  return true;
}

JobSnapshot JobTable::Get(const std::string& uuid) {
  const auto now = Now();
  std::lock_guard<std::mutex> lock(mu_);
  SweepLocked(now);
  if (auto it = jobs_.find(uuid); it != jobs_.end()) return it->second->snapshot;
  if (auto it = refused_.find(uuid); it != refused_.end()) return it->second;
  return JobSnapshot{};
}

size_t JobTable::size() {
  const auto now = Now();
  std::lock_guard<std::mutex> lock(mu_);
  SweepLocked(now);
  return jobs_.size();
}

void JobTable::RunnerLoop() {
  for (;;) {
    std::string uuid;
    std::shared_ptr<Job> job;
    JobWork work;
    {
      std::unique_lock<std::mutex> lock(mu_);
      queue_cv_.wait(lock, [this] { return shutting_down_ || !queue_.empty(); });
      if (shutting_down_) return;
      uuid = std::move(queue_.front());
      queue_.pop_front();
      auto it = jobs_.find(uuid);
      if (it == jobs_.end()) continue;
      job = it->second;
      job->snapshot.queued = false;
      work = std::move(job->work);
      job->work = nullptr;
    }
    // A running job stays in jobs_ (only finished jobs expire, and Shutdown drops only queued
    // ones), so its snapshot is the one Get reads.
    const engine::ProgressFn progress = [this, job](const engine::ProgressState& state) {
      std::lock_guard<std::mutex> lock(mu_);
      job->snapshot.progress = state;
    };
    SyncResult result = work(progress);
    work = nullptr;  // frees what the work captured before the next job
    const auto now = Now();
    JobDone done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& snap = job->snapshot;
      snap.state = result.error.has_value() ? JobState::kFailed : JobState::kSucceeded;
      snap.result = result;
      snap.finished = now;
      finished_.emplace_back(now, std::move(uuid));
      done = std::move(job->done);
      job->done = nullptr;
    }
    // After the result is recorded: whoever `done` tells can poll it already.
    if (done) done(result);
  }
}

void JobTable::Shutdown() {
  // Held throughout, so a second caller returns only once the runners are joined.
  std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    // Queued jobs never run: forget them, so no poll reports them running forever.
    for (const auto& uuid : queue_) EraseLocked(uuid);
    queue_.clear();
  }
  queue_cv_.notify_all();
  for (auto& t : runners_) t.join();
  runners_.clear();
}

}  // namespace chunkferry::control
