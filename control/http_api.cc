#include "control/http_api.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "control/caller.h"
#include "control/http_gate.h"
#include "control/query_string.h"
#include "control/volume_backup_query.h"
#include "control/webhook.h"
#include "io/net.h"

namespace chunkferry::control {
namespace {

constexpr char kJsonType[] = "application/json;charset=UTF-8";
constexpr char kTextType[] = "text/plain;charset=UTF-8";
constexpr char kJobsPath[] = "/zstack/v1/api-jobs/";

// When the request being served on this thread began: set before routing, read when it is
// logged (httplib serves a request on one thread from its first byte to its answer).
thread_local std::optional<std::chrono::steady_clock::time_point> request_start;

// Serializes JSON without throwing: bytes that are not UTF-8 (a path in an error's details)
// become U+FFFD.
std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body), kJsonType);
}

// The longest X-API-Timeout taken (30 days).
constexpr int64_t kMaxApiTimeoutSeconds = 30 * 24 * 3600;

void SendText(httplib::Response& res, int status, absl::string_view text) {
  res.status = status;
  res.set_content(absl::StrCat(text, "\n"), kTextType);
}

// One of the platform's own plain-text refusals, byte for byte (its SDK hands the body to the
// caller as the details of sdk.1000).
void SendPlatformText(httplib::Response& res, int status, absl::string_view text) {
  res.status = status;
  res.set_content(std::string(text), kTextType);
}

// The path with job uuids cut to their first 8 characters: a job uuid is the only secret of a
// poll, so logs must not hold it whole.
std::string RedactPath(absl::string_view path) {
  constexpr absl::string_view kJobs = "/api-jobs/";
  const size_t at = path.find(kJobs);
  if (at == absl::string_view::npos) return std::string(path);
  const size_t start = at + kJobs.size();
  const size_t end = std::min(path.find('/', start), path.size());
  if (end - start <= 8) return std::string(path);
  return absl::StrCat(path.substr(0, start + 8), "...", path.substr(end));
}

bool IsTrue(const httplib::Request& req, const char* header) {
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(req.get_header_value(header)), "true");
}

// A Host header fit to put in a URL: host name or address characters and a port.
bool IsPlainHost(absl::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  for (char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
        c != '[' && c != ']' && c != '_') {
      return false;
    }
  }
  return true;
}

// The webhook of job `job_uuid` for `result`: the body its poll answers, the result (with its
// schema when the call asked for one) or {"error": ...}.
WebhookCall JobCallback(const std::string& url, const std::string& job_uuid, bool with_schema,
                        const SyncResult& result) {
  return WebhookCall{
      url, job_uuid, !result.error.has_value(),
      Dump(result.error.has_value() ? ErrorBody(*result.error) : ResultBody(result, with_schema))};
}

// The routes: the path's segments, and what they name.
struct Route {
  enum Kind {
    kNone,
    kSync,          // PUT    /zstack/v1/vm-backups/{groupUuid}/actions
    kSyncBackup,    // PUT    /zstack/v1/volume-backups/{uuid}/actions
    kDeleteGroup,   // DELETE /zstack/v1/vm-backups/{groupUuid}
    kDeleteBackup,  // DELETE /zstack/v1/volume-backups/{uuid}
    kQuery,         // GET    /zstack/v1/volume-backups[/{uuid}]
    kJob,           // GET    /zstack/v1/api-jobs/{jobUuid}
    kProgress,      // GET    /chunkferry/v1/api-jobs/{jobUuid}/progress
  } kind = kNone;
  std::string uuid;  // the group, volume backup or job
};

// The method a route takes ("GET" also allows HEAD).
const char* RouteMethod(Route::Kind kind) {
  switch (kind) {
    case Route::kSync:
    case Route::kSyncBackup:
      return "PUT";
    case Route::kDeleteGroup:
    case Route::kDeleteBackup:
      return "DELETE";
    case Route::kJob:
    case Route::kProgress:
    case Route::kQuery:
    case Route::kNone:
      break;
  }
  return "GET";
}

