// chunkferry delete: removes a VM backup group (with its volume backups) or one volume backup that
// no group names, from a store directory or through a store daemon. The data becomes unreachable
// at once; its space comes back at the next `chunkferry gc`.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/format/volume_backup.h"
#include "engine/wire/remote_store.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {
namespace {

constexpr char kCmd[] = "delete";

Json ResultJson(const engine::DeleteResult& r) {
  return Json{{"groups_removed", r.groups_removed},
              {"backups_removed", r.backups_removed},
              {"backups_kept", r.backups_kept}};
}

}  // namespace

int CmdDelete(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"store", "a store directory, or a daemon as tcp://HOST:PORT (or HOST:PORT)"},
      {"group", "delete this VM backup group and its volume backups"},
      {"backup", "delete this volume backup (one that no group names)"},
  };
  AddDaemonClientFlags(&specs);

  Flags f;
  std::string help;
  if (auto rc = ParseFlags(
          kCmd, "--store STORE (--group UUID | --backup UUID) [flags]", std::move(specs), args, &f,
          {.about = "Deletes a VM backup group and the volume backups it names (those no other "
                    "group names\ntoo), or one volume backup that no group names. Nothing can "
                    "restore them afterwards;\ntheir chunks' space comes back at the next "
                    "`chunkferry gc`.",
           .common = {},
           .help = &help})) {
    return *rc;
  }
  if (!f.Has("store")) return Usage(kCmd, "--store is required", help);
  if (f.Has("group") == f.Has("backup")) {
    return Usage(kCmd, "give exactly one of --group and --backup", help);
  }
  const bool group = f.Has("group");
  const std::string uuid = f.Get(group ? "group" : "backup");
  if (!engine::IsValidUuid(uuid)) {
    return Usage(kCmd,
                 absl::StrCat(group ? "--group" : "--backup", ": '", uuid,
                              "' is not a uuid (32 lowercase hex digits)"),
                 help);
  }
  auto where = StoreFlagLocation(f, "store");
  if (!where.ok()) return Usage(kCmd, where.status().message(), help);
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage(kCmd, ctx.status().message(), help);

  std::unique_ptr<engine::Store> store;
  if (where->remote) {
    auto r = ConnectToDaemon(*where, f.Get("key-file"), *ctx);
    if (!r.ok()) return Fail(kCmd, r.status());
    store = *std::move(r);
  } else {
    auto s = OpenStoreAt(*ctx, *where, true);
    if (!s.ok()) return Fail(kCmd, s.status());
    store = *std::move(s);
  }
  absl::StatusOr<engine::DeleteResult> result =
      group ? store->DeleteGroup(uuid) : store->DeleteBackup(uuid);
  absl::Status closed = store->Close();
  store.reset();  // BYE to a daemon
  if (!result.ok()) return Fail(kCmd, result.status());
  if (!closed.ok()) return Fail(kCmd, closed);
  if (ctx->json) {
    std::printf("%s\n", ResultJson(*result).dump(2).c_str());
  } else if (!ctx->quiet) {
    for (const auto& g : result->groups_removed) std::printf("deleted group %s\n", g.c_str());
    for (const auto& b : result->backups_removed) {
      std::printf("deleted volume backup %s\n", b.c_str());
    }
    for (const auto& b : result->backups_kept) {
      std::printf("kept volume backup %s (another group names it)\n", b.c_str());
    }
    std::printf("space comes back at the next `chunkferry gc --store %s`\n", where->text.c_str());
  }
  return kExitOk;
}

}  // namespace chunkferry::tools
