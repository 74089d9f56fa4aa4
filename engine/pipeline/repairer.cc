#include "engine/pipeline/repairer.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kIdsPerQuery = 16384;

// The chunks of `ids` that `store` lacks, asked in batches.
absl::Status Lacking(Store& store, absl::Span<const codec::ChunkId> ids,
                     std::vector<codec::ChunkId>* lacking) {
  std::vector<bool> have;
  for (size_t begin = 0; begin < ids.size(); begin += kIdsPerQuery) {
    const auto batch = ids.subspan(begin, std::min(kIdsPerQuery, ids.size() - begin));
    CF_RETURN_IF_ERROR(store.HaveChunks(batch, &have));
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!have[i]) lacking->push_back(batch[i]);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RepairReport> RepairFrom(Store& store, Store& from, VerifyMode mode) {
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
  CF_ASSIGN_OR_RETURN(std::vector<std::string> backups, store.ListBackups());
  std::vector<ManifestEntry> entries;
  std::vector<codec::ChunkId> ids, absent;
  for (const std::string& uuid : backups) {
    auto reader = store.OpenManifest(uuid);
    if (!reader.ok()) {
      report.unreadable.push_back(absl::StrCat(uuid, ": ", reader.status().message()));
      continue;
    }
    ++report.manifests;
    // Asked a batch at a time as the manifest streams by (a store far away answers in batches;
    // memory stays bounded by a batch, not by the volume).
    const auto ask = [&]() -> absl::Status {
      absent.clear();
      CF_RETURN_IF_ERROR(Lacking(store, ids, &absent));
      for (const codec::ChunkId& id : absent) {
        lacking_by_backup[uuid].push_back(id);
        if (lacking.insert(id).second) order.push_back(id);
      }
      ids.clear();
      return absl::OkStatus();
    };
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, (*reader)->Next(&entries, 4096));
      if (n == 0) break;
      for (const ManifestEntry& e : entries) {
        if (!e.zero) ids.push_back(e.id);
      }
      if (ids.size() >= kIdsPerQuery) CF_RETURN_IF_ERROR(ask());
    }
    CF_RETURN_IF_ERROR(ask());
  }
  report.chunks_lacking = order.size();
  for (const auto& entry : lacking_by_backup) report.broken_before.push_back(entry.first);
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
    absent.clear();
    CF_RETURN_IF_ERROR(Lacking(store, lacking_by_backup[uuid], &absent));
    if (!absent.empty()) report.still_broken.push_back(uuid);
  }
  return report;
}

}  // namespace chunkferry::engine
