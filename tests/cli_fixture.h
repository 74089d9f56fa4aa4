// A GoogleTest fixture for tests that run the chunkferry CLI as a child process, once per I/O
// backend: Run() adds the backend's --io flag and checks the exit code; ParseJson() parses a
// command's --json output. Test targets define CHUNKFERRY_CLI (the binary's path).
#ifndef CHUNKFERRY_TESTS_CLI_FIXTURE_H_
#define CHUNKFERRY_TESTS_CLI_FIXTURE_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "io/queue.h"
#include "tests/test_util.h"

namespace chunkferry::testing {

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
    if (args.size() > 1 && args[1] != "store") args.push_back(IoFlag());
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
