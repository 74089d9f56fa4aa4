// A GoogleTest fixture for tests that run the chunkferry CLI as a child process, once per I/O
// backend: Run() adds the backend's --io flag and checks the exit code; ParseJson() parses a
// command's --json output. DaemonProcess runs a daemon (`serve`, `api`) until it is destroyed.
// Test targets define CHUNKFERRY_CLI (the binary's path).
#ifndef CHUNKFERRY_TESTS_CLI_FIXTURE_H_
#define CHUNKFERRY_TESTS_CLI_FIXTURE_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "io/fd.h"
#include "io/queue.h"
#include "tests/test_util.h"

namespace chunkferry::testing {

// A daemon child process started with `argv` plus `--ready-file ready_file`; the constructor
// waits (up to 20 s) until the daemon wrote its HOST:PORT there. Stopped (SIGTERM, then reaped)
// when destroyed.
class DaemonProcess {
 public:
  DaemonProcess(std::vector<std::string> argv, const std::string& ready_file) {
    ::unlink(ready_file.c_str());
    argv.push_back("--ready-file");
    argv.push_back(ready_file);
    pid_ = StartProcess(argv);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto text = io::ReadFileToString(ready_file);
      if (text.ok() && !text->empty()) {
        address_ = std::string(absl::StripAsciiWhitespace(*text));
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;  // exited early: address_ stays empty
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~DaemonProcess() { Stop(SIGTERM); }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Sends `sig` and reaps; returns the exit code (-1 for a signal death or no process).
  int Stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // Waits for the process to end by itself; returns its wait status (-1: no process).
  int Wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  // HOST:PORT; empty when the daemon did not start.
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }

 private:
  std::string address_;
  pid_t pid_ = -1;
};

class CliFixture : public ::testing::TestWithParam<io::Backend> {
 protected:
  using Json = nlohmann::ordered_json;

  void SetUp() override { CF_SKIP_IF_NO_URING(GetParam()); }

  std::string IoFlag() const {
    return GetParam() == io::Backend::kUring ? "--io=uring" : "--io=threads";
  }

  // Runs the CLI with `args` (plus --io for this backend, except for `store`); expects exit code
  // `want`, showing the command and its output when it differs.
  ProcessResult Run(std::vector<std::string> args, int want = 0) {
    args.insert(args.begin(), CHUNKFERRY_CLI);
    if (args.size() > 1 && args[1] != "store" && args[1] != "key") args.push_back(IoFlag());
    auto r = RunProcess(args);
    EXPECT_EQ(r.exit_code, want) << absl::StrJoin(args, " ") << "\nstdout: " << r.out
                                 << "\nstderr: " << r.err;
    return r;
  }

  static Json ParseJson(const std::string& text) {
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
    return j;
  }

  TempDir tmp_;
};

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_TESTS_CLI_FIXTURE_H_
