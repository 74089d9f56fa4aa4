#include "engine/store/worker_pool.h"

#include <algorithm>
#include <utility>

namespace chunkferry::engine {

WorkerPool::WorkerPool(size_t workers) {
  threads_.reserve(workers);
  // Slot 0 is the caller's; workers take 1..workers.
  for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this, i] { WorkerLoop(i + 1); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

size_t WorkerPool::DefaultWorkers() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 1 ? hw - 1 : 0;
}

void WorkerPool::Run(size_t count, const TaskFn& fn) {
  if (count == 0) return;
  if (threads_.empty() || count == 1) {
    for (size_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  // The job only borrows `fn`: Wait() returns after its last task, before Run's caller can
  // destroy it.
  auto job = Start(count, [&fn](size_t task, size_t slot) { fn(task, slot); });
  Wait(*job);
}

std::shared_ptr<WorkerPool::Job> WorkerPool::Start(size_t count, TaskFn fn) {
  auto job = std::make_shared<Job>();
  job->fn = std::move(fn);
  job->count = count;
  if (count == 0 || threads_.empty()) return job;  // Wait() runs it
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_.push_back(job);
  }
  if (count == 1) {
    work_cv_.notify_one();
  } else {
    work_cv_.notify_all();
  }
  return job;
}

bool WorkerPool::RunOneTask(std::unique_lock<std::mutex>& lock, size_t slot, Job* only) {
  while (!queued_.empty() && queued_.front()->next == queued_.front()->count) {
    queued_.pop_front();
  }
  std::shared_ptr<Job> job;
  if (only != nullptr) {
    if (only->next == only->count) return false;
    for (auto& q : queued_) {
      if (q.get() == only) job = q;
    }
    if (job == nullptr) return false;
  } else {
    if (queued_.empty()) return false;
    job = queued_.front();
  }
  const size_t task = job->next++;
  lock.unlock();
  job->fn(task, slot);
  lock.lock();
  if (++job->finished == job->count) done_cv_.notify_all();
  return true;
}

void WorkerPool::Wait(Job& job) {
  if (threads_.empty()) {
    for (; job.next < job.count; ++job.next, ++job.finished) job.fn(job.next, 0);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (RunOneTask(lock, 0, &job)) {
  }
  done_cv_.wait(lock, [&job] { return job.finished == job.count; });
}

bool WorkerPool::Done(Job& job) {
  std::lock_guard<std::mutex> lock(mu_);
  return job.finished == job.count;
}

void WorkerPool::WorkerLoop(size_t slot) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (RunOneTask(lock, slot, nullptr)) continue;
    if (stop_) return;
    work_cv_.wait(lock);
  }
}

}  // namespace chunkferry::engine
