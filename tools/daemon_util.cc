#include "tools/daemon_util.h"

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <ctime>
#include <mutex>

#include "io/fd.h"

namespace chunkferry::tools {

void LogLine(const std::string& line) {
  static std::mutex mu;
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &t);
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "%s.%03ldZ %s\n", when, ts.tv_nsec / 1'000'000, line.c_str());
  std::fflush(stderr);
}

DaemonSignals::DaemonSignals() {
  sigemptyset(&stop_);
  sigaddset(&stop_, SIGINT);
  sigaddset(&stop_, SIGTERM);
  sigaddset(&stop_, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &stop_, &old_);
}

DaemonSignals::~DaemonSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

int DaemonSignals::Wait() {
  int sig = 0;
  while (::sigwait(&stop_, &sig) != 0) {
  }
  return sig;
}

const char* DaemonSignals::Name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a signal";
  }
}

uint64_t RaiseFileLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur;
}

absl::Status WriteReadyFile(const std::string& ready_file, const std::string& address) {
  if (ready_file.empty()) return absl::OkStatus();
  return io::WriteFileAtomic(ready_file, address);
}

}  // namespace chunkferry::tools
