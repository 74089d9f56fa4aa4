// Verify through the Store interface: reads back every chunk that a published volume backup
// names, checks the record that holds it (decompress and recompute every chunk id by default),
// and names the volume backups that a damaged or missing chunk breaks. For stores whose packs
// this process cannot scan as files (a RADOS pool); a local store's VerifyStore (verifier.h)
// checks every record, referenced or not, and the index against the packs as well.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_READBACK_VERIFIER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_READBACK_VERIFIER_H_

#include "absl/status/statusor.h"
#include "codec/chunk_id.h"
#include "engine/pipeline/verifier.h"
#include "engine/store/progress.h"
#include "engine/store/store.h"
#include "engine/store/worker_pool.h"

namespace chunkferry::engine {

// `hasher` makes the store's chunk ids (kFull recomputes them). The report's records, chunks and
// stored_bytes count what was read back; bad_records the records that failed their check;
// bad_chunks the chunks held in a record that failed its check or could not be handed out (what
// RadosStore::ForgetDamagedChunks quarantines: verify --repair). An error only when verification
// itself could not run (the store did not answer).
[[nodiscard]] absl::StatusOr<VerifyReport> VerifyByReadingBack(
    Store& store, const codec::ChunkHasher& hasher, WorkerPool& pool, VerifyMode mode,
    const ProgressFn* progress = nullptr);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_READBACK_VERIFIER_H_
