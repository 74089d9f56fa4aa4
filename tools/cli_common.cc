#include "tools/cli_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "engine/wire/auth.h"
#include "tools/daemon_util.h"

namespace chunkferry::tools {

std::vector<FlagSpec> CommonFlags() {
  return {
      {"io", "I/O backend: auto, uring or threads", true, "auto"},
      {"threads", "worker threads for hashing, compression and checks (0: cores - 1)", true, "0"},
      {"json", "print the result as JSON on stdout", false, ""},
      {"quiet", "no progress line", false, ""},
      {"ceph-conf", "for a rados: store, the ceph.conf to read (default: librados's search)", true,
       ""},
      {"ceph-user", "for a rados: store, the cephx user (default: client.admin)", true, ""},
      {"ceph-keyring", "for a rados: store, the user's keyring (default: what ceph.conf names)",
       true, ""},
      {"ceph-timeout",
       "for a rados: store, seconds a cluster may not answer before the operation fails", true,
       "30"},
      {"help", "show this help", false, ""},
  };
}

std::vector<FlagSpec> ClientTlsFlags() {
  return {
      {"tls-ca", "speak TLS to the daemon, checking its certificate against this CA file (PEM)",
       true, ""},
      {"tls-peer-sha256",
       "speak TLS to the daemon, checking its certificate by this SHA-256 fingerprint", true, ""},
      {"tls-name", "name (DNS or IP) the daemon's certificate must carry, with --tls-ca", true, ""},
      {"tls-cert", "client certificate (PEM), for a daemon that requires one", true, ""},
      {"tls-key", "key of --tls-cert (PEM, mode 0600)", true, ""},
  };
}

void AddDaemonClientFlags(std::vector<FlagSpec>* specs) {
  specs->push_back({"key-file", "shared key of the daemon (required for a daemon)", true, ""});
  for (FlagSpec& spec : ClientTlsFlags()) specs->push_back(std::move(spec));
}

std::vector<FlagSpec> ServerTlsFlags(absl::string_view clients) {
  return {
      {"tls-cert",
       absl::StrCat("speak TLS 1.3 only, with this certificate chain (PEM); ", clients,
                    " check it by CA or fingerprint"),
       true, ""},
      {"tls-key", "key of --tls-cert (PEM, mode 0600)", true, ""},
      {"tls-client-ca",
       absl::StrCat("mutual TLS: ", clients, " must present a certificate this CA (PEM) signed"),
       true, ""},
  };
}

absl::StatusOr<std::shared_ptr<engine::TlsContext>> MakeServerTls(const Flags& flags) {
  if (!flags.Has("tls-cert") && !flags.Has("tls-key") && !flags.Has("tls-client-ca")) {
    return std::shared_ptr<engine::TlsContext>();
  }
  engine::TlsOptions o;
  o.cert_file = flags.Get("tls-cert");
  o.key_file = flags.Get("tls-key");
  o.ca_file = flags.Get("tls-client-ca");
  auto made = engine::TlsContext::Make(o, engine::TlsRole::kServer);
  if (!made.ok()) return made.status();
  // What clients pin (--tls-peer-sha256).
  if (auto pin = engine::CertificateSha256(o.cert_file); pin.ok()) {
    LogLine(absl::StrCat("TLS certificate ", o.cert_file, ", SHA-256 fingerprint ", *pin));
  }
  return *made;
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.1f %s", v, kUnits[u]);
}

std::string HumanRate(uint64_t bytes, double seconds) {
  if (seconds <= 0) return "-";
  return absl::StrFormat("%.0f MB/s", static_cast<double>(bytes) / seconds / 1e6);
}

absl::StatusOr<engine::rados::RadosClientOptions> RadosClientFromFlags(const Flags& flags) {
  engine::rados::RadosClientOptions o;
  o.conf_path = flags.Get("ceph-conf");
  o.client_name = flags.Get("ceph-user");
  o.keyring = flags.Get("ceph-keyring");
  auto ceph_timeout = flags.GetInt("ceph-timeout");
  if (!ceph_timeout.ok()) return ceph_timeout.status();
  if (*ceph_timeout < 1 || *ceph_timeout > 3600) {
    return absl::InvalidArgumentError("--ceph-timeout must be 1..3600 seconds");
  }
  o.timeout_ms = *ceph_timeout * 1000;
  return o;
}

absl::StatusOr<Context> MakeContext(const Flags& flags) {
  Context ctx;
  auto backend = io::ParseBackend(flags.Get("io"));
  if (!backend.ok())
    return absl::InvalidArgumentError(absl::StrCat("--io: ", backend.status().message()));
  ctx.queue.backend = *backend;
  auto threads = flags.GetInt("threads");
  if (!threads.ok()) return threads.status();
  if (*threads < 0 || *threads > 256) return absl::InvalidArgumentError("--threads must be 0..256");
  const size_t workers =
      *threads == 0 ? engine::WorkerPool::DefaultWorkers() : static_cast<size_t>(*threads - 1);
  ctx.pool = std::make_unique<engine::WorkerPool>(workers);
  ctx.json = flags.GetBool("json");
  auto rados = RadosClientFromFlags(flags);
  if (!rados.ok()) return rados.status();
  ctx.rados = *std::move(rados);
  ctx.quiet = flags.GetBool("quiet");
  if (flags.Has("tls-ca") || flags.Has("tls-peer-sha256")) {
    engine::TlsOptions tls;
    tls.ca_file = flags.Get("tls-ca");
    tls.peer_sha256 = flags.Get("tls-peer-sha256");
    tls.server_name = flags.Get("tls-name");
    tls.cert_file = flags.Get("tls-cert");
    tls.key_file = flags.Get("tls-key");
    auto context = engine::TlsContext::Make(tls, engine::TlsRole::kClient);
    if (!context.ok()) return context.status();
    ctx.tls = *context;
  } else if (flags.Has("tls-name") || flags.Has("tls-cert") || flags.Has("tls-key")) {
    return absl::InvalidArgumentError(
        "--tls-name, --tls-cert and --tls-key need --tls-ca or --tls-peer-sha256 (TLS on)");
  }
  if (!ctx.quiet && ::isatty(STDERR_FILENO)) {
    ctx.progress = [](const engine::ProgressState& s) {
      std::string line = absl::StrCat(s.phase, ": ", HumanBytes(s.bytes_done));
      if (s.bytes_total > 0) {
        absl::StrAppend(&line, " / ", HumanBytes(s.bytes_total),
                        absl::StrFormat(" (%.0f%%)", 100.0 * static_cast<double>(s.bytes_done) /
                                                         static_cast<double>(s.bytes_total)));
      }
      absl::StrAppend(&line, "  ", HumanRate(s.bytes_done, s.seconds));
      if (s.bytes_total > s.bytes_done && s.bytes_done > 0 && s.seconds > 0) {
        const double eta = s.seconds * static_cast<double>(s.bytes_total - s.bytes_done) /
                           static_cast<double>(s.bytes_done);
        absl::StrAppend(&line, absl::StrFormat("  ETA %.0fs", eta));
      }
      std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), s.final ? "\n" : "");
      std::fflush(stderr);
    };
  }
  return ctx;
}