Route Match(absl::string_view path) {
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  // A leading "/" makes parts[0] empty.
  if (parts.size() < 2 || !parts[0].empty()) return {};
  const auto is = [&](size_t i, absl::string_view want) {
    return i < parts.size() && parts[i] == want;
  };
  const bool groups = is(3, "vm-backups"), backups = is(3, "volume-backups");
  if (parts.size() == 4 && is(1, "zstack") && is(2, "v1") && backups) return {Route::kQuery, ""};
  if (is(1, "zstack") && is(2, "v1") && (groups || backups) && parts.size() >= 5 &&
      !parts[4].empty()) {
    if (parts.size() == 6 && is(5, "actions")) {
      return {groups ? Route::kSync : Route::kSyncBackup, std::string(parts[4])};
    }
    if (parts.size() == 5) {
      return {groups ? Route::kDeleteGroup : Route::kDeleteBackup, std::string(parts[4])};
    }
  }
  if (parts.size() == 5 && is(1, "zstack") && is(2, "v1") && is(3, "api-jobs") &&
      !parts[4].empty()) {
    return {Route::kJob, std::string(parts[4])};
  }
  if (parts.size() == 6 && is(1, "chunkferry") && is(2, "v1") && is(3, "api-jobs") &&
      !parts[4].empty() && is(5, "progress")) {
    return {Route::kProgress, std::string(parts[4])};
  }
  return {};
}

// The query string's parameters (query_string.h).
std::multimap<std::string, std::string> QueryParams(const httplib::Request& req) {
  const size_t mark = req.target.find('?');
  if (mark == std::string::npos) return {};
  return ParseQueryString(absl::string_view(req.target).substr(mark + 1));
}

absl::string_view StatusText(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 413:
      return "request body too large";
    case 414:
      return "request URI too long";
    case 415:
      return "unsupported media type";
    default:
      return "request failed";
  }
}

}  // namespace

ApiServer::ApiServer(SyncService& service, ApiServerOptions options)
    : service_(service),
      options_(std::move(options)),
      jobs_(JobTableOptions{
          .max_running = options_.max_running_jobs,
          .max_jobs = options_.max_jobs,
          .max_jobs_per_owner = options_.max_jobs_per_session,
          .ttl = std::chrono::milliseconds(std::max<int64_t>(options_.job_ttl_seconds, 0) * 1000),
          .clock = options_.clock}),
      webhooks_(std::make_unique<WebhookSender>(
          WebhookSenderOptions{.threads = options_.webhook_threads,
                               .max_waiting = options_.max_webhooks_waiting,
                               .log = [this](const std::string& line) { Log(line); }})) {}

ApiServer::~ApiServer() { Stop(); }

void ApiServer::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
    return;
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

