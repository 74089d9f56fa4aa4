// chunkferry sync: copies a VM backup group between two stores, one of which may be a store
// daemon (`chunkferry serve`) on another node: push when the destination is remote, pull when the
// source is, a local copy when both are directories. The copier is the same in every case
// (engine/copier.h); a remote side is an engine::RemoteStore.
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "engine/pipeline/copier.h"
#include "engine/wire/auth.h"
#include "engine/wire/remote_store.h"
#include "io/net.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {
namespace {

constexpr char kCmd[] = "sync";
// Parses a rate: a size with an optional k/m/g/t suffix (binary: 50M is 50 MiB), optionally
// followed by "B", "iB" or "/s" ("50M", "50MiB/s", "1g"). "0" is no limit.
absl::StatusOr<uint64_t> ParseRate(const std::string& text) {
  std::string t = absl::AsciiStrToLower(text);
  if (absl::EndsWith(t, "/s")) t.resize(t.size() - 2);
  if (absl::EndsWith(t, "ib")) {
    t.resize(t.size() - 2);
  } else if (absl::EndsWith(t, "b")) {
    t.pop_back();
  }
  auto v = ParseSize(t);
  if (!v.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rate-limit: '", text, "' is not a rate in bytes per second (e.g. 50M)"));
  }
  return v;
}

// One JSON object per progress tick, on stderr.
void PrintProgressJson(const engine::ProgressState& s) {
  const double rate = s.seconds > 0 ? static_cast<double>(s.bytes_done) / s.seconds : 0;
  Json j{{"phase", s.phase},
         {"bytes_done", s.bytes_done},
         {"bytes_total", s.bytes_total},
         {"chunks_done", s.chunks_done},
         {"chunks_total", s.chunks_total},
         {"rate_bytes_per_s", static_cast<uint64_t>(rate)}};
  if (s.final || (s.bytes_total > 0 && s.bytes_done >= s.bytes_total)) {
    j["eta_s"] = 0;
  } else if (s.bytes_total > s.bytes_done && rate > 0) {
    j["eta_s"] = static_cast<double>(static_cast<uint64_t>(
                     static_cast<double>(s.bytes_total - s.bytes_done) / rate * 10)) /
                 10;
  } else {
    j["eta_s"] = nullptr;  // unknown yet
  }
  std::fprintf(stderr, "%s\n", j.dump().c_str());
  std::fflush(stderr);
}

}  // namespace