absl::StatusOr<engine::VerifyMode> ParseVerifyMode(const std::string& text) {
  if (text == "full") return engine::VerifyMode::kFull;
  if (text == "checksum") return engine::VerifyMode::kChecksum;
  return absl::InvalidArgumentError(
      absl::StrCat("--verify must be full or checksum, not '", text, "'"));
}

absl::StatusOr<std::unique_ptr<engine::LocalStore>> OpenStore(const Context& ctx,
                                                              const std::string& dir, bool writable,
                                                              bool direct_reads) {
  engine::LocalStoreOptions o;
  o.writable = writable;
  o.direct_reads = direct_reads;
  o.queue = ctx.queue;
  o.pool = ctx.pool.get();
  return engine::LocalStore::Open(dir, o);
}

absl::StatusOr<std::unique_ptr<engine::rados::RadosStore>> OpenRadosStore(
    const Context& ctx, const engine::rados::RadosUrl& url, bool writable) {
  engine::rados::RadosStoreOptions o;
  o.client = ctx.rados;
  o.writable = writable;
  o.pool = ctx.pool.get();
  return engine::rados::RadosStore::Open(url, o);
}

absl::StatusOr<std::unique_ptr<engine::Store>> OpenStoreAt(const Context& ctx,
                                                           const StoreLocation& where,
                                                           bool writable, bool direct_reads) {
  if (where.remote) {
    return absl::InvalidArgumentError(
        absl::StrCat(where.text, " is a store daemon: this command needs a directory or a pool"));
  }
  if (where.is_rados) {
    auto s = OpenRadosStore(ctx, where.rados, writable);
    if (!s.ok()) return s.status();
    return std::unique_ptr<engine::Store>(*std::move(s));
  }
  auto s = OpenStore(ctx, where.dir, writable, direct_reads);
  if (!s.ok()) return s.status();
  return std::unique_ptr<engine::Store>(*std::move(s));
}

