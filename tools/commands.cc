// The data subcommands of the chunkferry CLI: store init, import, copy, verify, ls and
// inventory. Each parses its flags, runs one engine operation and reports it in words (or JSON).
#include <cstdio>
#include <ctime>
#include <future>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "codec/chunker.h"
#include "control/inventory.h"
#include "control/platform_time.h"
#include "engine/pipeline/copier.h"
#include "engine/pipeline/importer.h"
#include "engine/pipeline/readback_verifier.h"
#include "engine/pipeline/verifier.h"
#include "engine/wire/auth.h"
#include "io/fd.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {
namespace {

void PrintJson(const Json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// `store init` of a rados: store.
int InitRadosStore(const Flags& f, const std::string& text, const engine::StoreInitOptions& o) {
  constexpr absl::string_view kCmd = "store init";
  auto url = engine::rados::ParseRadosUrl(text);
  if (!url.ok()) return Usage(kCmd, absl::StrCat("--store: ", url.status().message()), "");
  auto shards = f.GetInt("index-shards");
  if (!shards.ok() || *shards < 1 || *shards > engine::rados::kMaxIndexShards) {
    return Usage(kCmd,
                 absl::StrCat("--index-shards must be a whole number from 1 to ",
                              engine::rados::kMaxIndexShards),
                 "");
  }
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage(kCmd, ctx.status().message(), "");
  engine::rados::RadosInitOptions ro;
  ro.index_shards = static_cast<uint32_t>(*shards);
  ro.data_pool = f.Get("data-pool");
  if (f.Has("data-pool")) {
    if (absl::Status st = engine::rados::CheckPoolName(ro.data_pool); !st.ok()) {
      return Usage(kCmd, absl::StrCat("--data-pool: ", st.message()), "");
    }
  }
  absl::Status st = engine::rados::RadosStore::Init(*url, ctx->rados, o, ro);
  if (!st.ok()) return Fail(kCmd, st);
  engine::rados::RadosStoreOptions open;
  open.client = ctx->rados;
  open.writable = false;
  auto opened = engine::rados::RadosStore::Open(*url, open);
  if (!opened.ok()) return Fail(kCmd, opened.status());
  const engine::StoreInfo& info = (*opened)->info();
  if (f.GetBool("json")) {
    PrintJson(Json{{"store", url->ToString()},
                   {"uuid", info.uuid},
                   {"chunker", info.chunker.ToString()},
                   {"indexShards", (*opened)->index_shards()},
                   {"dataPool", (*opened)->rados().data_pool()}});
  } else if (!f.GetBool("quiet")) {
    std::printf("created store %s (uuid %s, chunker %s, %u index shards%s%s)\n",
                url->ToString().c_str(), info.uuid.c_str(), info.chunker.ToString().c_str(),
                (*opened)->index_shards(),
                (*opened)->rados().data_pool().empty() ? "" : ", packs in pool ",
                (*opened)->rados().data_pool().c_str());
  }
  return kExitOk;
}

}  // namespace

int CmdStore(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "init") {
    return Usage("store", "the store command takes a subcommand: init",
                 "usage: chunkferry store init --store DIR [flags]\n");
  }
  Flags f;
  if (auto rc = ParseFlags(
          "store init", "--store DIR [--chunker SPEC] [--zstd-level N] [--record-size SIZE]",
          {{"store", "the new store: a directory, or rados:POOL[/NAMESPACE] (a pool that exists)"},
           {"chunker", "how volumes are cut: fixed:SIZE or cdc:MIN:AVG:MAX", true, "fixed:4k"},
           {"zstd-level", "zstd level of new records", true, "1"},
           {"record-size", "raw bytes of fresh chunks grouped into one record", true, "64k"},
           {"id-key-file", "file holding a hex secret that keys chunk ids", true, ""},
           {"uuid", "store uuid (default: a new random one)", true, ""},
           {"index-shards", "for a rados: store, the objects its chunk index is spread over", true,
            "64"},
           {"data-pool",
            "for a rados: store, the pool its packs go to (e.g. erasure-coded; the index and "
            "catalog stay in the store's replicated pool)",
            true, ""}},
          std::vector<std::string>(args.begin() + 1, args.end()), &f)) {
    return *rc;
  }
  engine::StoreInitOptions o;
  auto dir = f.Require("store");
  if (!dir.ok()) return Usage("store init", dir.status().message(), "");
  auto spec = codec::ChunkerSpec::Parse(f.Get("chunker"));
  if (!spec.ok())
    return Usage("store init", absl::StrCat("--chunker: ", spec.status().message()), "");
  o.chunker = *spec;
  auto level = f.GetInt("zstd-level");
  if (!level.ok() || *level < -7 || *level > 22) {
    return Usage("store init", "--zstd-level must be a whole number from -7 to 22", "");
  }
  o.zstd_level = static_cast<int>(*level);
  auto rs = f.GetSize("record-size");
  if (!rs.ok()) return Usage("store init", rs.status().message(), "");
  o.record_target = static_cast<uint32_t>(std::min<uint64_t>(*rs, UINT32_MAX));
  if (f.Has("id-key-file")) {
    auto key = io::ReadPrivateFile(f.Get("id-key-file"), "chunk id key file");
    if (!key.ok()) return Fail("store init", key.status());
    o.id_key_hex = std::string(absl::StripAsciiWhitespace(*key));
  }
  o.uuid = f.Get("uuid");
  if (engine::rados::IsRadosUrl(*dir)) return InitRadosStore(f, *dir, o);
  if (f.Has("data-pool")) return Usage("store init", "--data-pool is for a rados: store", "");
  absl::Status st = engine::LocalStore::Init(*dir, o);
  if (!st.ok()) return Fail("store init", st);
  // The key `chunkferry serve` authenticates clients with, so that a first run needs no setup.
  const std::string key_file = absl::StrCat(*dir, "/auth.key");
  st = engine::WriteNewKeyFile(key_file);
  if (!st.ok()) return Fail("store init", st);
  engine::LocalStoreOptions ro;
  ro.writable = false;
  auto opened = engine::LocalStore::Open(*dir, ro);
  if (!opened.ok()) return Fail("store init", opened.status());
  if (f.GetBool("json")) {
    PrintJson(Json{{"store", *dir},
                   {"uuid", (*opened)->info().uuid},
                   {"chunker", (*opened)->info().chunker.ToString()},
                   {"key_file", key_file}});
  } else {
    std::printf("created store %s (uuid %s, chunker %s)\n", dir->c_str(),
                (*opened)->info().uuid.c_str(), (*opened)->info().chunker.ToString().c_str());
    std::printf(
        "daemon key %s: `chunkferry serve` checks it; copy it (mode 0600) to the nodes that "
        "sync with this store\n",
        key_file.c_str());
  }
  return kExitOk;
}

