// Progress of a long operation (import, restore, copy), reported by the driver thread through a
// callback at most a few times a second and once at the end.
#ifndef CHUNKFERRY_ENGINE_STORE_PROGRESS_H_
#define CHUNKFERRY_ENGINE_STORE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace chunkferry::engine {

struct ProgressState {
  std::string phase;  // "import", "restore", "plan", "copy", "commit", "verify"
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;  // 0 when unknown (stdin)
  uint64_t chunks_done = 0;
  uint64_t chunks_total = 0;
  // Of what is done, what had to travel: stored (compressed) bytes and chunks of the records the
  // destination lacked (copy). A repeated sync is all done with nothing sent.
  uint64_t bytes_sent = 0;
  uint64_t chunks_sent = 0;
  double seconds = 0;
  bool final = false;
};

using ProgressFn = std::function<void(const ProgressState&)>;

// Rate-limits calls to a ProgressFn. Not thread-safe.
class ProgressTicker {
 public:
  explicit ProgressTicker(const ProgressFn* fn, std::string phase)
      : fn_(fn), start_(std::chrono::steady_clock::now()) {
    state_.phase = std::move(phase);
  }
  ProgressState& state() { return state_; }
  double Elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  // Calls the callback when enough time passed since the last call (or `force`).
  void Tick(bool force = false) {
    if (fn_ == nullptr || !*fn_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    state_.seconds = Elapsed();
    state_.final = force;
    (*fn_)(state_);
  }

 private:
  const ProgressFn* fn_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_{};
  ProgressState state_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_STORE_PROGRESS_H_
