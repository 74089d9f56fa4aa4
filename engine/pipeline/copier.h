// The copier: replicates a VM backup group from one store to another through the Store
// interface, so the same pipeline serves local copies, push and pull. Plan (ask the destination
// which chunks it lacks, many ids per question) → read the source's records holding them → the
// destination checks and appends them → durable → manifests → the group record, last.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_COPIER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_COPIER_H_

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "engine/store/progress.h"
#include "engine/store/store.h"

namespace chunkferry::engine {

struct CopyOptions {
  VerifyMode verify = VerifyMode::kFull;
  size_t ids_per_query = 16384;  // chunk ids per have-query
  // Paces the records handed to the destination to this many bytes per second; 0: no limit.
  // (A remote store limits its own wire bytes: RemoteOptions::rate_limit_bytes_per_s.)
  uint64_t rate_limit_bytes_per_s = 0;
  // Look for a base for each volume (below) when the source's manifests are local and the
  // destination's are not.
  bool use_base = true;
  // Past this instant the copy stops with DeadlineExceeded (checked before each have-query,
  // each batch of records and the commit); the epoch (the default): no deadline. The copy's
  // usual failure rules hold: nothing is published, what was appended stays for the next run.
  std::chrono::steady_clock::time_point deadline{};
};

struct CopyStats {
  uint64_t volumes = 0;
  uint64_t logical_bytes = 0;      // sum of the volumes' sizes
  uint64_t chunks_referenced = 0;  // data entries in the manifests
  uint64_t chunks_queried = 0;     // unique ids asked about
  // Data entries known to be on the destination because the volume's base has the same entry
  // at the same offset: not asked about.
  uint64_t chunks_known_from_base = 0;
  uint64_t volumes_with_base = 0;  // volumes copied against a base
  // The destination refused a manifest against a base (it lacked a chunk the base named), and
  // the copy ran again without bases.
  bool retried_without_base = false;
  uint64_t chunks_missing = 0;  // ids the destination lacked
  uint64_t records_sent = 0;
  uint64_t bytes_sent = 0;  // record bytes handed to the destination
  AppendStats appended;     // what the destination kept
  double seconds = 0;
  // Where `seconds` went: reading the source's records and handing them to the destination
  // (transfer), the destination's flush, manifests and group (commit), and the rest (plan:
  // manifests read, bases found, have-queries answered; `query_seconds` of it waiting on them).
  double transfer_seconds = 0;
  double commit_seconds = 0;
  double query_seconds = 0;
  double plan_seconds() const { return seconds - transfer_seconds - commit_seconds; }
};

// Progress ("copy", then "commit") counts the group's logical bytes and its referenced chunks
// (data entries of the manifests, zero runs excluded): bytes_total and chunks_total are known up
// front, and bytes_done / chunks_done cover the entries whose chunks the destination holds.
//
// Bases. When the source's manifests are local (Store::ManifestsAreLocal) and the
// destination's are not, each volume backup V gets a base when one exists: a volume backup B != V
// of the same volume (volume_uuid) that the destination holds (it is named by one of its groups)
// and the source holds too, the latest by create_date (the destination's groups are looked at
// newest first; at most a few dozen candidate manifests are opened on the source). A manifest
// never names a chunk its store lacks, so V's data entries equal to B's entry at the same byte
// offset are not asked about, and the destination receives V's manifest as a delta against B
// (Store::PutManifestWithBase). The copy is the same without a base, only with more bytes.
// When the destination refuses a manifest because it lacks a chunk the base named (its damaged
// records were quarantined: verify --repair), the copy runs again without bases.
//
// Copies group `group_uuid` from `src` to `dst`. Idempotent: chunks the destination holds are not
// sent again, so rerunning after an interruption sends only what is missing. The group becomes
// visible on the destination only after every volume's manifest is there, and manifests only
// after every chunk they name is durable.
[[nodiscard]] absl::Status CopyGroup(Store& src, Store& dst, const std::string& group_uuid,
                                     const CopyOptions& options, CopyStats* stats,
                                     const ProgressFn* progress = nullptr);

// Copies volume backup `backup_uuid` alone (the platform's single-volume sync): its chunks, then
// its manifest, and no group, so the destination holds it as a backup no group names (a later
// copy of its group publishes the group; the manifest is the same and is not written twice).
// Bases as for a group, from backups of the same volume of any VM.
[[nodiscard]] absl::Status CopyBackup(Store& src, Store& dst, const std::string& backup_uuid,
                                      const CopyOptions& options, CopyStats* stats,
                                      const ProgressFn* progress = nullptr);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_COPIER_H_
