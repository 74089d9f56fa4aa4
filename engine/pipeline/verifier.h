// Verify: reads every record a store's index points at, checks it (decompress and recompute every
// chunk id by default), then walks every manifest and group and names the volume backups that a
// damaged or missing chunk breaks.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_VERIFIER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_VERIFIER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "codec/chunk_id.h"
#include "engine/local/local_store.h"
#include "engine/store/progress.h"
#include "engine/store/worker_pool.h"

namespace chunkferry::engine {

struct DamagedBackup {
  std::string uuid;
  std::string group_uuid;
  std::string name;
  uint64_t damaged_chunks = 0;  // named chunks whose record failed its check
  uint64_t missing_chunks = 0;  // named chunks the store does not hold at all
  std::string problem;          // when the manifest itself is unreadable
};

struct VerifyReport {
  uint64_t records = 0;
  uint64_t chunks = 0;
  uint64_t stored_bytes = 0;
  uint64_t bad_records = 0;         // damaged records that the index names (a problem each)
  uint64_t unused_bad_records = 0;  // damaged records nothing names (quarantined or garbage)
  uint64_t manifests = 0;
  uint64_t groups = 0;
  std::vector<std::string> problems;  // every finding, in words
  std::vector<DamagedBackup> damaged;
  // Chunks the index places in a record that failed its check or that no pack holds intact:
  // what LocalStore::ForgetRecordsOf quarantines (verify --repair).
  std::vector<codec::ChunkId> bad_chunks;
  double seconds = 0;

  bool ok() const { return problems.empty() && damaged.empty(); }
};

// Counts the groups of `store` into `report`, adding a problem for each group that cannot be
// read or that names a volume backup not in `readable` (those whose manifests read whole).
[[nodiscard]] absl::Status CheckGroups(Store& store,
                                       const absl::flat_hash_set<std::string>& readable,
                                       VerifyReport* report);

// What a verifier found about the chunk of one data entry of a manifest.
enum class EntryState { kIntact, kMissing, kDamaged };
// Adds to report->damaged the backup `uuid` (manifest `source`) when `classify` finds any of its
// data entries missing or damaged, with their counts. An entry whose length differs from the
// chunk's in `lengths` (when there) is damaged too: restore would refuse it.
[[nodiscard]] absl::Status NameDamage(
    const std::string& uuid, ManifestSource& source,
    const absl::flat_hash_map<codec::ChunkId, uint32_t>& lengths,
    const std::function<EntryState(const codec::ChunkId&)>& classify, VerifyReport* report);
// The last steps of every verifier: the groups checked (CheckGroups), the time taken.
[[nodiscard]] absl::Status FinishReport(Store& store,
                                        const absl::flat_hash_set<std::string>& readable,
                                        ProgressTicker& ticker, VerifyReport* report);

// Returns the report; an error only when verification itself could not run.
[[nodiscard]] absl::StatusOr<VerifyReport> VerifyStore(LocalStore& store, WorkerPool& pool,
                                                       VerifyMode mode,
                                                       const ProgressFn* progress = nullptr);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_VERIFIER_H_
