// The sync API over HTTP, as the platform's clients call it
// (shared/api/SyncVmBackupFromImageStoreBackupStorage.md):
//
//   PUT /zstack/v1/vm-backups/{groupUuid}/actions     the sync: 200 with the result, or (job
//                                                      mode) 202 {"location", "apiTimeout"}
//   PUT /zstack/v1/volume-backups/{uuid}/actions      one volume backup's sync: {"inventory"}
//   DELETE /zstack/v1/vm-backups/{groupUuid}          DeleteVmBackup, DeleteVolumeBackup: {}
//   DELETE /zstack/v1/volume-backups/{uuid}             (?backupStorageUuids=...&deleteMode=...)
//   GET /zstack/v1/volume-backups[/{uuid}]            QueryVolumeBackup (q, limit, start, ...)
//   GET /zstack/v1/api-jobs/{jobUuid}                  a job: 202 {} running, 200 result,
//                                                      503 {"error"}, 404 unknown or expired
//   GET /chunkferry/v1/api-jobs/{jobUuid}/progress     a job's progress (this project's own)
//
// A job-mode PUT with `X-Web-Hook: <url>` has its result POSTed to that URL when the job ends,
// after its 202 was written (control/webhook.h), if the registry allows the URL; else 400.
// A PUT runs as a job when the server runs in job mode or the request names its job
// (X-Job-UUID); otherwise it answers when the sync is done. Errors of the call itself (a session
// the registry does not accept, a missing field, an unknown group) are ErrorCode bodies with 503;
// requests the server cannot read (no Authorization, no action key, ...) are 400 with a
// plain-text reason.
#ifndef CHUNKFERRY_CONTROL_HTTP_API_H_
#define CHUNKFERRY_CONTROL_HTTP_API_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "control/caller.h"
#include "control/job_table.h"
#include "control/sync_service.h"
#include "engine/wire/tls.h"

namespace chunkferry::control {
class GatedServer;    // control/http_gate.h
class WebhookSender;  // control/webhook.h
}  // namespace chunkferry::control

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace chunkferry::control {

struct ApiServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;               // 0: any free port (see ApiServer::port)
  bool job_mode_default = false;   // every PUT runs as a job, even without X-Job-UUID
  int64_t job_ttl_seconds = 3600;  // how long a finished job can be polled
  // Told to job-mode clients as "apiTimeout" (how long they poll before giving up), and the
  // bound of every sync the API runs (X-API-Timeout, in seconds, overrides it per call): past
  // it the sync stops and fails with SYS.1001.
  int64_t api_timeout_ms = 6 * 3600 * 1000;
  size_t max_running_jobs = 2;  // jobs whose syncs run at once; more wait in a queue
  size_t max_jobs = 1024;       // jobs held (queued, running, or finished within the TTL)
  // Of which one session may hold at most this many (0: no limit but max_jobs), so that one
  // client cannot lock the others out. Refused calls (a session not accepted) hold none.
  size_t max_jobs_per_session = 512;
  // Threads serving requests. A synchronous PUT holds one for its whole sync; connections
  // waiting for a request (idle keep-alive, or a head still arriving) hold none (http_gate.h).
  size_t http_threads = 8;
  // Connections held at once; more are closed as they are accepted.
  size_t max_connections = 4096;
  // From a request's first byte (a connection's accept) to the end of its head: a client that
  // sends its headers slowly is closed past it.
  int64_t head_timeout_ms = 10'000;
  size_t max_body_bytes = 1 << 20;  // larger request bodies are refused with 413
  // Serve HTTPS (TLS 1.3) with this server context (certificate, key, optionally the CA of
  // client certificates); null: plain HTTP. Job locations then say https://.
  std::shared_ptr<engine::TlsContext> tls = nullptr;
  // Job results called back to X-Web-Hook URLs (only those the registry allows): sent at once,
  // and held waiting for a first try or a retry.
  size_t webhook_threads = 4;
  size_t max_webhooks_waiting = 1024;
  JobClock clock = nullptr;  // for the job table's expiry; empty: steady_clock (tests)
  // Receives one line per request (method, path, status, milliseconds); empty: stderr.
  std::function<void(const std::string&)> log = nullptr;
};

// Serves the sync API of `service` on one listening socket. Start and Stop are called from one
// thread; requests are served on the server's own threads. `service` must outlive the server.
class ApiServer {
 public:
  ApiServer(SyncService& service, ApiServerOptions options);
  ~ApiServer();  // Stop()
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds options.host:options.port and serves on a thread of its own. Unavailable when the
  // address cannot be bound; FailedPrecondition when called again, or after Stop.
  [[nodiscard]] absl::Status Start();
  // The bound port, once Start succeeded.
  uint16_t port() const { return port_; }

  // Stops accepting connections, waits for the requests being served (a synchronous PUT until
  // its sync ends) and for the jobs whose syncs are running; queued jobs are dropped. Idempotent.
  void Stop();

 private:
  // Answers every request (the server sends all methods and paths here) and logs it.
  void Dispatch(const httplib::Request& req, httplib::Response& res);
  void Answer(const httplib::Request& req, httplib::Response& res);
  // Logs "http METHOD PATH STATUS MS ms", job uuids cut short.
  void LogRequest(const httplib::Request& req, int status) const;
  // A call of the API (a sync, a delete; `kind`: the route's), in sync or job mode: the caller,
  // X-Job-UUID, X-API-Timeout and X-Web-Hook, then the call itself.
  void HandleCall(int kind, const std::string& uuid, const httplib::Request& req,
                  httplib::Response& res);
  void HandleJob(const std::string& job_uuid, const httplib::Request& req, httplib::Response& res);
  void HandleProgress(const std::string& job_uuid, httplib::Response& res);
  // A call read from its request: exactly one of `bad_request` (a plain-text 400), `error` (the
  // call fails with it), or `run`.
  struct PreparedCall {
    std::string bad_request;
    std::optional<ApiError> error;
    std::function<SyncResult(const engine::ProgressFn* progress)> run;
  };
  // Who sent `req` (control/caller.h); nullopt when it was answered already (a request the
  // platform refuses with a plain-text 400/401).
  std::optional<Caller> Identify(const Registry& registry, const httplib::Request& req,
                                 httplib::Response& res);
  // QueryVolumeBackup: answered at once, 200 with the page or 503.
  void HandleQuery(const std::string& uuid, const httplib::Request& req, httplib::Response& res);
  // `deadline`: when a sync must have ended (its apiTimeout from the call).
  PreparedCall Prepare(int kind, const std::string& uuid, const httplib::Request& req,
                       std::chrono::steady_clock::time_point deadline);
  // Runs a call whose request was readable: what a synchronous call and a job do.
  // `refusal`: the caller was not accepted (control/caller.h); the call fails with it.
  SyncResult RunCall(const std::optional<ApiError>& refusal, const PreparedCall& call,
                     const engine::ProgressFn* progress);
  // "http[s]://<Host of the request, else host:port>/zstack/v1/api-jobs/<uuid>"
  std::string JobLocation(const httplib::Request& req, const std::string& job_uuid) const;
  void Log(const std::string& line) const;

  SyncService& service_;
  const ApiServerOptions options_;
  JobTable jobs_;
  std::unique_ptr<WebhookSender> webhooks_;
  std::unique_ptr<GatedServer> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};
  bool stopped_ = false;
  uint16_t port_ = 0;
};

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_HTTP_API_H_
