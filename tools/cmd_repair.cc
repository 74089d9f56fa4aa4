// chunkferry repair: brings a store (a directory or a pool) good copies of the chunks its backups
// name but it lacks (what `verify --repair` quarantined, or lost), from another store: a
// directory, a pool or a daemon. Lists the backups that were broken and those that still are.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/pipeline/repairer.h"
#include "engine/wire/remote_store.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {
namespace {

constexpr char kCmd[] = "repair";

void PrintReport(const engine::RepairReport& r, const Context& ctx) {
  if (ctx.json) {
    std::printf("%s\n", Json{{"manifests", r.manifests},
                             {"chunksLacking", r.chunks_lacking},
                             {"chunksUnavailable", r.chunks_unavailable},
                             {"recordsAppended", r.appended.records_appended},
                             {"bytesAppended", r.appended.bytes_appended},
                             {"brokenBefore", r.broken_before},
                             {"stillBroken", r.still_broken},
                             {"unreadable", r.unreadable}}
                            .dump(2)
                            .c_str());
    return;
  }
  for (const auto& b : r.broken_before) std::printf("broken: volume backup %s\n", b.c_str());
  for (const auto& b : r.still_broken) std::printf("still broken: volume backup %s\n", b.c_str());
  for (const auto& u : r.unreadable) std::printf("unreadable manifest: %s\n", u.c_str());
  std::printf("%s: %llu chunks lacking in %zu backups, %llu brought back (%s), %llu not found\n",
              r.still_broken.empty() && r.unreadable.empty() ? "repaired" : "NOT REPAIRED",
              static_cast<unsigned long long>(r.chunks_lacking), r.broken_before.size(),
              static_cast<unsigned long long>(r.chunks_lacking - r.chunks_unavailable),
              HumanBytes(r.appended.bytes_appended).c_str(),
              static_cast<unsigned long long>(r.chunks_unavailable));
}

}  // namespace

int CmdRepair(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"store", "the store to repair: a directory, or rados:POOL[/NAMESPACE]"},
      {"from",
       "a store holding good copies: a directory, rados:POOL[/NAMESPACE], or a daemon as "
       "tcp://HOST:PORT"},
      {"key-file",
       "shared key of the daemon (default: the repaired store's DIR/auth.key, when it exists)",
       true, ""},
      {"verify", "check the copies that arrive by: full (ids) or checksum", true, "full"},
  };
  for (FlagSpec& spec : ClientTlsFlags()) specs.push_back(std::move(spec));

  Flags f;
  std::string help;
  if (auto rc = ParseFlags(
          kCmd, "--store DIR --from STORE [flags]", std::move(specs), args, &f,
          {.about = "Fetches the chunks that the store's backups name but it lacks (quarantined "
                    "by `chunkferry\nverify --repair`, or lost) from another store, checks "
                    "them and makes them durable.",
           .common = {},
           .help = &help})) {
    return *rc;
  }
  for (const char* req : {"store", "from"}) {
    if (!f.Has(req)) return Usage(kCmd, absl::StrCat("--", req, " is required"), help);
  }
  auto mode = ParseVerifyMode(f.Get("verify"));
  if (!mode.ok()) return Usage(kCmd, mode.status().message(), help);
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage(kCmd, ctx.status().message(), help);
  auto where = ParseStoreLocation("store", f.Get("store"));
  if (!where.ok()) return Usage(kCmd, where.status().message(), help);
  if (where->remote) {
    return Usage(kCmd,
                 "--store names a daemon: repair its store on its own node (or sync the group to "
                 "it again)",
                 help);
  }
  auto from_where = ParseStoreLocation("from", f.Get("from"));
  if (!from_where.ok()) return Usage(kCmd, from_where.status().message(), help);
  std::string key_file = f.Get("key-file");
  if (from_where->remote && key_file.empty() && !where->is_rados) {
    key_file = absl::StrCat(f.Get("store"), "/auth.key");
    if (!FileExists(key_file)) {
      return Usage(
          kCmd,
          absl::StrCat("--key-file is required to reach a daemon (", key_file, " does not exist)"),
          help);
    }
  } else if (std::string misuse = KeyFileMisuse(*from_where, f.Has("key-file")); !misuse.empty()) {
    return Usage(kCmd, misuse, help);
  }

  auto store = OpenStoreAt(*ctx, *where, true);
  if (!store.ok()) return Fail(kCmd, store.status());
  std::unique_ptr<engine::Store> from_local;
  std::unique_ptr<engine::RemoteStore> from_remote;
  engine::Store* from = nullptr;
  if (from_where->remote) {
    auto r = ConnectToDaemon(*from_where, key_file, *ctx);
    if (!r.ok()) return Fail(kCmd, r.status());
    from_remote = *std::move(r);
    from = from_remote.get();
  } else {
    auto l = OpenStoreAt(*ctx, *from_where, false);
    if (!l.ok()) return Fail(kCmd, l.status());
    from_local = *std::move(l);
    from = from_local.get();
  }
  auto report = engine::RepairFrom(**store, *from, *mode);
  absl::Status closed = (*store)->Close();
  if (!report.ok()) return Fail(kCmd, report.status());
  if (!closed.ok()) return Fail(kCmd, closed);
  PrintReport(*report, *ctx);
  return report->still_broken.empty() && report->unreadable.empty() ? kExitOk : kExitFailed;
}

}  // namespace chunkferry::tools