absl::StatusOr<std::unique_ptr<engine::LocalStore>> OpenLocalStoreAt(const Context& ctx,
                                                                     absl::string_view flag,
                                                                     const std::string& text,
                                                                     bool writable) {
  if (engine::rados::IsRadosUrl(text)) {
    return absl::UnimplementedError(absl::StrCat(
        "--", flag, " ", text,
        ": this command works on a local store only; copy the group between the pool and a "
        "local store (`chunkferry copy`) first"));
  }
  return OpenStore(ctx, text, writable);
}

namespace {

constexpr char kRemotePrefix[] = "tcp://";

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<StoreLocation> ParseStoreLocation(absl::string_view flag, const std::string& text) {
  StoreLocation where;
  where.text = text;
  if (engine::rados::IsRadosUrl(text)) {
    auto url = engine::rados::ParseRadosUrl(text);
    if (!url.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", url.status().message()));
    }
    where.is_rados = true;
    where.rados = *url;
    return where;
  }
  if (absl::StartsWith(text, kRemotePrefix)) {
    auto ep = io::ParseEndpoint(std::string_view(text).substr(sizeof(kRemotePrefix) - 1));
    if (!ep.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", ep.status().message()));
    }
    if (ep->port == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": port 0 names no daemon"));
    }
    where.remote = true;
    where.endpoint = *ep;
    return where;
  }
  if (!IsDirectory(text)) {
    auto ep = io::ParseEndpoint(text);
    if (ep.ok() && ep->port != 0) {
      where.remote = true;
      where.endpoint = *ep;
      return where;
    }
  }
  where.dir = text;
  return where;
}

std::string KeyFileMisuse(const StoreLocation& where, bool has_key_file) {
  if (where.remote && !has_key_file) return "--key-file is required to reach a daemon";
  if (!where.remote && has_key_file) {
    return where.is_rados ? "--key-file is for a daemon, and --store is a RADOS pool"
                          : "--key-file is for a daemon, and --store is a directory";
  }
  return "";
}

absl::StatusOr<StoreLocation> StoreFlagLocation(const Flags& flags, absl::string_view flag) {
  auto where = ParseStoreLocation(flag, flags.Get(flag));
  if (!where.ok()) return where.status();
  if (std::string misuse = KeyFileMisuse(*where, flags.Has("key-file")); !misuse.empty()) {
    return absl::InvalidArgumentError(misuse);
  }
  return where;
}

absl::StatusOr<std::unique_ptr<engine::RemoteStore>> ConnectToDaemon(const StoreLocation& where,
                                                                     const std::string& key_file,
                                                                     const Context& ctx) {
  auto key = engine::LoadKeyFile(key_file);
  if (!key.ok()) return key.status();
  engine::RemoteOptions ro;
  ro.endpoint = where.endpoint;
  ro.key = *key;
  ro.connections = 1;
  ro.backend = ctx.queue.backend;
  ro.tls = ctx.tls;
  return engine::RemoteStore::Connect(ro);
}

std::optional<int> ParseFlags(absl::string_view cmd, absl::string_view synopsis,
                              std::vector<FlagSpec> specs, const std::vector<std::string>& args,
                              Flags* out, const ParseExtras& extras) {
  for (auto& s : CommonFlags()) {
    if (extras.common.empty() ||
        std::find(extras.common.begin(), extras.common.end(), s.name) != extras.common.end()) {
      specs.push_back(s);
    }
  }
  std::string help = absl::StrCat("usage: chunkferry ", cmd, " ", synopsis, "\n\n");
  if (!extras.about.empty()) absl::StrAppend(&help, extras.about, "\n\n");
  absl::StrAppend(&help, "flags:\n", FlagsHelp(specs));
  if (extras.help != nullptr) *extras.help = help;
  auto flags = Flags::Parse(specs, args);
  if (!flags.ok()) return Usage(cmd, flags.status().message(), help);
  if (flags->GetBool("help")) {
    std::fputs(help.c_str(), stdout);
    return kExitOk;
  }
  *out = *std::move(flags);
  return std::nullopt;
}

int Fail(absl::string_view cmd, const absl::Status& status) {
  std::fprintf(stderr, "chunkferry %.*s: %.*s\n", static_cast<int>(cmd.size()), cmd.data(),
               static_cast<int>(status.message().size()), status.message().data());
  return kExitFailed;
}

int Usage(absl::string_view cmd, absl::string_view message, const std::string& help) {
  std::fprintf(stderr, "chunkferry %.*s: %.*s\n\n%s", static_cast<int>(cmd.size()), cmd.data(),
               static_cast<int>(message.size()), message.data(), help.c_str());
  return kExitUsage;
}

}  // namespace chunkferry::tools