absl::Status ApiServer::Start() {
  if (server_ != nullptr || stopped_) {
    return absl::FailedPreconditionError("an API server starts once");
  }
  GateOptions gate;
  gate.worker_threads = std::max<size_t>(options_.http_threads, 1);
  gate.max_connections = options_.max_connections;
  gate.head_timeout_ms = options_.head_timeout_ms;
  gate.tls = options_.tls;
  server_ = std::make_unique<GatedServer>(gate);
  GatedServer& s = *server_;
  s.set_payload_max_length(options_.max_body_bytes);
  s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    request_start = std::chrono::steady_clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Every method and path comes to Dispatch, which knows the routes and answers 404 and 405.
  const auto dispatch = [this](const httplib::Request& req, httplib::Response& res) {
    Dispatch(req, res);
  };
  // Bodies are read here rather than by httplib, which parses a form-urlencoded body itself and
  // refuses one over 8 KiB with 413 whatever the set limit (curl's --data sends that type): a
  // body is the API's JSON whatever its declared type. The limit still holds while reading.
  const auto dispatch_with_body = [this](const httplib::Request& req, httplib::Response& res,
                                         const httplib::ContentReader& content_reader) {
    if (req.is_multipart_form_data()) {
      SendText(res, 415, "multipart bodies are not accepted; send the request as JSON");
      LogRequest(req, res.status);
      return;
    }
    httplib::Request with_body = req;
    const bool read = content_reader([&](const char* data, size_t size) {
      with_body.body.append(data, size);
      return true;
    });
    if (!read) return;  // httplib answers (413 past the limit) through the error handler
    Dispatch(with_body, res);
  };
  s.Get(".*", dispatch);
  s.Put(".*", dispatch_with_body);
  s.Post(".*", dispatch_with_body);
  s.Patch(".*", dispatch_with_body);
  s.Delete(".*", dispatch_with_body);
  s.Options(".*", dispatch);
  // What httplib refuses itself (a body over the limit, an unreadable request) gets a plain
  // text reason too, and its log line: httplib calls neither Dispatch nor its logger for it.
  // Answers of Dispatch already have bodies, and were logged there.
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string text(StatusText(res.status));
        if (res.status == 413) {
          absl::StrAppend(&text, ": the limit is ", options_.max_body_bytes, " bytes");
        }
        SendText(res, res.status, text);
        LogRequest(req, res.status);
        return httplib::Server::HandlerResponse::Handled;
      }));
  // Only SO_REUSEADDR: httplib's default adds SO_REUSEPORT, which would let a second server
  // bind the same port and share its connections.
  s.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  int port = options_.port;
  errno = 0;
  if (options_.port == 0) {
    port = s.bind_to_any_port(options_.host);
  } else if (!s.bind_to_port(options_.host, options_.port)) {
    port = -1;
  }
  if (port <= 0) {
    const int err = errno;
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", io::FormatEndpoint({options_.host, options_.port}),
                     err != 0 ? absl::StrCat(": ", std::strerror(err))
                              : std::string(" (address in use or not local)")));
  }
  port_ = static_cast<uint16_t>(port);
  if (!s.StartGate()) {
    const int err = errno;
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot start the API server's connection gate: ", std::strerror(err)));
  }
  listen_returned_ = false;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  // Stop() must not run before the server loop is up: httplib's stop() does nothing until then,
  // and the loop would then serve forever.
  while (!server_->is_running() && !listen_returned_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (listen_returned_) {
    thread_.join();
    server_->StopGate();
    server_.reset();
    return absl::UnavailableError(absl::StrCat(
        "the API server on ", io::FormatEndpoint({options_.host, port_}), " stopped at once"));
  }
  return absl::OkStatus();
}

void ApiServer::Stop() {
  if (server_ != nullptr) {
    // Returns once the server loop stopped accepting; the join waits for the requests in
    // flight (httplib joins its threads before listen_after_bind returns).
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_->StopGate();
    server_.reset();
  }
  stopped_ = true;
  jobs_.Shutdown();
  // After the jobs: the callbacks of the last ones are queued, and dropped (logged) here.
  webhooks_->Shutdown();
}

void ApiServer::LogRequest(const httplib::Request& req, int status) const {
  std::string ms = "-";
  if (request_start.has_value()) {
    ms = absl::StrCat(std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - *request_start)
                          .count());
    request_start.reset();
  }
  Log(absl::StrCat("http ", req.method, " ", RedactPath(req.path), " ", status, " ", ms, " ms"));
}

void ApiServer::Dispatch(const httplib::Request& req, httplib::Response& res) {
  Answer(req, res);
  LogRequest(req, res.status);
}

void ApiServer::Answer(const httplib::Request& req, httplib::Response& res) {
  Route route = Match(req.path);
  if (route.kind == Route::kNone) {
    SendText(res, 404, absl::StrCat("no such path: ", RedactPath(req.path)));
    return;
  }
  const bool is_get = req.method == "GET" || req.method == "HEAD";
  if (route.kind == Route::kDeleteBackup && is_get) {
    route.kind = Route::kQuery;  // the same path: QueryVolumeBackup of one uuid
  }
  const std::string method = RouteMethod(route.kind);
  if (req.method != method && !(method == "GET" && req.method == "HEAD")) {
    std::string allowed = method == "GET" ? "GET, HEAD" : method;
    if (route.kind == Route::kDeleteBackup) allowed = "DELETE, GET, HEAD";
    res.set_header("Allow", allowed);
    SendText(res, 405, absl::StrCat(req.method, " is not allowed here; allowed: ", allowed));
    return;
  }
  switch (route.kind) {
    case Route::kSync:
    case Route::kSyncBackup:
    case Route::kDeleteGroup:
    case Route::kDeleteBackup:
      HandleCall(route.kind, route.uuid, req, res);
      break;
    case Route::kQuery:
      HandleQuery(route.uuid, req, res);
      break;
    case Route::kJob:
      HandleJob(route.uuid, req, res);
      break;
    case Route::kProgress:
      HandleProgress(route.uuid, res);
      break;
    case Route::kNone:
      break;
  }
}

