// chunkferry serve: the store daemon. Serves one store (a directory or a RADOS pool) to other
// nodes over the wire protocol (docs/PROTOCOL.md) until SIGINT or SIGTERM, then closes the store
// (flushing it).
// SIGHUP reloads the keys (--keys or --key-file) without dropping a connection.

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/rados/rados_store.h"
#include "engine/wire/auth.h"
#include "engine/wire/key_ring.h"
#include "engine/wire/served_store.h"
#include "engine/wire/store_server.h"
#include "engine/wire/tls.h"
#include "io/net.h"
#include "tools/cli_common.h"
#include "tools/daemon_util.h"

namespace chunkferry::tools {
namespace {

constexpr char kCmd[] = "serve";
constexpr char kDefaultListen[] = "127.0.0.1:7170";

// Where the crash tests (tests/faults/campaign.py) stop the daemon: CHUNKFERRY_SERVE_CRASH_AT=
// STEP[:N] kills it (SIGKILL, as a power cut would stop it) right after the Nth success of
// commit step STEP ("flush", "manifest" or "group"; N defaults to 1), before the client hears of
// it. Unset in production. Returns an empty hook when unset, an error when malformed.
absl::StatusOr<std::function<void(engine::CommitStep)>> CrashHookFromEnv() {
  const char* at = std::getenv("CHUNKFERRY_SERVE_CRASH_AT");
  if (at == nullptr || *at == '\0') return std::function<void(engine::CommitStep)>();
  std::vector<std::string> parts = absl::StrSplit(at, ':');
  uint64_t nth = 1;
  std::optional<engine::CommitStep> step;
  for (auto s : {engine::CommitStep::kFlushed, engine::CommitStep::kManifestPublished,
                 engine::CommitStep::kGroupPublished}) {
    if (parts[0] == engine::CommitStepName(s)) step = s;
  }
  if (!step || parts.size() > 2 ||
      (parts.size() == 2 && (!absl::SimpleAtoi(parts[1], &nth) || nth == 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("CHUNKFERRY_SERVE_CRASH_AT='", at,
                     "' is not STEP[:N] with STEP flush, manifest or group and N >= 1"));
  }
  auto seen = std::make_shared<std::atomic<uint64_t>>(0);
  return [step = *step, nth, seen](engine::CommitStep done) {
    if (done == step && seen->fetch_add(1) + 1 == nth) ::raise(SIGKILL);
  };
}

// The daemon's keys: the keys file when there is one, else the single shared key file.
absl::StatusOr<engine::KeyRing> LoadKeys(const std::string& keys_file,
                                         const std::string& key_file) {
  if (!keys_file.empty()) return engine::KeyRing::Load(keys_file);
  auto key = engine::LoadKeyFile(key_file);
  if (absl::IsNotFound(key.status())) {
    return absl::NotFoundError(
        absl::StrCat(key.status().message(),
                     " (store init creates DIR/auth.key; or pass --key-file or --keys)"));
  }
  if (!key.ok()) return key.status();
  return engine::KeyRing::Single(*key);
}

// The store a daemon serves, opened for writing, and how the server reaches it.
struct OpenedStore {
  std::unique_ptr<engine::Store> store;
  std::unique_ptr<engine::ServedStore> served;  // refers to *store
};

absl::StatusOr<OpenedStore> OpenServedStore(const Flags& flags, const std::string& where,
                                            io::Backend backend) {
  OpenedStore opened;
  if (engine::rados::IsRadosUrl(where)) {
    auto url = engine::rados::ParseRadosUrl(where);
    if (!url.ok()) return url.status();
    engine::rados::RadosStoreOptions o;
    auto client = RadosClientFromFlags(flags);
    if (!client.ok()) return client.status();
    o.client = *std::move(client);
    o.writable = true;
    // The pool's write lock only while some client writes: a collection can run while the
    // daemons idle.
    o.lock_on_demand = true;
    auto store = engine::rados::RadosStore::Open(*url, o);
    if (!store.ok()) return store.status();
    engine::rados::RadosStore* s = store->get();
    auto served = engine::ServeAnyStore(
        *s, s->hasher(), {[s] { return s->BeginWrites(); }, [s] { return s->EndWrites(); }});
    if (!served.ok()) return served.status();
    opened.served = *std::move(served);
    opened.store = *std::move(store);
    return opened;
  }
  engine::LocalStoreOptions o;
  o.writable = true;
  o.queue.backend = backend;
  auto store = engine::LocalStore::Open(where, o);
  if (!store.ok()) return store.status();
  opened.served = engine::ServeLocalStore(**store);
  opened.store = *std::move(store);
  return opened;
}

}  // namespace

int CmdServe(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"store",
       "the store to serve (opened for writing): a directory, or rados:POOL[/NAMESPACE] (several "
       "daemons may serve one pool)"},
      {"listen", "address and port to listen on; port 0 picks a free one", true, kDefaultListen},
      {"key-file",
       "shared key that clients must prove they hold (default: DIR/auth.key; required for a pool "
       "unless --keys)",
       true, ""},
      {"keys",
       "keys file: named client keys, each with its rights and limits (chunkferry key add); "
       "replaces --key-file",
       true, ""},
      {"max-connections", "authenticated connections served at once; more are told to retry later",
       true, "16"},
      {"idle-timeout", "seconds a connection may wait between requests", true, "300"},
      {"verify",
       "how received records are checked: full (recompute every chunk id) or checksum (trusts "
       "the senders: only for peers you control)",
       true, "full"},
      {"ready-file", "once listening, write the actual HOST:PORT to this file (atomically)", true,
       ""},
  };
  for (FlagSpec& spec : ServerTlsFlags("clients")) specs.push_back(std::move(spec));
  std::string help;
  Flags f;
  if (auto rc = ParseFlags(
          kCmd,
          "--store DIR|rados:POOL [--listen ADDR:PORT] [--key-file FILE | --keys FILE] [flags]",
          std::move(specs), args, &f,
          {.about = "Serves the store to other nodes (chunkferry sync) until SIGINT or SIGTERM. "
                    "Clients\nauthenticate with the store's key file (created by `store init` as "
                    "DIR/auth.key; copy it,\nmode 0600, to the nodes that sync with this store), "
                    "or with one of the named keys of\n--keys, each limited to its rights. SIGHUP "
                    "reloads the keys. Logs go to stderr.",
           .common = {"io", "help", "ceph-conf", "ceph-user", "ceph-keyring", "ceph-timeout"},
           .help = &help})) {
    return *rc;
  }
  const Flags* flags = &f;
  auto dir = flags->Require("store");
  if (!dir.ok()) return Usage(kCmd, dir.status().message(), help);
  auto listen = io::ParseEndpoint(flags->Get("listen"));
  if (!listen.ok()) return Usage(kCmd, absl::StrCat("--listen: ", listen.status().message()), help);
  auto backend = io::ParseBackend(flags->Get("io"));
  if (!backend.ok()) return Usage(kCmd, absl::StrCat("--io: ", backend.status().message()), help);
  auto max_conns = flags->GetInt("max-connections");
  if (!max_conns.ok() || *max_conns < 1 || *max_conns > 4096) {
    return Usage(kCmd, "--max-connections must be a whole number from 1 to 4096", help);
  }
  auto idle = flags->GetInt("idle-timeout");
  if (!idle.ok() || *idle < 1 || *idle > 7 * 24 * 3600) {
    return Usage(kCmd, "--idle-timeout must be a number of seconds from 1 to 604800", help);
  }
  auto verify = ParseVerifyMode(flags->Get("verify"));
  if (!verify.ok()) return Usage(kCmd, verify.status().message(), help);
  if (flags->Has("keys") && flags->Has("key-file")) {
    return Usage(kCmd, "--keys and --key-file exclude each other", help);
  }
  const bool pool = engine::rados::IsRadosUrl(*dir);
  if (pool && !flags->Has("keys") && !flags->Has("key-file")) {
    return Usage(kCmd, "a pool has no auth.key of its own: pass --key-file or --keys", help);
  }
  const std::string keys_file = flags->Get("keys");
  const std::string key_file =
      flags->Has("key-file") ? flags->Get("key-file") : absl::StrCat(*dir, "/auth.key");
  const std::string ready_file = flags->Get("ready-file");
  auto tls_made = MakeServerTls(*flags);
  if (!tls_made.ok()) return Fail(kCmd, tls_made.status());
  const std::shared_ptr<engine::TlsContext> tls = *std::move(tls_made);