int CmdImport(const std::vector<std::string>& args) {
  Flags f;
  if (auto rc = ParseFlags(
          "import", "--store DIR|rados:POOL --image PATH|- --group UUID --volume UUID [flags]",
          {{"store", "the store: a directory or rados:POOL[/NAMESPACE]"},
           {"image", "raw image: a file, a block device, or - for stdin"},
           {"group", "VM backup group uuid"},
           {"volume", "uuid of the backed-up volume"},
           {"vm", "VM instance uuid"},
           {"type", "volume type: Root, Data, Memory or Cache", true, "Root"},
           {"name", "name of the volume backup"},
           {"description", "description of the volume backup"},
           {"uuid", "uuid of the new volume backup (default: random)"},
           {"mode", "backup mode: full, incremental or auto", true, "full"},
           {"metadata", "opaque metadata string"},
           {"window", "bytes of image worked on at once", true, "8M"}},
          args, &f)) {
    return *rc;
  }
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage("import", ctx.status().message(), "");
  engine::ImportOptions o;
  for (const char* req : {"store", "image", "group", "volume"}) {
    if (!f.Has(req)) return Usage("import", absl::StrCat("--", req, " is required"), "");
  }
  o.source = f.Get("image");
  auto window = f.GetSize("window");
  if (!window.ok() || *window < (1 << 20) || *window > (1ull << 30)) {
    return Usage("import", "--window must be a size from 1M to 1G", "");
  }
  o.window = static_cast<size_t>(*window);
  o.meta.uuid = f.Get("uuid");
  o.meta.group_uuid = f.Get("group");
  o.meta.volume_uuid = f.Get("volume");
  o.meta.type = f.Get("type");
  o.meta.mode = f.Get("mode");
  if (f.Has("vm")) o.meta.vm_instance_uuid = f.Get("vm");
  if (f.Has("name")) o.meta.name = f.Get("name");
  if (f.Has("description")) o.meta.description = f.Get("description");
  if (f.Has("metadata")) o.meta.metadata = f.Get("metadata");
  {
    engine::VolumeBackupMeta probe = o.meta;
    if (probe.uuid.empty()) probe.uuid = engine::NewUuid();
    absl::Status valid = engine::ValidateMeta(probe);
    if (!valid.ok()) return Usage("import", valid.message(), "");
  }
  const engine::ProgressFn* progress = ctx->progress ? &ctx->progress : nullptr;
  engine::ImportStats stats;
  absl::StatusOr<engine::VolumeBackupMeta> meta;
  if (engine::rados::IsRadosUrl(f.Get("store"))) {
    auto url = engine::rados::ParseRadosUrl(f.Get("store"));
    if (!url.ok()) return Usage("import", url.status().message(), "");
    auto store = OpenRadosStore(*ctx, *url, true);
    if (!store.ok()) return Fail("import", store.status());
    meta = engine::ImportVolumeInto(**store, (*store)->hasher(), *ctx->pool, ctx->queue.backend, o,
                                    &stats, progress);
    if (!meta.ok()) return Fail("import", meta.status());
    if (absl::Status closed = (*store)->Close(); !closed.ok()) return Fail("import", closed);
  } else {
    auto store = OpenLocalStoreAt(*ctx, "store", f.Get("store"), true);
    if (!store.ok()) return Fail("import", store.status());
    meta = engine::ImportVolume(**store, *ctx->pool, o, &stats, progress);
    if (!meta.ok()) return Fail("import", meta.status());
    if (absl::Status closed = (*store)->Close(); !closed.ok()) return Fail("import", closed);
  }
  if (ctx->json) {
    PrintJson(Json{{"uuid", meta->uuid},
                   {"groupUuid", meta->group_uuid},
                   {"size", meta->size},
                   {"chunks", stats.chunks},
                   {"zeroChunks", stats.zero_chunks},
                   {"duplicateChunks", stats.duplicate_chunks},
                   {"newChunks", stats.new_chunks},
                   {"newRawBytes", stats.new_raw_bytes},
                   {"records", stats.records},
                   {"storedBytes", stats.stored_bytes},
                   {"directIo", stats.direct_io},
                   {"seconds", stats.seconds}});
  } else {
    std::printf(
        "imported %s (%s %s): %s in %.2f s (%s); %s new stored (%llu new chunks, %llu "
        "deduped, %llu zero)\n",
        meta->uuid.c_str(), meta->type.c_str(), meta->name.value_or("").c_str(),
        HumanBytes(meta->size).c_str(), stats.seconds, HumanRate(meta->size, stats.seconds).c_str(),
        HumanBytes(stats.stored_bytes).c_str(), static_cast<unsigned long long>(stats.new_chunks),
        static_cast<unsigned long long>(stats.duplicate_chunks),
        static_cast<unsigned long long>(stats.zero_chunks));
  }
  return kExitOk;
}