SyncResult ApiServer::RunCall(const std::optional<ApiError>& refusal, const PreparedCall& call,
                              const engine::ProgressFn* progress) {
  SyncResult result;
  if (refusal.has_value() || call.error.has_value()) {
    result.error = refusal.has_value() ? refusal : call.error;
    return result;
  }
  return call.run(progress);
}

ApiServer::PreparedCall ApiServer::Prepare(int kind, const std::string& uuid,
                                           const httplib::Request& req,
                                           std::chrono::steady_clock::time_point deadline) {
  PreparedCall call;
  if (kind == Route::kSync || kind == Route::kSyncBackup) {
    ParsedAction parsed = ParseSyncAction(
        uuid, req.body, kind == Route::kSync ? SyncScope::kGroup : SyncScope::kBackup);
    call.bad_request = std::move(parsed.bad_request);
    call.error = std::move(parsed.error);
    parsed.request.deadline = deadline;
    call.run = [this, request = std::move(parsed.request)](const engine::ProgressFn* progress) {
      return service_.Sync(request, progress);
    };
    return call;
  }
  // The deletes take their parameters from the query string, as the platform's SDK sends them:
  // backupStorageUuids repeated (or indexed, "backupStorageUuids.0"), deleteMode and
  // handleDependency once each (accepted; what they would change does not apply to a store).
  std::vector<std::string> storages;
  const std::multimap<std::string, std::string> params = QueryParams(req);
  for (const auto& [key, value] : params) {
    if (key == "backupStorageUuids" || absl::StartsWith(key, "backupStorageUuids.")) {
      storages.push_back(value);
    } else if ((key == "deleteMode" || key == "handleDependency") && params.count(key) > 1) {
      call.bad_request =
          absl::StrCat("Invalid query parameter[", key,
                       "], only one value is allowed for the parameter but multiple values found");
      return call;
    }
  }
  const engine::DeleteKind what =
      kind == Route::kDeleteGroup ? engine::DeleteKind::kGroup : engine::DeleteKind::kBackup;
  call.run = [this, what, uuid, storages = std::move(storages)](const engine::ProgressFn*) {
    return service_.DeleteEverywhere(what, uuid, storages);
  };
  return call;
}

std::string ApiServer::JobLocation(const httplib::Request& req, const std::string& job_uuid) const {
  std::string host = req.get_header_value("Host");
  if (!IsPlainHost(host)) host = io::FormatEndpoint({options_.host, port_});
  return absl::StrCat(options_.tls != nullptr ? "https://" : "http://", host, kJobsPath, job_uuid);
}

std::optional<Caller> ApiServer::Identify(const Registry& registry, const httplib::Request& req,
                                          httplib::Response& res) {
  const std::string authorization = req.get_header_value("Authorization");
  const std::string date = req.get_header_value("Date");
  Caller caller = IdentifyCaller(registry, req.method, req.path,
                                 req.has_header("Authorization") ? &authorization : nullptr,
                                 req.has_header("Date") ? &date : nullptr, absl::Now());
  if (caller.http_status != 0) {
    SendPlatformText(res, caller.http_status, caller.http_text);
    return std::nullopt;
  }
  return caller;
}

void ApiServer::HandleQuery(const std::string& uuid, const httplib::Request& req,
                            httplib::Response& res) {
  const std::shared_ptr<const Registry> registry = service_.registry();
  const std::optional<Caller> caller = Identify(*registry, req, res);
  if (!caller.has_value()) return;
  // A query is answered at once whatever the mode (the platform's queries are synchronous).
  if (!caller->accepted()) {
    SendJson(res, 503, ErrorBody(*caller->refusal));
    return;
  }
  const std::multimap<std::string, std::string> params = QueryParams(req);
  const ParsedQuery parsed = ParseVolumeBackupQuery(
      params, uuid.empty() ? std::nullopt : std::optional<std::string>(uuid));
  if (!parsed.bad_request.empty()) {
    SendPlatformText(res, 400, parsed.bad_request);
    return;
  }
  const QueryAnswer answer = service_.Query(parsed.query);
  if (answer.error.has_value()) {
    SendJson(res, 503, ErrorBody(*answer.error));
    return;
  }
  SendJson(res, 200, answer.body);
}

