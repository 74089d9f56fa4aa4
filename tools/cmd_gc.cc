// chunkferry gc: reclaims the space of records that no published volume backup needs (after
// `chunkferry delete`): packs with no live record are removed, packs mostly dead are rewritten.
// Safe next to syncs through a daemon and after a crash (engine/local/garbage_collector.h).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/local/garbage_collector.h"
#include "engine/wire/remote_store.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {
namespace {

constexpr char kCmd[] = "gc";

Json StatsJson(const engine::GcStats& s, bool dry_run) {
  return Json{{"dry_run", dry_run},
              {"manifests", s.manifests},
              {"chunks_referenced", s.chunks_referenced},
              {"records", s.records_total},
              {"records_live", s.records_live},
              {"packs_before", s.packs_before},
              {"bytes_before", s.bytes_before},
              {"packs_removed", s.packs_removed},
              {"packs_rewritten", s.packs_rewritten},
              {"packs_kept_in_use", s.packs_kept_late_pin},
              {"records_copied", s.records_copied},
              {"bytes_copied", s.bytes_copied},
              {"bytes_reclaimed", s.bytes_reclaimed},
              {"seconds", static_cast<double>(s.milliseconds) / 1000}};
}

// Where the crash tests stop a collection: CHUNKFERRY_GC_CRASH_AT=N kills the process (SIGKILL,
// as kill -9 would) before step N. Read once; unset in production.
int64_t CrashStep() {
  const char* at = std::getenv("CHUNKFERRY_GC_CRASH_AT");
  int64_t n = 0;
  return at != nullptr && absl::SimpleAtoi(at, &n) ? n : 0;
}

// Prints the summary: JSON, or one line.
void PrintStats(const engine::GcStats& s, bool dry_run, const Context& ctx) {
  if (ctx.json) {
    std::printf("%s\n", StatsJson(s, dry_run).dump(2).c_str());
  } else if (!ctx.quiet) {
    std::printf(
        "%s%s of %s reclaimed: %llu packs removed, %llu rewritten (%s copied); %llu of %llu "
        "records live in %llu manifests; %.2f s\n",
        dry_run ? "dry run: " : "", HumanBytes(s.bytes_reclaimed).c_str(),
        HumanBytes(s.bytes_before).c_str(), static_cast<unsigned long long>(s.packs_removed),
        static_cast<unsigned long long>(s.packs_rewritten), HumanBytes(s.bytes_copied).c_str(),
        static_cast<unsigned long long>(s.records_live),
        static_cast<unsigned long long>(s.records_total),
        static_cast<unsigned long long>(s.manifests), static_cast<double>(s.milliseconds) / 1000);
  }
}

// gc of a store a daemon serves: the daemon collects, between its other requests.
int CollectThroughDaemon(const StoreLocation& where, const std::string& key_file, double repack,
                         bool dry_run, const Context& ctx) {
  auto remote = ConnectToDaemon(where, key_file, ctx);
  if (!remote.ok()) return Fail(kCmd, remote.status());
  engine::GcRequest request;
  request.dry_run = dry_run;
  request.repack_below_ppm = static_cast<uint32_t>(repack * 1e6 + 0.5);
  auto t = (*remote)->CollectGarbage(request);
  if (!t.ok()) return Fail(kCmd, t.status());
  PrintStats(*t, dry_run, ctx);
  return kExitOk;
}

// gc of a store in a RADOS pool: takes the store's lock alone (so it waits for no writer: it
// fails while one holds the store, and keeps new ones out while it runs).
int CollectInPool(const StoreLocation& where, double repack, bool dry_run, uint32_t grace,
                  const Context& ctx) {
  engine::rados::RadosStoreOptions o;
  o.gc_grace_seconds = grace;
  o.client = ctx.rados;
  o.pool = ctx.pool.get();
  o.exclusive = true;
  auto store = engine::rados::RadosStore::Open(where.rados, o);
  if (!store.ok()) return Fail(kCmd, store.status());
  engine::GcOptions gc;
  gc.repack_below = repack;
  gc.dry_run = dry_run;
  auto stats = (*store)->CollectGarbage(gc);
  absl::Status closed = (*store)->Close();
  if (!stats.ok()) return Fail(kCmd, stats.status());
  if (!closed.ok()) return Fail(kCmd, closed);
  PrintStats(*stats, dry_run, ctx);
  return kExitOk;
}

}  // namespace

int CmdGc(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"store",
       "a store directory, rados:POOL[/NAMESPACE], or a daemon as tcp://HOST:PORT (or "
       "HOST:PORT)"},
      {"repack-below",
       "rewrite packs whose live share is below this fraction (0 to 1; 0: only remove packs with "
       "nothing live)",
       true, "0.5"},
      {"dry-run", "report what would be reclaimed, change nothing", false, ""},
      {"grace",
       "for a rados: store, seconds an unreferenced pack must have existed before it goes (what "
       "a writer that stalled past its lock may still name)",
       true, "120"},
  };
  AddDaemonClientFlags(&specs);

  Flags f;
  std::string help;
  if (auto rc = ParseFlags(
          kCmd, "--store STORE [flags]", std::move(specs), args, &f,
          {.about = "Reclaims the space of chunks that no published volume backup names any "
                    "more (after\n`chunkferry delete`): packs with nothing live are removed, "
                    "packs mostly dead are\nrewritten. A store a daemon serves is collected by "
                    "that daemon (`chunkferry serve`).",
           .common = {},
           .help = &help})) {
    return *rc;
  }
  if (!f.Has("store")) return Usage(kCmd, "--store is required", help);
  double repack = 0;
  if (!absl::SimpleAtod(f.Get("repack-below"), &repack) || !(repack >= 0 && repack <= 1)) {
    return Usage(
        kCmd,
        absl::StrCat("--repack-below: '", f.Get("repack-below"), "' is not a fraction from 0 to 1"),
        help);
  }
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage(kCmd, ctx.status().message(), help);
  const bool dry_run = f.GetBool("dry-run");
  auto where = StoreFlagLocation(f, "store");
  if (!where.ok()) return Usage(kCmd, where.status().message(), help);
  if (where->remote) return CollectThroughDaemon(*where, f.Get("key-file"), repack, dry_run, *ctx);
  if (where->is_rados) {
    auto grace = f.GetInt("grace");
    if (!grace.ok() || *grace < 0 || *grace > 86'400 * 30) {
      return Usage(kCmd, "--grace must be a whole number of seconds from 0 to 2592000", help);
    }
    return CollectInPool(*where, repack, dry_run, static_cast<uint32_t>(*grace), *ctx);
  }
  auto store = OpenLocalStoreAt(*ctx, "store", where->text, true);
  if (!store.ok()) return Fail(kCmd, store.status());

  engine::GcOptions o;
  o.repack_below = repack;
  o.dry_run = dry_run;
  if (const int64_t crash = CrashStep(); crash > 0) {
    o.before_step = [crash](uint64_t step, const std::string&) {
      if (static_cast<int64_t>(step) == crash) ::raise(SIGKILL);
    };
  }
  engine::GarbageCollector gc(**store, o);
  absl::Status st = gc.Run(ctx->progress ? &ctx->progress : nullptr);
  absl::Status closed = (*store)->Close();
  if (!st.ok()) return Fail(kCmd, st);
  if (!closed.ok()) return Fail(kCmd, closed);
  PrintStats(gc.stats(), dry_run, *ctx);
  return kExitOk;
}

}  // namespace chunkferry::tools
