// An httplib::Server on 127.0.0.1 for tests' stand-ins (a management node, a webhook receiver):
// routes are added to server() and Start() binds a free port and serves on a thread of its own
// until the destructor.
#ifndef CHUNKFERRY_CONTROL_LOCAL_HTTP_SERVER_H_
#define CHUNKFERRY_CONTROL_LOCAL_HTTP_SERVER_H_

#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace chunkferry::testing {

class LocalHttpServer {
 public:
  LocalHttpServer() = default;
  ~LocalHttpServer() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }
  LocalHttpServer(const LocalHttpServer&) = delete;
  LocalHttpServer& operator=(const LocalHttpServer&) = delete;

  httplib::Server& server() { return server_; }

  // After the routes are set. Bound and listening at return: connections wait in the backlog
  // until the thread accepts them.
  void Start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib's stop() does nothing before its loop runs: a stop that came first would hang the
    // destructor's join.
    for (int i = 0; i < 10'000 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "") const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_CONTROL_LOCAL_HTTP_SERVER_H_
