// chunkferry restore: a volume backup back into a byte-identical image, from a store directory
// (the local restorer: reads what its index points at), a RADOS pool or a store daemon (through
// the Store interface: each window's records asked for by chunk id).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "engine/pipeline/restorer.h"
#include "engine/pipeline/store_restorer.h"
#include "engine/wire/remote_store.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {

constexpr char kCmd[] = "restore";

int CmdRestore(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"store", "the store: a directory, rados:POOL[/NAMESPACE], or a daemon as tcp://HOST:PORT"},
      {"backup", "volume backup uuid"},
      {"output", "image to write: a path, or - for stdout"},
      {"force", "replace an existing output file", false, ""},
      {"verify", "check chunks by: full (ids) or checksum", true, "full"},
  };
  AddDaemonClientFlags(&specs);
  Flags f;
  std::string help;
  if (auto rc =
          ParseFlags(kCmd, "--store STORE --backup UUID --output PATH|- [flags]", std::move(specs),
                     args, &f, {.about = "", .common = {}, .help = &help})) {
    return *rc;
  }
  for (const char* req : {"store", "backup", "output"}) {
    if (!f.Has(req)) return Usage(kCmd, absl::StrCat("--", req, " is required"), help);
  }
  auto mode = ParseVerifyMode(f.Get("verify"));
  if (!mode.ok()) return Usage(kCmd, mode.status().message(), help);
  auto where = StoreFlagLocation(f, "store");
  if (!where.ok()) return Usage(kCmd, where.status().message(), help);
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage(kCmd, ctx.status().message(), help);
  engine::RestoreOptions o;
  o.output = f.Get("output");
  o.overwrite = f.GetBool("force");
  o.verify_ids = *mode == engine::VerifyMode::kFull;
  const engine::ProgressFn* progress = ctx->progress ? &ctx->progress : nullptr;
  engine::RestoreStats stats;
  if (!where->remote && !where->is_rados) {
    auto store = OpenStore(*ctx, where->dir, false);
    if (!store.ok()) return Fail(kCmd, store.status());
    absl::Status st =
        engine::RestoreVolume(**store, *ctx->pool, f.Get("backup"), o, &stats, progress);
    if (!st.ok()) return Fail(kCmd, st);
  } else {
    std::unique_ptr<engine::Store> store;
    codec::ChunkHasher unkeyed;
    const codec::ChunkHasher* hasher = &unkeyed;
    if (where->remote) {
      auto r = ConnectToDaemon(*where, f.Get("key-file"), *ctx);
      if (!r.ok()) return Fail(kCmd, r.status());
      store = *std::move(r);
      // The id key stays with the daemon's store: without it ids cannot be recomputed here.
      if (o.verify_ids && store->info().key_fingerprint != 0) {
        return Usage(kCmd,
                     absl::StrCat("the store behind ", where->text,
                                  " has keyed chunk ids, whose key stays there: restore from it "
                                  "with --verify checksum (or copy the group to a store that "
                                  "holds the key)"),
                     help);
      }
    } else {
      auto r = OpenRadosStore(*ctx, where->rados, false);
      if (!r.ok()) return Fail(kCmd, r.status());
      hasher = &(*r)->hasher();
      store = *std::move(r);
    }
    engine::StoreRestoreOptions so;
    so.restore = o;
    so.backend = ctx->queue.backend;
    absl::Status st = engine::RestoreFromStore(*store, *hasher, *ctx->pool, f.Get("backup"), so,
                                               &stats, progress);
    if (!st.ok()) return Fail(kCmd, st);
  }
  if (ctx->json) {
    // With the image on standard output the report goes to standard error, never into the image.
    std::fprintf(o.output == "-" ? stderr : stdout, "%s\n",
                 Json{{"backup", f.Get("backup")},
                      {"output", o.output},
                      {"size", stats.bytes},
                      {"dataBytes", stats.data_bytes},
                      {"holeBytes", stats.hole_bytes},
                      {"records", stats.records_read},
                      {"storedBytes", stats.stored_bytes},
                      {"seconds", stats.seconds}}
                     .dump(2)
                     .c_str());
  } else if (o.output != "-") {
    std::printf("restored %s to %s: %s in %.2f s (%s), %s of it holes\n", f.Get("backup").c_str(),
                o.output.c_str(), HumanBytes(stats.bytes).c_str(), stats.seconds,
                HumanRate(stats.bytes, stats.seconds).c_str(),
                HumanBytes(stats.hole_bytes).c_str());
  }
  return kExitOk;
}

}  // namespace chunkferry::tools
