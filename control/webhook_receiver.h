// A webhook receiver for tests, on 127.0.0.1, answering as the platform's SDK does
// (ZSClient.webHookCallback, ../shared/api/PLATFORM-CLIENT.md §1): 400 "missing header[X-Job-UUID]"
// or "missing header[X-Job-Success]", 404 "no job[uuid:<id>] found" for a job it does not wait
// for, else 200 with an empty body. It can fail the first N callbacks (500) or answer slowly, and
// records every request it got, in order.
#ifndef CHUNKFERRY_CONTROL_WEBHOOK_RECEIVER_H_
#define CHUNKFERRY_CONTROL_WEBHOOK_RECEIVER_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control/local_http_server.h"

namespace chunkferry::testing {

class WebhookReceiver {
 public:
  struct Call {
    std::string method;
    std::string path;  // with its query
    std::string job_uuid;
    std::string success;
    std::string content_type;
    std::string body;
    int status = 0;  // what the receiver answered
    std::chrono::steady_clock::time_point at;
  };

  WebhookReceiver() {
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Call call{req.method,
                req.target,
                req.get_header_value("X-Job-UUID"),
                req.get_header_value("X-Job-Success"),
                req.get_header_value("Content-Type"),
                req.body,
                200,
                std::chrono::steady_clock::now()};
      const int delay_ms = delay_ms_.load();
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      if (!req.has_header("X-Job-UUID")) {
        call.status = 400;
        res.set_content("missing header[X-Job-UUID]", "text/plain");
      } else if (!req.has_header("X-Job-Success")) {
        call.status = 400;
        res.set_content("missing header[X-Job-Success]", "text/plain");
      } else if (fail_next_.load() > 0) {
        --fail_next_;
        call.status = 500;
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        if (!expected_.contains(call.job_uuid)) {
          call.status = 404;
          res.set_content(absl::StrCat("no job[uuid:", call.job_uuid, "] found"), "text/plain");
        }
      }
      res.status = call.status;
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(std::move(call));
      cv_.notify_all();
    };
    http_.server().Post(".*", handler);
    http_.server().Put(".*", handler);
    http_.Start();
  }

  std::string url(const std::string& path = "/hooks/zs") const { return http_.url(path); }
  std::string prefix() const { return http_.url("/hooks/"); }

  // The SDK's table: callbacks for other jobs get 404.
  void Expect(const std::string& job_uuid) {
    std::lock_guard<std::mutex> lock(mu_);
    expected_.insert(job_uuid);
  }
  void FailNext(int n) { fail_next_ = n; }
  void set_delay_ms(int ms) { delay_ms_ = ms; }

  // Waits up to `timeout` for at least `n` calls; returns the calls so far.
  std::vector<Call> WaitFor(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return calls_.size() >= n; });
    return calls_;
  }
  std::vector<Call> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> expected_;
  std::vector<Call> calls_;
  std::atomic<int> fail_next_{0};
  std::atomic<int> delay_ms_{0};
  LocalHttpServer http_;  // last: stopped before what its handler reads is destroyed
};

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_CONTROL_WEBHOOK_RECEIVER_H_