void ApiServer::HandleCall(int kind, const std::string& uuid, const httplib::Request& req,
                           httplib::Response& res) {
  const std::shared_ptr<const Registry> registry = service_.registry();
  const std::optional<Caller> identified = Identify(*registry, req, res);
  if (!identified.has_value()) return;
  const Caller& caller = *identified;
  const bool named_job = req.has_header("X-Job-UUID");
  std::string job_uuid;
  if (named_job) {
    job_uuid = std::string(absl::StripAsciiWhitespace(req.get_header_value("X-Job-UUID")));
    if (!IsJobUuid(job_uuid)) {
      SendText(res, 400, "the X-Job-UUID header must be 32 lowercase hex characters");
      return;
    }
  }
  // X-API-Timeout: seconds, as the platform reads it; told back as the job's apiTimeout (ms).
  int64_t api_timeout_ms = options_.api_timeout_ms;
  if (req.has_header("X-API-Timeout")) {
    int64_t seconds = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(req.get_header_value("X-API-Timeout")),
                          &seconds) ||
        seconds <= 0 || seconds > kMaxApiTimeoutSeconds) {
      // The platform answers a non-number with a 500 of its own; a clear one here.
      SendText(res, 500, "X-API-Timeout must be a whole number of seconds from 1 to 2592000");
      return;
    }
    api_timeout_ms = seconds * 1000;
  }

  // The call is bounded by its apiTimeout from now (a job's time in the queue counts, as the
  // platform counts it from the call).
  PreparedCall parsed =
      Prepare(kind, uuid, req,
              std::chrono::steady_clock::now() + std::chrono::milliseconds(api_timeout_ms));
  if (!parsed.bad_request.empty()) {
    SendText(res, 400, parsed.bad_request);
    return;
  }
  if (!named_job && !options_.job_mode_default) {
    const SyncResult result = RunCall(caller.refusal, parsed, nullptr);
    if (result.error.has_value()) {
      SendJson(res, 503, ErrorBody(*result.error));
    } else {
      SendJson(res, 200, ResultBody(result, IsTrue(req, "X-JSON-Schema")));
    }
    return;
  }

  // X-Web-Hook: only job-mode calls are called back (a call answered at once gets no callback,
  // as on the platform); refused before any job exists when the registry does not allow it.
  std::shared_ptr<PendingWebhook> callback;
  std::string webhook_url;
  const bool refused = !caller.accepted();
  const bool with_schema = IsTrue(req, "X-JSON-Schema");
  const auto make_callback = [&]() -> absl::Status {
    if (!req.has_header("X-Web-Hook")) return absl::OkStatus();
    const std::string url = req.get_header_value("X-Web-Hook");
    absl::Status allowed = CheckWebhookUrl(registry->webhooks, url);
    if (!allowed.ok()) return allowed;
    WebhookPolicy policy = registry->webhooks;
    // A caller the server does not accept gets its refusal called back once, as best effort:
    // unauthenticated calls must not crowd out the callbacks of accepted ones.
    if (refused) policy.attempts = 1;
    callback = std::make_shared<PendingWebhook>(*webhooks_, std::move(policy), refused);
    webhook_url = url;
    return absl::OkStatus();
  };

  if (!named_job) {
    auto fresh = NewJobUuid();
    if (!fresh.ok()) {
      SendJson(res, 503, ErrorBody(ErrorFromStatus(fresh.status())));
      return;
    }
    job_uuid = *std::move(fresh);
  }
  if (absl::Status hook = make_callback(); !hook.ok()) {
    SendText(res, 400, hook.message());
    return;
  }
  if (refused) {
    // Checked before any job exists: a made-up session gets the platform's answer (202, then
    // ID.1001 when polled) from a bounded list of refusals, never a place in the job table.
    const SyncResult refusal = RunCall(caller.refusal, parsed, nullptr);
    if (!jobs_.Refuse(job_uuid, refusal)) {
      callback = nullptr;  // that uuid has its answer already, and its callback was sent then
    }
    if (callback != nullptr) {
      callback->Finished(JobCallback(webhook_url, job_uuid, with_schema, refusal));
    }
  } else {
    JobDone done = nullptr;
    if (callback != nullptr) {
      done = [callback, webhook_url, job_uuid, with_schema](const SyncResult& result) {
        callback->Finished(JobCallback(webhook_url, job_uuid, with_schema, result));
      };
    }
    auto started = jobs_.Start(
        job_uuid, caller.principal,
        [this, parsed = std::move(parsed)](const engine::ProgressFn& progress) {
          return RunCall(std::nullopt, parsed, &progress);
        },
        std::move(done));
    if (started.ok() && *started == JobTable::StartOutcome::kExists) {
      callback = nullptr;  // the first call of this uuid has the job, and its callback
    }
    if (!started.ok()) {
      // The table (or this session's share) is full or the server is stopping: nothing was
      // started, the client may retry.
      res.set_header("Retry-After", "10");
      SendJson(res, 503,
               ErrorBody(MakeError(kSysOperationFailed, std::string(started.status().message()))));
      return;
    }
  }
  // A job that exists already (the client resent its X-Job-UUID) answers the same, and runs once.
  if (callback != nullptr) GatedServer::AfterResponse([callback] { callback->Answered(); });
  SendJson(res, 202,
           Json{{"location", JobLocation(req, job_uuid)}, {"apiTimeout", api_timeout_ms}});
}

