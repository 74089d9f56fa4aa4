// What a garbage collection is asked to do and what it did, for every kind of store (a local
// store's GarbageCollector, a RADOS store's CollectGarbage): the CLI and the wire report them the
// same way.
#ifndef CHUNKFERRY_ENGINE_STORE_GC_REPORT_H_
#define CHUNKFERRY_ENGINE_STORE_GC_REPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace chunkferry::engine {

struct GcOptions {
  // Packs whose live bytes are below this share of their size are rewritten; packs with no live
  // record are always removed. 0 rewrites nothing (docs/BENCHMARKS.md: how the default was
  // chosen).
  double repack_below = 0.5;
  // Plan only: report what a collection would reclaim, change nothing.
  bool dry_run = false;
  // Manifest entries looked up per Mark step, and live bytes copied per Sweep read (8 MiB: the
  // same speed as 32 MiB, 40 MiB less peak RSS; docs/BENCHMARKS.md).
  size_t mark_batch = 1 << 16;
  size_t copy_batch_bytes = 8 << 20;
  // Called before each step with its number (from 1) and the phase it belongs to, and once
  // more inside Commit between saving the index and removing packs ("unlink"): the crash tests
  // stop the process at each of these points.
  std::function<void(uint64_t step, const std::string& phase)> before_step;
};

struct GcStats {
  uint64_t manifests = 0;          // published manifests read
  uint64_t chunks_referenced = 0;  // manifest entries looked up (holes not counted)
  uint64_t records_total = 0;      // records below the cutoff
  uint64_t records_live = 0;
  uint64_t packs_before = 0;
  uint64_t bytes_before = 0;         // pack bytes when the collection began
  uint64_t packs_removed = 0;        // with no live record
  uint64_t packs_rewritten = 0;      // live records copied, then removed
  uint64_t packs_kept_late_pin = 0;  // planned for removal, kept: a record was used meanwhile
  uint64_t records_copied = 0;
  uint64_t bytes_copied = 0;
  uint64_t bytes_removed = 0;    // pack bytes removed (before subtracting the copies)
  uint64_t bytes_reclaimed = 0;  // bytes_removed - bytes_copied
  uint64_t milliseconds = 0;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_STORE_GC_REPORT_H_
