#include "engine/pipeline/repairer.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kIdsPerQuery = 16384;

}  // namespace

absl::StatusOr<RepairReport> RepairFrom(LocalStore& store, Store& from, VerifyMode mode) {
  if (store.info().uuid == from.info().uuid) {
    return absl::InvalidArgumentError(
        absl::StrCat("a store cannot be repaired from itself (", store.info().uuid, ")"));
  }
  if (store.info().key_fingerprint != from.info().key_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("stores ", store.location(), " and ", from.location(),
                     " key their chunk ids differently; a repair needs the same id key"));
  }
  RepairReport report;
  // What each backup lacks, and every lacking chunk once.
  absl::flat_hash_map<std::string, std::vector<codec::ChunkId>> lacking_by_backup;
  absl::flat_hash_set<codec::ChunkId> lacking;
  std::vector<codec::ChunkId> order;
  CF_ASSIGN_OR_RETURN(std::vector<std::string> backups, store.ListManifests());
  std::vector<ManifestEntry> entries;
  for (const std::string& uuid : backups) {
    auto reader = store.OpenManifestReader(uuid);
    if (!reader.ok()) {
      report.unreadable.push_back(absl::StrCat(uuid, ": ", reader.status().message()));
      continue;
    }
    ++report.manifests;
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, (*reader)->Next(&entries, 4096));
      if (n == 0) break;
      for (const ManifestEntry& e : entries) {
        if (e.zero || store.index().Contains(e.id)) continue;
        lacking_by_backup[uuid].push_back(e.id);
        if (lacking.insert(e.id).second) order.push_back(e.id);
      }
    }
  }
  report.chunks_lacking = order.size();
  for (const auto& [uuid, ids] : lacking_by_backup) report.broken_before.push_back(uuid);
  std::sort(report.broken_before.begin(), report.broken_before.end());

  // Ask the other store, a query at a time, and copy what it has.
  std::vector<bool> have;
  std::vector<codec::ChunkId> wanted;
  for (size_t begin = 0; begin < order.size(); begin += kIdsPerQuery) {
    const auto batch =
        absl::MakeConstSpan(order).subspan(begin, std::min(kIdsPerQuery, order.size() - begin));
    CF_RETURN_IF_ERROR(from.HaveChunks(batch, &have));
    wanted.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (have[i]) {
        wanted.push_back(batch[i]);
      } else {
        ++report.chunks_unavailable;
      }
    }
    if (wanted.empty()) continue;
    CF_RETURN_IF_ERROR(
        from.ReadRecordsFor(wanted, [&](absl::Span<const absl::Span<const uint8_t>> records) {
          return store.AppendRecords(records, mode, &report.appended);
        }));
  }
  CF_RETURN_IF_ERROR(store.Flush());

  for (const std::string& uuid : report.broken_before) {
    const auto& ids = lacking_by_backup[uuid];
    if (std::any_of(ids.begin(), ids.end(),
                    [&](const codec::ChunkId& id) { return !store.index().Contains(id); })) {
      report.still_broken.push_back(uuid);
    }
  }
  return report;
}

}  // namespace chunkferry::engine
