// Repair: brings a store (a directory or a pool) good copies of the chunks its backups name but it
// does not hold (quarantined by verify --repair, or lost), from another store that has them: a
// local store, a pool or a daemon, through the Store interface. Only those chunks travel, checked
// where they land as a sync's are. In the spirit of Proxmox Backup Server, whose verify renames bad
// chunks so that the next backup uploads them again; here a sync or an import brings them back as
// well.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_REPAIRER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_REPAIRER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/store/store.h"

namespace chunkferry::engine {

struct RepairReport {
  uint64_t manifests = 0;                  // manifests read
  uint64_t chunks_lacking = 0;             // unique chunks named by manifests that the store lacked
  uint64_t chunks_unavailable = 0;         // of those, the ones the other store lacks too
  AppendStats appended;                    // what the store kept of what came
  std::vector<std::string> broken_before;  // backups that lacked chunks, by uuid
  std::vector<std::string> still_broken;   // those that still lack some
  std::vector<std::string> unreadable;     // manifests that could not be read (not repaired)
};

// Fetches from `from` every chunk that a manifest of `store` names and `store` lacks, and makes
// it durable in `store`. An error only when the repair could not run; what could not be found is
// in the report.
[[nodiscard]] absl::StatusOr<RepairReport> RepairFrom(Store& store, Store& from, VerifyMode mode);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_REPAIRER_H_
