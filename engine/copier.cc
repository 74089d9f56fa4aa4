#include "engine/copier.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

class Copier {
 public:
  Copier(Store& src, Store& dst, const CopyOptions& options, CopyStats& stats,
         const ProgressFn* progress)
      : src_(src), dst_(dst), options_(options), stats_(stats), ticker_(progress, "copy") {}

  absl::Status Run(const std::string& group_uuid);

 private:
  absl::Status Query();

  Store& src_;
  Store& dst_;
  const CopyOptions& options_;
  CopyStats& stats_;
  ProgressTicker ticker_;
  std::vector<codec::ChunkId> pending_;
  absl::flat_hash_set<codec::ChunkId> pending_set_;
};

// Sends the records the destination lacks for the pending ids.
absl::Status Copier::Query() {
  if (pending_.empty()) return absl::OkStatus();
  std::vector<bool> have;
  CF_RETURN_IF_ERROR(dst_.HaveChunks(pending_, &have));
  std::vector<codec::ChunkId> missing;
  for (size_t i = 0; i < pending_.size(); ++i) {
    if (!have[i]) missing.push_back(pending_[i]);
  }
  stats_.chunks_queried += pending_.size();
  stats_.chunks_missing += missing.size();
  ticker_.state().chunks_done += pending_.size();
  pending_.clear();
  pending_set_.clear();
  if (missing.empty()) return absl::OkStatus();
  // Batches go straight from the source's read buffers to the destination, which checks them
  // in parallel and copies them once, into its pack buffers.
  return src_.ReadRecordsFor(missing, [&](absl::Span<const absl::Span<const uint8_t>> records) {
    CF_RETURN_IF_ERROR(dst_.AppendRecords(records, options_.verify, &stats_.appended));
    stats_.records_sent += records.size();
    for (const auto& r : records) stats_.bytes_sent += r.size();
    ticker_.state().bytes_done = stats_.bytes_sent;
    ticker_.Tick();
    return absl::OkStatus();
  });
}

absl::Status Copier::Run(const std::string& group_uuid) {
  if (src_.info().uuid == dst_.info().uuid) {
    return absl::InvalidArgumentError(
        absl::StrCat("source and destination are the same store (", src_.info().uuid, ")"));
  }
  if (src_.info().key_fingerprint != dst_.info().key_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("stores ", src_.location(), " and ", dst_.location(),
                     " key their chunk ids differently; give both the same id key"));
  }
  CF_ASSIGN_OR_RETURN(GroupRecord group, src_.GetGroup(group_uuid));
  std::vector<std::unique_ptr<ManifestSource>> manifests;
  for (const auto& v : group.volume_uuids) {
    CF_ASSIGN_OR_RETURN(auto m, src_.OpenManifest(v));
    stats_.logical_bytes += m->meta().size;
    manifests.push_back(std::move(m));
  }
  stats_.volumes = manifests.size();
  // Plan and transfer, a query's worth of unique ids at a time: memory stays bounded by the
  // batch, and ids sent in an earlier batch are answered "have" by the destination.
  std::vector<ManifestEntry> entries;
  for (auto& m : manifests) {
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, m->Next(&entries, 4096));
      if (n == 0) break;
      for (const auto& e : entries) {
        if (e.zero) continue;
        ++stats_.chunks_referenced;
        if (pending_set_.insert(e.id).second) pending_.push_back(e.id);
        if (pending_.size() >= options_.ids_per_query) CF_RETURN_IF_ERROR(Query());
      }
    }
  }
  CF_RETURN_IF_ERROR(Query());
  CF_RETURN_IF_ERROR(dst_.Flush());
  ticker_.state().phase = "commit";
  for (auto& m : manifests) {
    VolumeBackupMeta meta = m->meta();
    meta.status = "Ready";
    CF_RETURN_IF_ERROR(dst_.PutManifest(meta, *m));
  }
  CF_RETURN_IF_ERROR(dst_.PutGroup(group));
  stats_.seconds = ticker_.Elapsed();
  ticker_.Tick(true);
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyGroup(Store& src, Store& dst, const std::string& group_uuid,
                       const CopyOptions& options, CopyStats* stats, const ProgressFn* progress) {
  CopyStats local;
  return Copier(src, dst, options, stats ? *stats : local, progress).Run(group_uuid);
}

}  // namespace chunkferry::engine
