// Garbage collection of a local store: marks every record that a published manifest needs, then
// reclaims the space of the others — packs with no live record are removed, packs whose live
// share is below a threshold are rewritten (their live records copied, byte for byte, into a new
// pack). The argument for why this is safe next to imports and syncs, and after a crash, is in
// docs/FORMATS.md ("Garbage collection"); in short:
//
//   * Begin seals the pack being filled (new appends go to a new pack) and takes a cutoff: the
//     records numbered below it are the only ones this collection may remove. Records appended
//     later, and those a writer holds (LocalStore::HoldNewRecords: a sync session that landed
//     chunks it has not named in a manifest yet), are at or past the cutoff.
//   * From Begin to the end, every index lookup that finds a chunk marks its record live
//     (ChunkIndex::SetPins): a chunk answered "have", deduplicated against, or named by a
//     manifest published meanwhile survives. Mark then reads every published manifest, and Plan
//     reads the ones published since Mark listed them.
//   * A rewritten record keeps its record number: the index entries follow it at once. Old packs
//     are removed only in Commit, after the copies are durable and the index snapshot no longer
//     names them; a pack one of whose records was marked live after it was planned is kept.
//
// Runs in steps, so that a daemon can serve other requests between them: the caller serializes
// Step() with every other use of the store (a store is driven by one thread at a time). Memory:
// two bits per record of the store below the cutoff, plus the record numbers of the packs being
// reclaimed; never an entry per chunk. Not thread-safe.
#ifndef CHUNKFERRY_ENGINE_LOCAL_GARBAGE_COLLECTOR_H_
#define CHUNKFERRY_ENGINE_LOCAL_GARBAGE_COLLECTOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/format/manifest.h"
#include "engine/local/chunk_index.h"
#include "engine/local/local_store.h"
#include "engine/store/gc_report.h"
#include "engine/store/progress.h"

namespace chunkferry::engine {

class GarbageCollector {
 public:
  enum class Phase { kBegin, kMark, kPlan, kSweep, kCommit, kDone };

  // `store` must be open writable and outlive the collector.
  GarbageCollector(LocalStore& store, GcOptions options);
  // Stops the pinning if the collection did not finish; nothing is left half-done on disk.
  ~GarbageCollector();
  GarbageCollector(const GarbageCollector&) = delete;
  GarbageCollector& operator=(const GarbageCollector&) = delete;

  // Runs the next step. Returns true while steps remain. After an error the collection is over
  // (the store stays consistent; a new collection starts again from the beginning).
  [[nodiscard]] absl::StatusOr<bool> Step();
  // Runs every remaining step, reporting progress ("gc-mark", "gc-sweep").
  [[nodiscard]] absl::Status Run(const ProgressFn* progress = nullptr);

  Phase phase() const { return phase_; }
  const GcStats& stats() const { return stats_; }

 private:
  // What Plan decided for one pack that existed at Begin.
  struct PackPlan {
    uint64_t size = 0;
    uint64_t live_bytes = 0;
    bool protected_ = false;        // holds a record at or past the cutoff: left alone
    std::vector<uint32_t> records;  // its record numbers below the cutoff (candidates only)
    bool rewrite = false;           // else removed whole
    std::vector<uint32_t> copied;   // records relocated by Sweep
    std::vector<RecordLocation> moved_from;  // where each copied record was
  };

  absl::Status Begin();
  absl::StatusOr<bool> MarkStep();  // true when Mark is finished
  // Looks up at most `budget` more entries of the manifest being read (opening it first), and
  // says how many in *used; true when the manifest is finished.
  absl::StatusOr<bool> MarkSome(const std::string& backup_uuid, size_t budget, size_t* used);
  absl::Status MarkManifest(const std::string& backup_uuid);
  // Points the records SweepPack copied back at their old places; returns `why`.
  absl::Status UndoRelocations(PackPlan& plan, absl::Status why);
  absl::Status Plan();
  absl::Status SweepPack(PackPlan& plan);
  absl::Status Commit();
  void Finish();

  LocalStore& store_;
  GcOptions options_;
  Phase phase_ = Phase::kBegin;
  GcStats stats_;
  uint64_t steps_ = 0;
  double started_ = 0;
  size_t cutoff_ = 0;
  std::unique_ptr<RecordBitmap> live_;
  std::vector<std::string> manifests_;  // listed by Mark, in order
  size_t next_manifest_ = 0;
  std::unique_ptr<ManifestReader> reader_;  // the manifest Mark is in the middle of
  uint32_t first_new_pack_ = 0;             // packs from here on were created after Begin
  std::map<uint32_t, PackPlan> plans_;      // candidates: packs to remove or rewrite
  std::map<uint32_t, PackPlan>::iterator sweep_;
  bool pinning_ = false;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_GARBAGE_COLLECTOR_H_
