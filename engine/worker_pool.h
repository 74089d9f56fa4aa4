// A fixed pool of threads for the CPU-heavy parts of the pipeline (hashing, compression,
// verification). The caller's thread takes part in every run, so a pool of N workers uses N+1
// threads while a run is active and the ring's I/O keeps going in the kernel meanwhile.
#ifndef CHUNKFERRY_ENGINE_WORKER_POOL_H_
#define CHUNKFERRY_ENGINE_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace chunkferry::engine {

// Runs batches of independent tasks on worker threads. Run() may be called from one thread at a
// time (the pipeline's driver); tasks must not call Run() themselves.
class WorkerPool {
 public:
  // `workers` extra threads (0: the caller runs everything itself).
  explicit WorkerPool(size_t workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls fn(task, slot) for every task in [0, count) and returns when all have finished.
  // `slot` is in [0, slots()) and is never used by two tasks at the same time, so callers can
  // keep per-slot scratch state (compression contexts, buffers) without locks.
  void Run(size_t count, const std::function<void(size_t task, size_t slot)>& fn);

  // Number of distinct slots: workers + 1 (the caller).
  size_t slots() const { return threads_.size() + 1; }

  // A sensible default for this machine: hardware threads minus one.
  static size_t DefaultWorkers();

 private:
  void WorkerLoop(size_t slot);
  void Drain(size_t slot);

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t count_ = 0;
  size_t next_ = 0;
  size_t finished_ = 0;
  size_t active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WORKER_POOL_H_
