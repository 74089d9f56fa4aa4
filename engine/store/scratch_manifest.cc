#include "engine/store/scratch_manifest.h"

#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {

absl::StatusOr<ScratchDir> ScratchDir::Make() {
  const char* base = std::getenv("TMPDIR");
  std::string templ =
      absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/chunkferry-XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) return io::ErrnoStatus(errno, "mkdtemp", templ);
  return ScratchDir(std::move(templ));
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  for (const char* name : {"manifest", "manifest.tmp"}) ::unlink(File(name).c_str());
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