int CmdCopy(const std::vector<std::string>& args) {
  Flags f;
  if (auto rc =
          ParseFlags("copy", "--from DIR --to DIR --group UUID [flags]",
                     {{"from", "source store: a directory or rados:POOL[/NAMESPACE]"},
                      {"to", "destination store: a directory or rados:POOL[/NAMESPACE]"},
                      {"group", "VM backup group uuid"},
                      {"verify", "destination checks records by: full or checksum", true, "full"}},
                     args, &f)) {
    return *rc;
  }
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage("copy", ctx.status().message(), "");
  for (const char* req : {"from", "to", "group"}) {
    if (!f.Has(req)) return Usage("copy", absl::StrCat("--", req, " is required"), "");
  }
  auto mode = ParseVerifyMode(f.Get("verify"));
  if (!mode.ok()) return Usage("copy", mode.status().message(), "");
  auto from = ParseStoreLocation("from", f.Get("from"));
  if (!from.ok()) return Usage("copy", from.status().message(), "");
  auto to = ParseStoreLocation("to", f.Get("to"));
  if (!to.ok()) return Usage("copy", to.status().message(), "");
  // Both stores load their chunk index (or connect to their cluster) as they open: tens of
  // milliseconds each from a cold cache. Open them at the same time.
  auto opening_dst = std::async(std::launch::async, [&] { return OpenStoreAt(*ctx, *to, true); });
  auto src = OpenStoreAt(*ctx, *from, false);
  auto dst = opening_dst.get();
  if (!src.ok()) return Fail("copy", src.status());
  if (!dst.ok()) return Fail("copy", dst.status());
  engine::CopyOptions o;
  o.verify = *mode;
  engine::CopyStats stats;
  absl::Status st = engine::CopyGroup(**src, **dst, f.Get("group"), o, &stats,
                                      ctx->progress ? &ctx->progress : nullptr);
  absl::Status closed = (*dst)->Close();
  if (!st.ok()) return Fail("copy", st);
  if (!closed.ok()) return Fail("copy", closed);
  if (ctx->json) {
    PrintJson(Json{{"group", f.Get("group")},
                   {"volumes", stats.volumes},
                   {"logicalBytes", stats.logical_bytes},
                   {"chunksReferenced", stats.chunks_referenced},
                   {"chunksMissing", stats.chunks_missing},
                   {"recordsSent", stats.records_sent},
                   {"bytesSent", stats.bytes_sent},
                   {"bytesAppended", stats.appended.bytes_appended},
                   {"seconds", stats.seconds}});
  } else {
    std::printf(
        "copied group %s (%llu volumes, %s): %s of records moved in %.2f s (%s), %llu of "
        "%llu chunks were missing\n",
        f.Get("group").c_str(), static_cast<unsigned long long>(stats.volumes),
        HumanBytes(stats.logical_bytes).c_str(), HumanBytes(stats.bytes_sent).c_str(),
        stats.seconds, HumanRate(stats.logical_bytes, stats.seconds).c_str(),
        static_cast<unsigned long long>(stats.chunks_missing),
        static_cast<unsigned long long>(stats.chunks_queried));
  }
  return kExitOk;
}

