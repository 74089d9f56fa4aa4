// Restore through the Store interface: a volume backup of any store (a RADOS pool, a daemon, a
// directory) back into a byte-identical image. The local restorer (restorer.h) plans its reads
// from the index it holds; here the store is asked for the records of a window's chunk ids
// (ReadRecordsFor, which for a pool keeps many reads in flight), each batch is decoded and
// verified on all cores as it arrives, and the chunks are copied into the window's output buffer
// in manifest order, so a window goes out in large writes whatever order the records came in.
// Memory: two windows of output plus what the store holds in flight.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_STORE_RESTORER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_STORE_RESTORER_H_

#include <string>

#include "absl/status/status.h"
#include "codec/chunk_id.h"
#include "engine/pipeline/restorer.h"
#include "engine/store/progress.h"
#include "engine/store/store.h"
#include "engine/store/worker_pool.h"
#include "io/queue.h"

namespace chunkferry::engine {

struct StoreRestoreOptions {
  RestoreOptions restore;  // output, overwrite, verify_ids (window: see below)
  // Bytes of chunk data gathered per window: one ReadRecordsFor (for a pool, one batched index
  // lookup) each, so larger than the local restorer's.
  size_t window = 16 << 20;
  io::Backend backend = io::Backend::kAuto;  // for the output's writes
};

// Restores volume backup `backup_uuid` of `store`. `hasher` recomputes every chunk id when
// options.restore.verify_ids (it must then be the store's); else only the stored bytes'
// checksums are checked. A regular output is built as "<output>.partial" and renamed into place
// only when complete. DataLoss when the store hands out a damaged record or not every chunk the
// manifest names.
[[nodiscard]] absl::Status RestoreFromStore(Store& store, const codec::ChunkHasher& hasher,
                                            WorkerPool& pool, const std::string& backup_uuid,
                                            const StoreRestoreOptions& options, RestoreStats* stats,
                                            const ProgressFn* progress = nullptr);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_STORE_RESTORER_H_