void ApiServer::HandleJob(const std::string& job_uuid, const httplib::Request& req,
                          httplib::Response& res) {
  const JobSnapshot job = IsJobUuid(job_uuid) ? jobs_.Get(job_uuid) : JobSnapshot{};
  switch (job.state) {
    case JobState::kUnknown:
      SendText(res, 404, "no such job: it never existed, or it finished and expired");
      return;
    case JobState::kRunning:
      SendJson(res, 202, Json::object());
      return;
    case JobState::kSucceeded:
      SendJson(res, 200, ResultBody(job.result, IsTrue(req, "X-JSON-Schema")));
      return;
    case JobState::kFailed:
      SendJson(res, 503,
               job.result.error.has_value()
                   ? ErrorBody(*job.result.error)
                   : ErrorBody(MakeError(kSysInternal, "the job failed without an error")));
      return;
  }
}

void ApiServer::HandleProgress(const std::string& job_uuid, httplib::Response& res) {
  const JobSnapshot job = IsJobUuid(job_uuid) ? jobs_.Get(job_uuid) : JobSnapshot{};
  if (job.state == JobState::kUnknown) {
    SendText(res, 404, "no such job: it never existed, or it finished and expired");
    return;
  }
  const engine::ProgressState& p = job.progress;
  std::string phase = p.phase;
  if (job.queued) phase = "queued";
  if (phase.empty()) phase = job.state == JobState::kRunning ? "starting" : "done";
  const uint64_t rate =
      p.seconds > 0 ? static_cast<uint64_t>(static_cast<double>(p.bytes_done) / p.seconds) : 0;
  Json body = {{"jobUuid", job_uuid},
               {"state", JobStateName(job.state)},
               {"phase", phase},
               {"bytesDone", p.bytes_done},
               {"bytesTotal", p.bytes_total},
               {"chunksDone", p.chunks_done},
               {"chunksTotal", p.chunks_total},
               {"bytesSent", p.bytes_sent},
               {"chunksSent", p.chunks_sent},
               {"bytesPerSecond", rate},
               {"seconds", p.seconds}};
  if (job.state != JobState::kRunning) {
    body["etaSeconds"] = 0;
  } else if (p.bytes_done > 0 && p.bytes_total > p.bytes_done && p.seconds > 0) {
    body["etaSeconds"] = p.seconds * static_cast<double>(p.bytes_total - p.bytes_done) /
                         static_cast<double>(p.bytes_done);
  }
  SendJson(res, 200, body);
}

}  // namespace chunkferry::control