int CmdVerify(const std::vector<std::string>& args) {
  Flags f;
  if (auto rc = ParseFlags(
          "verify", "--store DIR [flags]",
          {{"store",
            "the store: a directory (every record and the index) or rados:POOL[/NAMESPACE] "
            "(every chunk that a published backup names, read back)"},
           {"verify", "check records by: full (decompress, ids) or checksum", true, "full"},
           {"repair",
            "quarantine damaged records: their chunks count as absent, so that `chunkferry "
            "repair`, a sync or an import brings good copies",
            false, ""}},
          args, &f)) {
    return *rc;
  }
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage("verify", ctx.status().message(), "");
  if (!f.Has("store")) return Usage("verify", "--store is required", "");
  auto mode = ParseVerifyMode(f.Get("verify"));
  if (!mode.ok()) return Usage("verify", mode.status().message(), "");
  const bool repair = f.GetBool("repair");
  const engine::ProgressFn* progress = ctx->progress ? &ctx->progress : nullptr;
  absl::StatusOr<engine::VerifyReport> report;
  size_t quarantined = 0;
  if (engine::rados::IsRadosUrl(f.Get("store"))) {
    // A pool's packs are not files to scan: every chunk a published backup names is read back.
    // --repair takes the pool's shared write lock (so no collection runs meanwhile) and removes
    // the index entries of the damaged records.
    auto url = engine::rados::ParseRadosUrl(f.Get("store"));
    if (!url.ok()) return Usage("verify", url.status().message(), "");
    auto store = OpenRadosStore(*ctx, *url, repair);
    if (!store.ok()) return Fail("verify", store.status());
    report = engine::VerifyByReadingBack(**store, (*store)->hasher(), *ctx->pool, *mode, progress);
    if (!report.ok()) return Fail("verify", report.status());
    if (repair && !report->bad_chunks.empty()) {
      auto forgotten = (*store)->ForgetDamagedChunks(report->bad_chunks, *mode);
      if (!forgotten.ok()) return Fail("verify", forgotten.status());
      quarantined = *forgotten;
    }
    if (repair) {
      if (absl::Status closed = (*store)->Close(); !closed.ok()) return Fail("verify", closed);
    }
  } else {
    auto store = OpenLocalStoreAt(*ctx, "store", f.Get("store"), repair);
    if (!store.ok()) return Fail("verify", store.status());
    report = engine::VerifyStore(**store, *ctx->pool, *mode, progress);
    if (!report.ok()) return Fail("verify", report.status());
    if (repair && !report->bad_chunks.empty()) {
      auto forgotten = (*store)->ForgetRecordsOf(report->bad_chunks);
      if (!forgotten.ok()) return Fail("verify", forgotten.status());
      quarantined = *forgotten;
    }
    if (repair) {
      if (absl::Status closed = (*store)->Close(); !closed.ok()) return Fail("verify", closed);
    }
  }
  if (ctx->json) {
    Json damaged = Json::array();
    for (const auto& d : report->damaged) {
      damaged.push_back(Json{{"uuid", d.uuid},
                             {"groupUuid", d.group_uuid},
                             {"name", d.name},
                             {"damagedChunks", d.damaged_chunks},
                             {"missingChunks", d.missing_chunks},
                             {"problem", d.problem}});
    }
    PrintJson(Json{{"ok", report->ok()},
                   {"records", report->records},
                   {"chunks", report->chunks},
                   {"storedBytes", report->stored_bytes},
                   {"badRecords", report->bad_records},
                   {"unusedBadRecords", report->unused_bad_records},
                   {"manifests", report->manifests},
                   {"groups", report->groups},
                   {"problems", report->problems},
                   {"damagedBackups", damaged},
                   {"quarantinedRecords", quarantined}});
  } else {
    for (const auto& p : report->problems) std::printf("problem: %s\n", p.c_str());
    for (const auto& d : report->damaged) {
      std::printf("damaged backup %s (group %s, %s): %llu damaged and %llu missing chunks%s%s\n",
                  d.uuid.c_str(), d.group_uuid.c_str(), d.name.c_str(),
                  static_cast<unsigned long long>(d.damaged_chunks),
                  static_cast<unsigned long long>(d.missing_chunks), d.problem.empty() ? "" : "; ",
                  d.problem.c_str());
    }
    std::printf(
        "%s: %llu records, %llu chunks, %s checked in %.2f s; %llu manifests, %llu groups\n",
        report->ok() ? "ok" : "DAMAGED", static_cast<unsigned long long>(report->records),
        static_cast<unsigned long long>(report->chunks), HumanBytes(report->stored_bytes).c_str(),
        report->seconds, static_cast<unsigned long long>(report->manifests),
        static_cast<unsigned long long>(report->groups));
    if (report->unused_bad_records > 0) {
      std::printf(
          "note: %llu damaged records that no chunk of the index names (quarantined); gc "
          "reclaims them\n",
          static_cast<unsigned long long>(report->unused_bad_records));
    }
    if (quarantined > 0) {
      std::printf(
          "quarantined %zu damaged records: their chunks now count as absent; `chunkferry repair "
          "--store %s --from OTHER`, a sync or an import of the same data brings them back\n",
          quarantined, f.Get("store").c_str());
    }
  }
  return report->ok() ? kExitOk : kExitFailed;
}

