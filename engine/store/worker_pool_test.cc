#include "engine/store/worker_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

TEST(WorkerPoolTest, RunCallsEveryTaskOnceWithDistinctSlots) {
  for (size_t workers : {0, 1, 3}) {
    WorkerPool pool(workers);
    std::vector<std::atomic<int>> calls(1000);
    std::vector<std::atomic<int>> busy(pool.slots());
    std::atomic<bool> shared_slot{false};
    pool.Run(calls.size(), [&](size_t task, size_t slot) {
      ASSERT_LT(slot, pool.slots());
      if (busy[slot].fetch_add(1) != 0) shared_slot = true;
      calls[task].fetch_add(1);
      busy[slot].fetch_sub(1);
    });
    for (auto& c : calls) EXPECT_EQ(c.load(), 1);
    EXPECT_FALSE(shared_slot) << "two tasks ran on one slot at once (" << workers << " workers)";
  }
}

TEST(WorkerPoolTest, StartedJobsRunWhileTheCallerDoesOtherWork) {
  WorkerPool pool(2);
  std::atomic<int> done{0};
  auto job = pool.Start(64, [&](size_t, size_t slot) {
    EXPECT_NE(slot, 0u) << "only workers run a started job until Wait";
    done.fetch_add(1);
  });
  // The workers finish the job without the caller's help.
  while (!pool.Done(*job)) std::this_thread::yield();
  EXPECT_EQ(done.load(), 64);
  pool.Wait(*job);
}

TEST(WorkerPoolTest, WaitCollectsJobsInAnyOrderAndHelps) {
  for (size_t workers : {0, 1}) {
    WorkerPool pool(workers);
    std::vector<std::atomic<int>> a(300), b(300);
    auto ja = pool.Start(a.size(), [&](size_t t, size_t) { a[t].fetch_add(1); });
    auto jb = pool.Start(b.size(), [&](size_t t, size_t) { b[t].fetch_add(1); });
    pool.Wait(*jb);
    for (auto& x : b) EXPECT_EQ(x.load(), 1);
    pool.Wait(*ja);
    for (auto& x : a) EXPECT_EQ(x.load(), 1);
    EXPECT_TRUE(pool.Done(*ja));
    // Run still works between started jobs.
    std::atomic<int> n{0};
    pool.Run(10, [&](size_t, size_t) { n.fetch_add(1); });
    EXPECT_EQ(n.load(), 10);
  }
}

TEST(WorkerPoolTest, EmptyJobIsDone) {
  WorkerPool pool(1);
  auto job = pool.Start(0, [](size_t, size_t) { FAIL(); });
  EXPECT_TRUE(pool.Done(*job));
  pool.Wait(*job);
}

}  // namespace
}  // namespace chunkferry::engine
