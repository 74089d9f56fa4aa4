// A fixed pool of threads for the CPU-heavy parts of the pipeline (hashing, compression,
// verification). A job is a batch of independent tasks. Run() executes one and returns when it
// is done, with the caller's thread taking part; Start() hands one to the workers and returns at
// once, so the driver thread can keep its I/O queues busy while the checks run, and Wait()
// collects it later.
#ifndef CHUNKFERRY_ENGINE_STORE_WORKER_POOL_H_
#define CHUNKFERRY_ENGINE_STORE_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace chunkferry::engine {

// Run(), Start() and Wait() may be called from one thread at a time (the pipeline's driver);
// tasks must not call them themselves.
class WorkerPool {
 public:
  using TaskFn = std::function<void(size_t task, size_t slot)>;
  class Job;

  // `workers` extra threads (0: the caller runs everything itself, inside Run or Wait).
  explicit WorkerPool(size_t workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls fn(task, slot) for every task in [0, count) and returns when all have finished.
  // `slot` is in [0, slots()) and is never used by two tasks at the same time, so callers can
  // keep per-slot scratch state (compression contexts, buffers) without locks.
  void Run(size_t count, const TaskFn& fn);

  // Queues fn(task, slot) for every task in [0, count) on the workers and returns at once. Jobs
  // run in the order they were started. Everything `fn` touches must stay valid until Wait().
  std::shared_ptr<Job> Start(size_t count, TaskFn fn);
  // Returns when every task of `job` has finished; the caller runs the ones no worker has taken.
  void Wait(Job& job);
  // Whether every task of `job` has finished (never blocks).
  bool Done(Job& job);

  // Number of distinct slots: workers + 1 (the caller).
  size_t slots() const { return threads_.size() + 1; }
  size_t workers() const { return threads_.size(); }

  // A sensible default for this machine: hardware threads minus one.
  static size_t DefaultWorkers();

 private:
  void WorkerLoop(size_t slot);
  // Runs one task of the oldest job with work left; false when there is none. Called with
  // `lock` held; releases it while the task runs.
  bool RunOneTask(std::unique_lock<std::mutex>& lock, size_t slot, Job* only);

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<std::shared_ptr<Job>> queued_;  // jobs with tasks not yet taken
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

class WorkerPool::Job {
 private:
  friend class WorkerPool;
  TaskFn fn;
  size_t count = 0;
  size_t next = 0;      // next task to hand out
  size_t finished = 0;  // tasks done
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_STORE_WORKER_POOL_H_