namespace {

// Loads a group's manifests' metadata, in the group's order.
absl::StatusOr<std::vector<engine::VolumeBackupMeta>> GroupMetas(engine::Store& store,
                                                                 const std::string& group) {
  auto g = store.GetGroup(group);
  if (!g.ok()) return g.status();
  std::vector<engine::VolumeBackupMeta> out;
  for (const auto& v : g->volume_uuids) {
    auto r = store.OpenManifest(v);
    if (!r.ok()) return r.status();
    out.push_back((*r)->meta());
  }
  return out;
}

}  // namespace

int CmdLs(const std::vector<std::string>& args) {
  Flags f;
  if (auto rc = ParseFlags("ls", "--store DIR [--group UUID]",
                           {{"store", "the store: a directory or rados:POOL[/NAMESPACE]"},
                            {"group", "only this group"}},
                           args, &f)) {
    return *rc;
  }
  if (!f.Has("store")) return Usage("ls", "--store is required", "");
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage("ls", ctx.status().message(), "");
  auto where = ParseStoreLocation("store", f.Get("store"));
  if (!where.ok()) return Usage("ls", where.status().message(), "");
  auto store = OpenStoreAt(*ctx, *where, false);
  if (!store.ok()) return Fail("ls", store.status());
  std::vector<std::string> groups;
  if (f.Has("group")) {
    groups.push_back(f.Get("group"));
  } else {
    auto all = (*store)->ListGroups();
    if (!all.ok()) return Fail("ls", all.status());
    groups = *all;
  }
  Json out = Json::array();
  for (const auto& g : groups) {
    auto metas = GroupMetas(**store, g);
    if (!metas.ok()) return Fail("ls", metas.status());
    Json vols = Json::array();
    if (!ctx->json) std::printf("group %s\n", g.c_str());
    for (const auto& m : *metas) {
      if (ctx->json) {
        vols.push_back(Json{{"uuid", m.uuid},
                            {"type", m.type},
                            {"name", m.name.value_or("")},
                            {"size", m.size},
                            {"status", m.status}});
      } else {
        std::printf("  %s  %-5s %10s  %s  %s\n", m.uuid.c_str(), m.type.c_str(),
                    HumanBytes(m.size).c_str(), m.status.c_str(), m.name.value_or("").c_str());
      }
    }
    if (ctx->json) out.push_back(Json{{"group", g}, {"volumes", vols}});
  }
  if (ctx->json) PrintJson(out);
  return kExitOk;
}

