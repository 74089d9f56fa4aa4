// A stand-in for the platform's management node in tests, on 127.0.0.1: its ValidateSession
// call (`GET /zstack/v1/accounts/sessions/{uuid}/valid`), answering {"valid": true} for the
// sessions it was given and {"valid": false} for others — or slowly, with an error, or with
// nonsense, as a test asks. Counts the questions.
#ifndef CHUNKFERRY_CONTROL_FAKE_MANAGEMENT_NODE_H_
#define CHUNKFERRY_CONTROL_FAKE_MANAGEMENT_NODE_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "control/local_http_server.h"

namespace chunkferry::testing {

// The platform's ValidateSession, as a management node answers it; `mode` changes its behaviour.
class FakeManagementNode {
 public:
  enum class Mode { kNormal, kSlow, kError, kNonsense };

  explicit FakeManagementNode(std::set<std::string> valid_sessions)
      : valid_(std::move(valid_sessions)) {
    http_.server().Get(R"(/zstack/v1/accounts/sessions/([0-9a-f]+)/valid)",
                       [this](const httplib::Request& req, httplib::Response& res) {
                         ++calls_;
                         switch (mode_.load()) {
                           case Mode::kSlow:
                             std::this_thread::sleep_for(std::chrono::milliseconds(1500));
                             break;
                           case Mode::kError:
                             res.status = 500;
                             res.set_content("boom", "text/plain");
                             return;
                           case Mode::kNonsense:
                             res.set_content(R"({"valid": "yes"})", "application/json");
                             return;
                           case Mode::kNormal:
                             break;
                         }
                         const bool valid = valid_.contains(req.matches[1]);
                         res.set_content(
                             valid ? R"({"valid":true,"schema":{}})" : R"({"valid":false})",
                             "application/json;charset=UTF-8");
                       });
    http_.Start();
  }
  std::string url() const { return http_.url(); }
  int calls() const { return calls_.load(); }
  void set_mode(Mode m) { mode_ = m; }

 private:
  const std::set<std::string> valid_;
  std::atomic<int> calls_{0};
  std::atomic<Mode> mode_{Mode::kNormal};
  LocalHttpServer http_;  // last: stopped before what its handler reads is destroyed
};

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_CONTROL_FAKE_MANAGEMENT_NODE_H_
