#include "engine/store/scratch_manifest.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {

namespace {

constexpr char kPrefix[] = "chunkferry-";
constexpr const char* kFiles[] = {"manifest", "manifest.tmp"};

// "chunkferry-<pid>-XXXXXX" → pid; 0 for any other name.
pid_t OwnerOf(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kPrefix)) return 0;
  const size_t dash = name.find('-');
  uint32_t pid = 0;
  if (dash == absl::string_view::npos || !absl::SimpleAtoi(name.substr(0, dash), &pid)) return 0;
  return static_cast<pid_t>(pid);
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

void RemoveAbandonedScratchDirs(const std::string& base, std::chrono::seconds quiet_for) {
  DIR* dir = ::opendir(base.c_str());
  if (dir == nullptr) return;
  const time_t now = ::time(nullptr);
  std::vector<std::string> abandoned;
  while (const dirent* e = ::readdir(dir)) {
    const pid_t pid = OwnerOf(e->d_name);
    if (pid <= 0 || pid == ::getpid() || Alive(pid)) continue;
    const std::string path = absl::StrCat(base, "/", e->d_name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
      continue;
    }
    // A process in another pid namespace may share this directory: only what nobody touched
    // for a while is taken as abandoned.
    bool quiet = now - st.st_mtime >= quiet_for.count();
    for (const char* name : kFiles) {
      struct stat f;
      if (::lstat(absl::StrCat(path, "/", name).c_str(), &f) == 0 &&
          now - f.st_mtime < quiet_for.count()) {
        quiet = false;
      }
    }
    if (quiet) abandoned.push_back(path);
  }
  ::closedir(dir);
  for (const std::string& path : abandoned) {
    for (const char* name : kFiles) ::unlink(absl::StrCat(path, "/", name).c_str());
    ::rmdir(path.c_str());  // fails, harmlessly, if it holds anything else
  }
}

absl::StatusOr<ScratchDir> ScratchDir::Make() {
  const char* env = std::getenv("TMPDIR");
  const std::string base = env != nullptr && *env != '\0' ? env : "/tmp";
  // A process killed while it held one (SIGKILL, a crash) left it behind, with a manifest that
  // may be large (about 36 bytes per chunk of a volume): the next one removes it.
  RemoveAbandonedScratchDirs(base, kAbandonedAfter);
  std::string templ = absl::StrCat(base, "/", kPrefix, ::getpid(), "-XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) return io::ErrnoStatus(errno, "mkdtemp", templ);
  return ScratchDir(std::move(templ));
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  for (const char* name : kFiles) ::unlink(File(name).c_str());
  ::rmdir(path_.c_str());
}

std::string ScratchDir::File(absl::string_view name) const {
  return absl::StrCat(path_, "/", name);
}

absl::StatusOr<std::string> WriteScratchManifest(const ScratchDir& dir,
                                                 const VolumeBackupMeta& meta,
                                                 ManifestSource& entries) {
  const std::string path = dir.File("manifest");
  CF_ASSIGN_OR_RETURN(auto writer, ManifestWriter::Create(dir.File("manifest.tmp")));
  entries.Rewind();
  std::vector<ManifestEntry> batch;
  for (;;) {
    CF_ASSIGN_OR_RETURN(size_t n, entries.Next(&batch, 4096));
    if (n == 0) break;
    for (const auto& e : batch) CF_RETURN_IF_ERROR(writer->Add(e));
  }
  CF_RETURN_IF_ERROR(writer->Finish(meta, path));
  return path;
}

}  // namespace chunkferry::engine
