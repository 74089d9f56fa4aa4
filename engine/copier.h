// The copier: replicates a VM backup group from one store to another through the Store
// interface, so the same pipeline serves local copies, push and pull. Plan (ask the destination
// which chunks it lacks, many ids per question) → read the source's records holding them → the
// destination checks and appends them → durable → manifests → the group record, last.
#ifndef CHUNKFERRY_ENGINE_COPIER_H_
#define CHUNKFERRY_ENGINE_COPIER_H_

#include <string>

#include "absl/status/status.h"
#include "engine/progress.h"
#include "engine/store.h"

namespace chunkferry::engine {

struct CopyOptions {
  VerifyMode verify = VerifyMode::kFull;
  size_t ids_per_query = 16384;  // chunk ids per have-query
  // Paces the records handed to the destination to this many bytes per second; 0: no limit.
  // (A remote store limits its own wire bytes: RemoteOptions::rate_limit_bytes_per_s.)
  uint64_t rate_limit_bytes_per_s = 0;
};

struct CopyStats {
  uint64_t volumes = 0;
  uint64_t logical_bytes = 0;      // sum of the volumes' sizes
  uint64_t chunks_referenced = 0;  // data entries in the manifests
  uint64_t chunks_queried = 0;     // unique ids asked about
  uint64_t chunks_missing = 0;     // ids the destination lacked
  uint64_t records_sent = 0;
  uint64_t bytes_sent = 0;  // record bytes handed to the destination
  AppendStats appended;     // what the destination kept
  double seconds = 0;
};

// Progress ("copy", then "commit") counts the group's logical bytes and its referenced chunks
// (data entries of the manifests, zero runs excluded): bytes_total and chunks_total are known up
// front, and bytes_done / chunks_done cover the entries whose chunks the destination holds.
//
// Copies group `group_uuid` from `src` to `dst`. Idempotent: chunks the destination holds are not
// sent again, so rerunning after an interruption sends only what is missing. The group becomes
// visible on the destination only after every volume's manifest is there, and manifests only
// after every chunk they name is durable.
[[nodiscard]] absl::Status CopyGroup(Store& src, Store& dst, const std::string& group_uuid,
                                     const CopyOptions& options, CopyStats* stats,
                                     const ProgressFn* progress = nullptr);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_COPIER_H_
