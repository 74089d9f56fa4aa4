#include "engine/worker_pool.h"

#include <algorithm>

namespace chunkferry::engine {

WorkerPool::WorkerPool(size_t workers) {
  threads_.reserve(workers);
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

void WorkerPool::Run(size_t count, const std::function<void(size_t, size_t)>& fn) {
  if (count == 0) return;
  if (threads_.empty() || count == 1) {
    for (size_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    count_ = count;
    next_ = 0;
    finished_ = 0;
    ++generation_;
  }
  work_cv_.notify_all();
  Drain(0);
  std::unique_lock<std::mutex> lock(mu_);
  // Wait for every task and for every worker to have left the batch, so that `fn` (owned by the
  // caller) is not touched after Run returns.
  done_cv_.wait(lock, [this] { return finished_ == count_ && active_ == 0; });
  fn_ = nullptr;
}

// Takes tasks of the current batch until none is left.
void WorkerPool::Drain(size_t slot) {
  std::unique_lock<std::mutex> lock(mu_);
  while (fn_ != nullptr && next_ < count_) {
    const size_t task = next_++;
    const auto* fn = fn_;
    ++active_;
    lock.unlock();
    (*fn)(task, slot);
    lock.lock();
    --active_;
    ++finished_;
  }
  if (finished_ == count_ && active_ == 0) done_cv_.notify_all();
}

void WorkerPool::WorkerLoop(size_t slot) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || (generation_ != seen && fn_ != nullptr); });
      if (stop_) return;
      seen = generation_;
    }
    Drain(slot);
  }
}

}  // namespace chunkferry::engine
