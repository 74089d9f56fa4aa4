// chunkferry: replicate VM backup groups between image stores. Dispatches to subcommands.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/cli_common.h"

namespace {

constexpr char kUsage[] =
    "usage: chunkferry COMMAND [flags]   (chunkferry COMMAND --help for its flags)\n"
    "\n"
    "commands:\n"
    "  store init   create an empty image store\n"
    "  import       import a raw volume image as a volume backup\n"
    "  restore      write a volume backup back out as a byte-identical image\n"
    "  copy         copy a VM backup group from one store to another (deduped, verified)\n"
    "  serve        serve a store to other nodes (the store daemon)\n"
    "  sync         copy a group to or from a store daemon (push or pull), or between stores\n"
    "  api          serve the sync API over HTTP (SyncVmBackupFromImageStoreBackupStorage)\n"
    "  verify       check every chunk of a store and name the backups damage breaks\n"
    "  ls           list groups and their volume backups\n"
    "  inventory    a group's VolumeBackupInventory JSON\n"
    "  delete       delete a group, or a volume backup no group names\n"
    "  gc           reclaim the space that deleted backups held\n"
    "  repair       bring a store good copies of the chunks its backups lack, from another\n"
    "  key          add, remove or list the named keys of a store daemon (serve --keys)\n"
    "\n"
    "exit codes: 0 ok, 1 failed (or damage found), 2 usage error\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace chunkferry::tools;
  // Large buffers come from mmap and go back to the system when freed, so the resident size
  // follows what is really in use (glibc would otherwise raise the threshold and keep them).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // A file size limit (RLIMIT_FSIZE) is a full disk for the file that hits it: the write fails
  // with EFBIG and is rolled back and reported, instead of SIGXFSZ killing a daemon mid-request.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitUsage : kExitOk;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "store") return CmdStore(args);
  if (cmd == "import") return CmdImport(args);
  if (cmd == "restore") return CmdRestore(args);
  if (cmd == "copy") return CmdCopy(args);
  if (cmd == "serve") return CmdServe(args);
  if (cmd == "sync") return CmdSync(args);
  if (cmd == "api") return CmdApi(args);
  if (cmd == "verify") return CmdVerify(args);
  if (cmd == "ls") return CmdLs(args);
  if (cmd == "inventory") return CmdInventory(args);
  if (cmd == "delete") return CmdDelete(args);
  if (cmd == "gc") return CmdGc(args);
  if (cmd == "key") return CmdKey(args);
  if (cmd == "repair") return CmdRepair(args);
  std::fprintf(stderr, "chunkferry: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return kExitUsage;
}
