// Restore: a volume backup back into a byte-identical image. Records are read through the
// store's queue a window at a time (the next window's already prefetched by the kernel), decoded
// and verified on all cores, and written through a second queue in large direct writes while
// later windows are read (four windows in memory at most; the output is image_writer.h); zero
// runs stay holes in a regular file.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_RESTORER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_RESTORER_H_

#include <string>

#include "absl/status/status.h"
#include "engine/local/local_store.h"
#include "engine/store/progress.h"
#include "engine/store/worker_pool.h"

namespace chunkferry::engine {

struct RestoreOptions {
  std::string output;           // a path, or "-" for standard output
  bool overwrite = false;       // replace an existing file
  bool verify_ids = true;       // recompute every chunk id (else: stored-bytes checksum only)
  size_t window = 8 << 20;      // bytes of output worked on at once
  size_t window_records = 128;  // and at most this many distinct records (bounds memory when
                                // deduped chunks pull in records for a few chunks each)
};

struct RestoreStats {
  uint64_t bytes = 0;       // size of the image
  uint64_t data_bytes = 0;  // bytes written
  uint64_t hole_bytes = 0;  // bytes left as holes (written as zeros to standard output)
  uint64_t records_read = 0;
  uint64_t stored_bytes = 0;  // of the records read
  double seconds = 0;
};

// Restores volume backup `backup_uuid`. A regular output is built as "<output>.partial" and
// renamed into place only when complete, so a failure leaves no half image behind.
[[nodiscard]] absl::Status RestoreVolume(LocalStore& store, WorkerPool& pool,
                                         const std::string& backup_uuid,
                                         const RestoreOptions& options, RestoreStats* stats,
                                         const ProgressFn* progress = nullptr);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_RESTORER_H_
