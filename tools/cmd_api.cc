// chunkferry api: the sync API's HTTP endpoint (SyncVmBackupFromImageStoreBackupStorage, in the
// platform's synchronous and job conventions) over the backup storages of a registry config,
// until SIGINT or SIGTERM; then it waits for the syncs that are running.

#include <signal.h>

#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "control/http_api.h"
#include "control/registry.h"
#include "control/sync_service.h"
#include "io/net.h"
#include "tools/cli_common.h"
#include "tools/daemon_util.h"

namespace chunkferry::tools {
namespace {

constexpr char kCmd[] = "api";
constexpr char kDefaultListen[] = "127.0.0.1:8080";

}  // namespace

int CmdApi(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"config", "the registry: backup storages and accepted sessions (JSON)"},
      {"listen", "address and port to listen on; port 0 picks a free one", true, kDefaultListen},
      {"job-mode", "answer every PUT with 202 and a job to poll, even without X-Job-UUID", false,
       ""},
      {"job-ttl", "seconds a finished job can still be polled", true, "3600"},
      {"api-timeout-ms",
       "the apiTimeout of a call without X-API-Timeout: told to job clients (how long they poll) "
       "and the bound of its sync",
       true, "21600000"},
      {"max-jobs", "syncs that run at once as jobs; more wait in a queue", true, "2"},
      {"max-jobs-per-session",
       "jobs one session may hold (queued, running, or finished and not expired) of the 1024 the "
       "server keeps",
       true, "512"},
      {"max-connections",
       "HTTP connections held at once (idle ones hold no thread); more are closed at accept", true,
       "4096"},
      {"ready-file", "once listening, write the actual HOST:PORT to this file (atomically)", true,
       ""},
  };
  for (FlagSpec& spec : ServerTlsFlags("API callers")) specs.push_back(std::move(spec));
  std::string help;
  Flags f;
  if (auto rc = ParseFlags(
          kCmd, "--config FILE [--listen ADDR:PORT] [--job-mode] [flags]", std::move(specs), args,
          &f,
          {.about = "Serves the platform's backup API between the backup storages of the config "
                    "until SIGINT\nor SIGTERM: SyncVmBackupFromImageStoreBackupStorage (PUT "
                    "/zstack/v1/vm-backups/{groupUuid}/actions),\nSyncBackupFromImageStoreBackup"
                    "Storage (PUT /zstack/v1/volume-backups/{uuid}/actions),\nDeleteVmBackup, "
                    "DeleteVolumeBackup (DELETE) and QueryVolumeBackup (GET /zstack/v1/volume-"
                    "backups).\nA call answers when it is done, or, in job mode or with an "
                    "X-Job-UUID header, at once\nwith a job to poll at GET /zstack/v1/api-jobs/"
                    "{jobUuid} (queries always answer at once).\nWith --tls-cert and --tls-key it "
                    "speaks HTTPS only (TLS 1.3). Logs go to stderr.",
           .common = {"io", "help"},
           .help = &help})) {
    return *rc;
  }
  auto config = f.Require("config");
  if (!config.ok()) return Usage(kCmd, config.status().message(), help);
  auto listen = io::ParseEndpoint(f.Get("listen"));
  if (!listen.ok()) return Usage(kCmd, absl::StrCat("--listen: ", listen.status().message()), help);
  auto backend = io::ParseBackend(f.Get("io"));
  if (!backend.ok()) return Usage(kCmd, absl::StrCat("--io: ", backend.status().message()), help);
  auto ttl = f.GetInt("job-ttl");
  if (!ttl.ok() || *ttl < 1 || *ttl > 30 * 24 * 3600) {
    return Usage(kCmd, "--job-ttl must be a number of seconds from 1 to 2592000", help);
  }
  auto api_timeout = f.GetInt("api-timeout-ms");
  if (!api_timeout.ok() || *api_timeout < 1) {
    return Usage(kCmd, "--api-timeout-ms must be a positive number of milliseconds", help);
  }
  auto max_jobs = f.GetInt("max-jobs");
  if (!max_jobs.ok() || *max_jobs < 1 || *max_jobs > 64) {
    return Usage(kCmd, "--max-jobs must be a whole number from 1 to 64", help);
  }
  auto per_session = f.GetInt("max-jobs-per-session");
  if (!per_session.ok() || *per_session < 1 || *per_session > 1024) {
    return Usage(kCmd, "--max-jobs-per-session must be a whole number from 1 to 1024", help);
  }
  auto max_conns = f.GetInt("max-connections");
  if (!max_conns.ok() || *max_conns < 16 || *max_conns > 65536) {
    return Usage(kCmd, "--max-connections must be a whole number from 16 to 65536", help);
  }
  const std::string ready_file = f.Get("ready-file");
  auto tls = MakeServerTls(f);
  if (!tls.ok()) return Fail(kCmd, tls.status());

  auto registry = control::LoadRegistry(*config);
  if (!registry.ok()) return Fail(kCmd, registry.status());
  // Plain HTTP: sessions and job uuids (the only secret of a poll) cross the network in clear.
  const std::string& host = listen->host;
  if (*tls == nullptr && !(host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0)) {
    LogLine(absl::StrCat("warning: serving plain HTTP on ", host,
                         ": sessions and job uuids travel in clear; keep it on a trusted network "
                         "or use --tls-cert and --tls-key"));
  }
  if (registry->sessions.empty() && registry->management_node == nullptr &&
      registry->access_keys.keys.empty()) {
    LogLine(absl::StrCat("warning: ", *config,
                         " names no \"sessions\", \"managementNode\" or \"accessKeys\": every "
                         "call will be refused"));
  }

  // Every thread started from here on inherits the mask, so SIGINT, SIGTERM and SIGHUP reach
  // only the sigwait below.
  DaemonSignals signals;
  if (const uint64_t files = RaiseFileLimit(); files < static_cast<uint64_t>(*max_conns) + 64) {
    LogLine(absl::StrCat("warning: at most ", files, " open files (RLIMIT_NOFILE): fewer than ",
                         "--max-connections ", *max_conns, " can be held"));
  }

  control::ServiceOptions service_options;
  service_options.queue.backend = *backend;
  control::SyncService service(*std::move(registry), service_options);

  control::ApiServerOptions options;
  options.host = listen->host;
  options.port = listen->port;
  options.job_mode_default = f.GetBool("job-mode");
  options.job_ttl_seconds = *ttl;
  options.api_timeout_ms = *api_timeout;
  options.max_running_jobs = static_cast<size_t>(*max_jobs);
  options.max_jobs_per_session = static_cast<size_t>(*per_session);
  options.max_connections = static_cast<size_t>(*max_conns);
  // A synchronous PUT holds a thread for its whole sync: leave room for polls beside them.
  options.http_threads = static_cast<size_t>(*max_jobs) + 8;
  options.log = LogLine;
  options.tls = *tls;
  std::optional<control::ApiServer> server;
  server.emplace(service, options);
  if (absl::Status st = server->Start(); !st.ok()) return Fail(kCmd, st);
  const std::string address = io::FormatEndpoint({listen->host, server->port()});
  if (absl::Status st = WriteReadyFile(ready_file, address); !st.ok()) {
    server->Stop();
    return Fail(kCmd, st);
  }
  std::printf("listening on %s://%s (%s mode, %zu backup storages)\n",
              options.tls != nullptr ? "https" : "http", address.c_str(),
              options.job_mode_default ? "job" : "synchronous",
              service.registry()->storages.size());
  std::fflush(stdout);

  int sig = 0;
  while ((sig = signals.Wait()) == SIGHUP) {
    // A broken config keeps the registry in force: a typo must not take the API down.
    absl::StatusOr<control::Registry> reloaded = control::LoadRegistry(*config);
    if (!reloaded.ok()) {
      LogLine(absl::StrCat(
          "received SIGHUP: ", *config,
          " not reloaded, the registry in force stays: ", reloaded.status().message()));
      continue;
    }
    LogLine(absl::StrCat("received SIGHUP: ", *config, " reloaded (", reloaded->storages.size(),
                         " backup storages, ", reloaded->sessions.size(), " sessions)"));
    service.ReplaceRegistry(*std::move(reloaded));
  }
  LogLine(absl::StrCat("received ", DaemonSignals::Name(sig),
                       ": stopping (running syncs finish first)"));
  server.reset();  // stops serving, then waits for the running jobs
  LogLine("stopped");
  return kExitOk;
}

}  // namespace chunkferry::tools