int CmdInventory(const std::vector<std::string>& args) {
  Flags f;
  if (auto rc = ParseFlags("inventory",
                           "--store DIR --group UUID [--backup-storage UUID] [--time-zone ID]",
                           {{"store", "the store: a directory or rados:POOL[/NAMESPACE]"},
                            {"group", "VM backup group uuid"},
                            {"backup-storage",
                             "backup storage uuid to name in the refs (default: "
                             "the store's uuid)"},
                            {"time-zone",
                             "zone of the dates (an IANA ID such as Asia/Shanghai; default: the "
                             "host's)"}},
                           args, &f)) {
    return *rc;
  }
  for (const char* req : {"store", "group"}) {
    if (!f.Has(req)) return Usage("inventory", absl::StrCat("--", req, " is required"), "");
  }
  auto ctx = MakeContext(f);
  if (!ctx.ok()) return Usage("inventory", ctx.status().message(), "");
  auto where = ParseStoreLocation("store", f.Get("store"));
  if (!where.ok()) return Usage("inventory", where.status().message(), "");
  auto store = OpenStoreAt(*ctx, *where, false);
  if (!store.ok()) return Fail("inventory", store.status());
  auto metas = GroupMetas(**store, f.Get("group"));
  if (!metas.ok()) return Fail("inventory", metas.status());
  const std::string bs = f.Has("backup-storage") ? f.Get("backup-storage") : (*store)->info().uuid;
  auto zone = control::ServerZone(f.Get("time-zone"));
  if (!zone.ok())
    return Usage("inventory", absl::StrCat("--time-zone: ", zone.status().message()), "");
  Json inventories = Json::array();
  for (const auto& m : *metas) {
    control::StorageRef ref{bs, m.install_path, m.status, m.create_date, m.last_op_date};
    inventories.push_back(control::VolumeBackupInventory(m, {ref}, *zone));
  }
  std::printf("%s\n", Json{{"inventories", inventories}}.dump(2).c_str());
  return kExitOk;
}

}  // namespace chunkferry::tools
