// What the two daemons (`chunkferry serve`, `chunkferry api`) share: timestamped log lines on
// stderr, and stopping on SIGINT/SIGTERM (reloading on SIGHUP) without a signal handler.
#ifndef CHUNKFERRY_TOOLS_DAEMON_UTIL_H_
#define CHUNKFERRY_TOOLS_DAEMON_UTIL_H_

#include <signal.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace chunkferry::tools {

// Writes one line to stderr, prefixed with the UTC time ("2025-01-31T12:00:00.123Z").
// Thread-safe.
void LogLine(const std::string& line);

// Blocks SIGINT, SIGTERM and SIGHUP from construction to destruction. Construct it before
// starting any thread: threads inherit the mask, so the signals reach only Wait().
class DaemonSignals {
 public:
  DaemonSignals();
  ~DaemonSignals();
  DaemonSignals(const DaemonSignals&) = delete;
  DaemonSignals& operator=(const DaemonSignals&) = delete;

  // Waits for SIGINT, SIGTERM or SIGHUP; returns its number.
  int Wait();
  // "SIGINT", "SIGTERM", "SIGHUP".
  static const char* Name(int sig);

 private:
  sigset_t stop_;
  sigset_t old_;
};

// Raises the soft limit of open descriptors to the hard limit: a daemon holds one per
// connection, and the usual soft limit (1024) is below what it is configured to serve. Returns
// the limit now in force.
uint64_t RaiseFileLimit();

// Writes `address` (HOST:PORT) to `ready_file` atomically, unless `ready_file` is empty: how a
// caller that asked for port 0 learns the port once the daemon listens.
[[nodiscard]] absl::Status WriteReadyFile(const std::string& ready_file,
                                          const std::string& address);

}  // namespace chunkferry::tools

#endif  // CHUNKFERRY_TOOLS_DAEMON_UTIL_H_
