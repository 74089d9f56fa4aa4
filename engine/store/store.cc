#include "engine/store/store.h"

#include <utility>

#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// An answer taken when the query was asked.
class AnsweredHave : public Store::HaveQuery {
 public:
  explicit AnsweredHave(std::vector<bool> have) : have_(std::move(have)) {}
  absl::Status Wait(std::vector<bool>* have) override {
    *have = std::move(have_);
    return absl::OkStatus();
  }

 private:
  std::vector<bool> have_;
};

}  // namespace

absl::StatusOr<std::vector<VolumeBackupMeta>> Store::ListBackupMetas(
    const std::function<bool(const std::string& uuid)>& wanted) {
  CF_ASSIGN_OR_RETURN(std::vector<std::string> backups, ListBackups());
  std::vector<VolumeBackupMeta> metas;
  for (const std::string& uuid : backups) {
    if (!wanted(uuid)) continue;
    auto manifest = OpenManifest(uuid);
    if (absl::IsNotFound(manifest.status())) continue;  // deleted meanwhile
    if (!manifest.ok()) return manifest.status();
    metas.push_back((*manifest)->meta());
  }
  return metas;
}

absl::StatusOr<std::unique_ptr<Store::HaveQuery>> Store::AskHave(
    absl::Span<const codec::ChunkId> ids) {
  std::vector<bool> have;
  CF_RETURN_IF_ERROR(HaveChunks(ids, &have));
  return std::make_unique<AnsweredHave>(std::move(have));
}

}  // namespace chunkferry::engine