int CmdSync(const std::vector<std::string>& args) {
  std::vector<FlagSpec> specs = {
      {"from",
       "source: a store directory, rados:POOL[/NAMESPACE], or a daemon as "
       "tcp://HOST:PORT (or HOST:PORT)"},
      {"to",
       "destination: a store directory, rados:POOL[/NAMESPACE], or a daemon as "
       "tcp://HOST:PORT (or HOST:PORT)"},
      {"group", "VM backup group uuid"},
      {"key-file",
       "shared key of the daemon (default: the local store's DIR/auth.key, when it exists)", true,
       ""},
      {"connections", "TCP connections to the daemon", true, "2"},
      {"verify",
       "a local destination checks records by: full or checksum (a daemon decides for itself: "
       "serve --verify)",
       true, "full"},
      {"rate-limit", "cap on bytes per second sent or received, e.g. 50M (binary units; 0: none)",
       true, "0"},
      {"io-timeout",
       "seconds a daemon may go without sending or taking a byte before the sync gives up", true,
       "60"},
      {"progress-json", "print progress as one JSON object per line on stderr", false, ""},
  };
  for (FlagSpec& spec : ClientTlsFlags()) specs.push_back(std::move(spec));

  Flags f;
  if (auto rc = ParseFlags(
          kCmd, "--from SRC --to DST --group UUID [flags]", std::move(specs), args, &f,
          {.about = "Copies a VM backup group between two stores, sending only the chunks the "
                    "destination\nlacks. SRC and DST are store directories or store daemons "
                    "(`chunkferry serve`), written\ntcp://HOST:PORT (or HOST:PORT when no such "
                    "directory exists). With a daemon as DST the\ngroup is pushed, with a daemon "
                    "as SRC it is pulled; at most one side may be a daemon.",
           .common = {},
           .help = nullptr})) {
    return *rc;
  }
  const Flags* flags = &f;
  for (const char* req : {"from", "to", "group"}) {
    if (!flags->Has(req)) return Usage(kCmd, absl::StrCat("--", req, " is required"), "");
  }
  const std::string group = flags->Get("group");
  if (!engine::IsValidUuid(group)) {
    return Usage(
        kCmd, absl::StrCat("--group: '", group, "' is not a uuid (32 lowercase hex digits)"), "");
  }
  auto from = ParseStoreLocation("from", flags->Get("from"));
  if (!from.ok()) return Usage(kCmd, from.status().message(), "");
  auto to = ParseStoreLocation("to", flags->Get("to"));
  if (!to.ok()) return Usage(kCmd, to.status().message(), "");
  if (from->remote && to->remote) {
    return Usage(kCmd, "--from and --to are both daemons; at most one side may be remote", "");
  }
  auto mode = ParseVerifyMode(flags->Get("verify"));
  if (!mode.ok()) return Usage(kCmd, mode.status().message(), "");
  auto connections = flags->GetInt("connections");
  if (!connections.ok() || *connections < 1 || *connections > 64) {
    return Usage(kCmd, "--connections must be a whole number from 1 to 64", "");
  }
  auto rate = ParseRate(flags->Get("rate-limit"));
  if (!rate.ok()) return Usage(kCmd, rate.status().message(), "");
  auto io_timeout = flags->GetInt("io-timeout");
  if (!io_timeout.ok() || *io_timeout < 1 || *io_timeout > 86'400) {
    return Usage(kCmd, "--io-timeout must be a whole number of seconds from 1 to 86400", "");
  }
  auto ctx = MakeContext(*flags);
  if (!ctx.ok()) return Usage(kCmd, ctx.status().message(), "");
  const bool progress_json = flags->GetBool("progress-json");
  if (progress_json) ctx->progress = PrintProgressJson;

  const bool remote = from->remote || to->remote;
  const StoreLocation& local_side = from->remote ? *to : *from;
  std::optional<engine::AuthKey> key;
  if (remote) {
    std::string key_file = flags->Get("key-file");
    if (key_file.empty()) {
      if (local_side.is_rados) {
        return Usage(kCmd, "--key-file is required to reach a daemon", "");
      }
      const std::string fallback = absl::StrCat(local_side.dir, "/auth.key");
      if (!FileExists(fallback)) {
        return Usage(kCmd,
                     absl::StrCat("--key-file is required to reach a daemon (", fallback,
                                  " does not exist)"),
                     "");
      }
      key_file = fallback;
    }
    auto k = engine::LoadKeyFile(key_file);
    if (!k.ok()) return Fail(kCmd, k.status());
    key = *k;
  } else if (flags->Has("key-file")) {
    return Usage(kCmd, "--key-file is for a daemon, and neither side is one", "");
  }

  // The local side(s) first: a bad directory or pool is reported before any connection is made.
  std::unique_ptr<engine::Store> src_local, dst_local;
  if (!from->remote) {
    // Pushing to a daemon or a pool, the network and the receiver's checks set the pace: the
    // source's packs are read past the page cache, which saves the client a kernel copy per byte
    // (into a pool: 2.3-2.9 → 1.8-1.9 client CPU-s for 592 MB, docs/BENCHMARKS.md).
    auto s = OpenStoreAt(*ctx, *from, false, /*direct_reads=*/to->remote || to->is_rados);
    if (!s.ok()) return Fail(kCmd, s.status());
    src_local = *std::move(s);
  }
  if (!to->remote) {
    auto s = OpenStoreAt(*ctx, *to, true);
    if (!s.ok()) return Fail(kCmd, s.status());
    dst_local = *std::move(s);
  }
  std::unique_ptr<engine::RemoteStore> remote_store;
  if (remote) {
    engine::RemoteOptions ro;
    ro.endpoint = from->remote ? from->endpoint : to->endpoint;
    ro.key = *key;
    ro.connections = static_cast<size_t>(*connections);
    ro.backend = ctx->queue.backend;
    ro.rate_limit_bytes_per_s = *rate;
    ro.io_timeout_ms = *io_timeout * 1000;
    ro.tls = ctx->tls;
    auto r = engine::RemoteStore::Connect(ro);
    if (!r.ok()) return Fail(kCmd, r.status());
    remote_store = *std::move(r);
  }
  engine::Store& src = from->remote ? static_cast<engine::Store&>(*remote_store) : *src_local;
  engine::Store& dst = to->remote ? static_cast<engine::Store&>(*remote_store) : *dst_local;

  engine::CopyOptions o;
  o.verify = *mode;
  if (!remote) o.rate_limit_bytes_per_s = *rate;  // a daemon link paces itself, on the wire
  engine::CopyStats stats;
  absl::Status st =
      engine::CopyGroup(src, dst, group, o, &stats, ctx->progress ? &ctx->progress : nullptr);
  absl::Status closed = dst_local ? dst_local->Close() : absl::OkStatus();
  const uint64_t wire_sent = remote_store ? remote_store->wire_bytes_sent() : 0;
  const uint64_t wire_received = remote_store ? remote_store->wire_bytes_received() : 0;
  remote_store.reset();  // BYE
  if (!st.ok()) return Fail(kCmd, st);
  if (!closed.ok()) return Fail(kCmd, closed);

  const char* direction = to->remote ? "push" : from->remote ? "pull" : "local";
  if (ctx->json) {
    std::printf("%s\n",
                Json{{"group", group},
                     {"direction", direction},
                     {"from", from->remote ? io::FormatEndpoint(from->endpoint) : src.location()},
                     {"to", to->remote ? io::FormatEndpoint(to->endpoint) : dst.location()},
                     {"volumes", stats.volumes},
                     {"logicalBytes", stats.logical_bytes},
                     {"chunksReferenced", stats.chunks_referenced},
                     {"chunksQueried", stats.chunks_queried},
                     {"chunksKnownFromBase", stats.chunks_known_from_base},
                     {"volumesWithBase", stats.volumes_with_base},
                     {"retriedWithoutBase", stats.retried_without_base},
                     {"chunksMissing", stats.chunks_missing},
                     {"recordsSent", stats.records_sent},
                     {"bytesSent", stats.bytes_sent},
                     {"recordsAppended", stats.appended.records_appended},
                     {"bytesAppended", stats.appended.bytes_appended},
                     {"chunksAdded", stats.appended.chunks_added},
                     {"connections", remote ? *connections : 0},
                     {"wireBytesSent", wire_sent},
                     {"wireBytesReceived", wire_received},
                     {"wireBytes", wire_sent + wire_received},
                     {"seconds", stats.seconds},
                     {"planSeconds", stats.plan_seconds()},
                     {"querySeconds", stats.query_seconds},
                     {"transferSeconds", stats.transfer_seconds},
                     {"commitSeconds", stats.commit_seconds}}
                    .dump(2)
                    .c_str());
  } else {
    const std::string where =
        to->remote ? absl::StrCat("pushed group ", group, " to ", io::FormatEndpoint(to->endpoint))
        : from->remote
            ? absl::StrCat("pulled group ", group, " from ", io::FormatEndpoint(from->endpoint))
            : absl::StrCat("copied group ", group);
    std::string wire;
    if (remote) {
      wire = absl::StrCat("; ", HumanBytes(wire_sent + wire_received), " on the wire over ",
                          *connections, " connection", *connections == 1 ? "" : "s");
    }
    std::printf(
        "%s (%llu volumes, %s): %s of records moved in %s s (%s), %llu of %llu chunks were "
        "missing%s\n",
        where.c_str(), static_cast<unsigned long long>(stats.volumes),
        HumanBytes(stats.logical_bytes).c_str(), HumanBytes(stats.bytes_sent).c_str(),
        absl::StrFormat("%.2f", stats.seconds).c_str(),
        HumanRate(stats.logical_bytes, stats.seconds).c_str(),
        static_cast<unsigned long long>(stats.chunks_missing),
        static_cast<unsigned long long>(stats.chunks_queried), wire.c_str());
  }
  return kExitOk;
}

}  // namespace chunkferry::tools