  // Every thread started from here on inherits the mask, so SIGINT, SIGTERM and SIGHUP reach
  // only the sigwait below.
  DaemonSignals signals;
  RaiseFileLimit();

  engine::ServerOptions options;
  options.listen = *listen;
  options.max_connections = static_cast<size_t>(*max_conns);
  options.idle_timeout_ms = *idle * 1000;
  options.backend = *backend;
  options.verify = *verify;
  options.log = LogLine;
  options.tls = tls;
  auto crash_hook = CrashHookFromEnv();
  if (!crash_hook.ok()) return Usage(kCmd, crash_hook.status().message(), help);
  options.after_commit = *std::move(crash_hook);
  absl::StatusOr<engine::KeyRing> keys = LoadKeys(keys_file, key_file);
  if (!keys.ok()) return Fail(kCmd, keys.status());
  options.keys = *std::move(keys);
  // What each named key added, counted across restarts beside the store's own files (a pool's
  // daemons count in memory: each its own clients, until it stops).
  if (!keys_file.empty() && !pool) options.key_usage_file = absl::StrCat(*dir, "/key-usage");

  auto store = OpenServedStore(*flags, *dir, *backend);
  if (!store.ok()) return Fail(kCmd, store.status());

  std::optional<engine::StoreServer> server;
  server.emplace(std::move(store->served), options);
  if (absl::Status st = server->Start(); !st.ok()) return Fail(kCmd, st);
  const std::string address = io::FormatEndpoint({listen->host, server->port()});
  if (absl::Status st = WriteReadyFile(ready_file, address); !st.ok()) {
    server->Stop();
    return Fail(kCmd, st);
  }
  std::printf("listening on %s%s\n", address.c_str(), tls != nullptr ? " (TLS)" : "");
  std::fflush(stdout);

  int sig = 0;
  while ((sig = signals.Wait()) == SIGHUP) {
    // A bad file keeps the keys in force: a typo must not lock every client out.
    absl::StatusOr<engine::KeyRing> reloaded = LoadKeys(keys_file, key_file);
    if (!reloaded.ok()) {
      LogLine(absl::StrCat("received SIGHUP: keys not reloaded, the old ones stay in force: ",
                           reloaded.status().message()));
      continue;
    }
    LogLine("received SIGHUP: keys reloaded");
    server->ReplaceKeys(*std::move(reloaded));
  }
  LogLine(absl::StrCat("received ", DaemonSignals::Name(sig), ": stopping"));
  server.reset();  // stops: no connection uses the store after this
  if (absl::Status st = store->store->Close(); !st.ok()) return Fail(kCmd, st);
  LogLine(absl::StrCat("store ", *dir, " closed"));
  return kExitOk;
}

}  // namespace chunkferry::tools
