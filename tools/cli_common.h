// What the subcommands of the `chunkferry` CLI share: opening stores with the I/O and thread
// flags, progress lines on a terminal, JSON results, and exit codes.
#ifndef CHUNKFERRY_TOOLS_CLI_COMMON_H_
#define CHUNKFERRY_TOOLS_CLI_COMMON_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/local/local_store.h"
#include "engine/rados/rados_store.h"
#include "engine/store/progress.h"
#include "engine/store/worker_pool.h"
#include "engine/wire/remote_store.h"
#include "engine/wire/tls.h"
#include "io/net.h"
#include "tools/flags.h"

namespace chunkferry::tools {

using Json = nlohmann::ordered_json;

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // the operation failed, or verify found damage
inline constexpr int kExitUsage = 2;   // bad flags

// Flags every data command takes: --io, --threads, --json, --quiet, and the RADOS client's
// --ceph-conf, --ceph-user, --ceph-keyring and --ceph-timeout (for stores named
// rados:POOL[/NAMESPACE]).
std::vector<FlagSpec> CommonFlags();

// The engine context a command runs with.
struct Context {
  std::unique_ptr<engine::WorkerPool> pool;
  io::QueueOptions queue;
  bool json = false;
  bool quiet = false;
  engine::ProgressFn progress;  // empty when no progress is shown
  // TLS to daemons (ClientTlsFlags); null: plain TCP.
  std::shared_ptr<engine::TlsContext> tls;
  // How RADOS stores are reached (--ceph-conf, --ceph-user, --ceph-keyring, --ceph-timeout).
  engine::rados::RadosClientOptions rados;
};
absl::StatusOr<Context> MakeContext(const Flags& flags);
// How RADOS stores are reached, from --ceph-conf, --ceph-user, --ceph-keyring, --ceph-timeout.
absl::StatusOr<engine::rados::RadosClientOptions> RadosClientFromFlags(const Flags& flags);

// The flags of a command that reaches a daemon, for TLS: --tls-ca or --tls-peer-sha256 (either
// turns TLS on), --tls-name, and --tls-cert/--tls-key for a daemon that wants client
// certificates. MakeContext reads them into Context::tls.
std::vector<FlagSpec> ClientTlsFlags();
// Appends what a command that may reach a daemon takes: --key-file and ClientTlsFlags().
void AddDaemonClientFlags(std::vector<FlagSpec>* specs);

// The flags of a daemon that may speak TLS: --tls-cert and --tls-key (TLS on), --tls-client-ca
// (mutual TLS). `clients` names who connects, for the help ("clients", "API callers").
std::vector<FlagSpec> ServerTlsFlags(absl::string_view clients);
// Reads ServerTlsFlags: null when TLS is off; logs the certificate's fingerprint, which clients
// pin. InvalidArgument / PermissionDenied as TlsContext::Make says.
absl::StatusOr<std::shared_ptr<engine::TlsContext>> MakeServerTls(const Flags& flags);

absl::StatusOr<engine::VerifyMode> ParseVerifyMode(const std::string& text);

// `direct_reads`: LocalStoreOptions::direct_reads (a sync's source when the other side is a
// daemon or a pool).
absl::StatusOr<std::unique_ptr<engine::LocalStore>> OpenStore(const Context& ctx,
                                                              const std::string& dir, bool writable,
                                                              bool direct_reads = false);

// Where a store is: a directory, a store daemon, or a RADOS pool.
struct StoreLocation {
  bool remote = false;    // a daemon
  bool is_rados = false;  // a pool
  std::string dir;        // local
  io::Endpoint endpoint;  // remote
  engine::rados::RadosUrl rados;
  std::string text;  // as given, for messages
};
// "rados:POOL[/NAMESPACE]" is a RADOS pool; "tcp://HOST:PORT" is a daemon; otherwise an existing
// directory is a store, and HOST:PORT that names no directory is a daemon. Anything else is taken
// as a store directory (opening it then says what is wrong). `flag` names the flag in errors
// (InvalidArgument).
absl::StatusOr<StoreLocation> ParseStoreLocation(absl::string_view flag, const std::string& text);
bool FileExists(const std::string& path);
// What is wrong with --key-file for a store at `where` (required for a daemon, refused for a
// directory); empty when nothing is.
std::string KeyFileMisuse(const StoreLocation& where, bool has_key_file);
// --`flag` parsed as a store location (ParseStoreLocation) and checked against --key-file
// (KeyFileMisuse): InvalidArgument saying what is wrong, for a usage error.
absl::StatusOr<StoreLocation> StoreFlagLocation(const Flags& flags, absl::string_view flag);
// One connection to the daemon at `where`, authenticated with the key in `key_file`: what the
// administrative commands (delete, gc) use.
absl::StatusOr<std::unique_ptr<engine::RemoteStore>> ConnectToDaemon(const StoreLocation& where,
                                                                     const std::string& key_file,
                                                                     const Context& ctx);

// How a command's help and flags differ from the usual.
struct ParseExtras {
  absl::string_view about;                // a paragraph after the usage line
  std::vector<absl::string_view> common;  // common flags taken (empty: all of them)
  std::string* help = nullptr;            // receives the help text, for later usage errors
};
// Parses a subcommand's flags (its own `specs` plus the common ones). Returns an exit code when
// the command should stop now (a usage error, or --help printed), nullopt to go on.
std::optional<int> ParseFlags(absl::string_view cmd, absl::string_view synopsis,
                              std::vector<FlagSpec> specs, const std::vector<std::string>& args,
                              Flags* out, const ParseExtras& extras = {});

// Opens the store in pool `url` with the context's client settings (--ceph-*).
absl::StatusOr<std::unique_ptr<engine::rados::RadosStore>> OpenRadosStore(
    const Context& ctx, const engine::rados::RadosUrl& url, bool writable);

// Opens the store in a directory or a pool (`where` must not be a daemon: the caller connects to
// those with its own key and options).
absl::StatusOr<std::unique_ptr<engine::Store>> OpenStoreAt(const Context& ctx,
                                                           const StoreLocation& where,
                                                           bool writable,
                                                           bool direct_reads = false);
// For what takes a directory only here (a local import, verify, the local gc): opens
// the directory `text`, and refuses a rados: store with Unimplemented saying what to do instead.
absl::StatusOr<std::unique_ptr<engine::LocalStore>> OpenLocalStoreAt(const Context& ctx,
                                                                     absl::string_view flag,
                                                                     const std::string& text,
                                                                     bool writable);

// "1.5 GiB"
std::string HumanBytes(uint64_t bytes);
// "850 MB/s"
std::string HumanRate(uint64_t bytes, double seconds);

// Prints "chunkferry <cmd>: <message>" to stderr and returns kExitFailed.
int Fail(absl::string_view cmd, const absl::Status& status);
// Prints a usage error and the command's help; returns kExitUsage.
int Usage(absl::string_view cmd, absl::string_view message, const std::string& help);

// Subcommands: each takes the arguments after its name.
int CmdStore(const std::vector<std::string>& args);
int CmdImport(const std::vector<std::string>& args);
int CmdRestore(const std::vector<std::string>& args);
int CmdCopy(const std::vector<std::string>& args);
int CmdServe(const std::vector<std::string>& args);   // tools/cmd_serve.cc
int CmdSync(const std::vector<std::string>& args);    // tools/cmd_sync.cc
int CmdApi(const std::vector<std::string>& args);     // tools/cmd_api.cc
int CmdDelete(const std::vector<std::string>& args);  // tools/cmd_delete.cc
int CmdGc(const std::vector<std::string>& args);      // tools/cmd_gc.cc
int CmdKey(const std::vector<std::string>& args);     // tools/cmd_key.cc
int CmdRepair(const std::vector<std::string>& args);  // tools/cmd_repair.cc
int CmdVerify(const std::vector<std::string>& args);
int CmdLs(const std::vector<std::string>& args);
int CmdInventory(const std::vector<std::string>& args);

}  // namespace chunkferry::tools

#endif  // CHUNKFERRY_TOOLS_CLI_COMMON_H_
