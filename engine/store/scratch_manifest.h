// Manifests passing through this process on their way to or from a store that is not a local
// directory (a daemon, a RADOS pool): written to or read from a private scratch directory, in
// the one manifest format (engine/format/manifest.h), so that the bytes sent are the bytes kept.
#ifndef CHUNKFERRY_ENGINE_STORE_SCRATCH_MANIFEST_H_
#define CHUNKFERRY_ENGINE_STORE_SCRATCH_MANIFEST_H_

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/format/manifest.h"

namespace chunkferry::engine {

// Scratch directories are named chunkferry-<pid>-XXXXXX. Removes those under `base` whose process
// is gone and in which nothing changed for `quiet_for` (left by a process killed while it held
// one), owned by this user; only the files a ScratchDir makes, then the directory.
void RemoveAbandonedScratchDirs(const std::string& base, std::chrono::seconds quiet_for);
inline constexpr std::chrono::seconds kAbandonedAfter{600};

// A private directory ($TMPDIR or /tmp, mode 0700), removed with the manifest files in it. Making
// one first removes abandoned ones (RemoveAbandonedScratchDirs, kAbandonedAfter).
class ScratchDir {
 public:
  [[nodiscard]] static absl::StatusOr<ScratchDir> Make();
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir();

  // "manifest" (finished) and "manifest.tmp" (being written) are the names removed with it.
  std::string File(absl::string_view name) const;

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Writes the manifest of `meta` from `entries` (rewound first) to dir.File("manifest") and
// returns that path.
[[nodiscard]] absl::StatusOr<std::string> WriteScratchManifest(const ScratchDir& dir,
                                                               const VolumeBackupMeta& meta,
                                                               ManifestSource& entries);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_STORE_SCRATCH_MANIFEST_H_
