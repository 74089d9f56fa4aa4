// Import: a raw volume image (file, block device or stdin) becomes a volume backup in a store
// (a local one, or any Store: ImportVolumeInto). The image is read through the io queue a window
// ahead of the work (O_DIRECT where the file system allows it), cut into chunks, hashed and checked
// for zeros on all cores, deduped against the store, grouped into records and compressed on all
// cores, then appended; the manifest is published only after the packs are durable.
#ifndef CHUNKFERRY_ENGINE_PIPELINE_IMPORTER_H_
#define CHUNKFERRY_ENGINE_PIPELINE_IMPORTER_H_

#include <string>

#include "absl/status/statusor.h"
#include "codec/chunk_id.h"
#include "engine/format/volume_backup.h"
#include "engine/local/local_store.h"
#include "engine/store/progress.h"
#include "engine/store/store.h"
#include "engine/store/worker_pool.h"
#include "io/queue.h"

namespace chunkferry::engine {

struct ImportOptions {
  std::string source;        // a path, or "-" for standard input
  VolumeBackupMeta meta;     // uuid may be empty (a new one is made); size is filled in
  size_t window = 8 << 20;   // bytes of image worked on at once (a multiple of 1 MiB)
  bool add_to_group = true;  // also publish/extend the group record
};

struct ImportStats {
  uint64_t bytes_read = 0;
  uint64_t chunks = 0;
  uint64_t zero_chunks = 0;
  uint64_t zero_bytes = 0;
  uint64_t duplicate_chunks = 0;  // already in the store (or earlier in this image)
  uint64_t new_chunks = 0;
  uint64_t new_raw_bytes = 0;
  uint64_t records = 0;
  uint64_t stored_bytes = 0;  // record bytes appended to packs
  bool direct_io = false;
  double seconds = 0;
};

// Imports one volume. On error the store is rolled back to where it was and no manifest or
// group changes. Returns the metadata of the new volume backup.
[[nodiscard]] absl::StatusOr<VolumeBackupMeta> ImportVolume(LocalStore& store, WorkerPool& pool,
                                                            const ImportOptions& options,
                                                            ImportStats* stats,
                                                            const ProgressFn* progress = nullptr);

// Imports one volume into any store (a RADOS pool): the store is asked which chunks it holds once
// per window (HaveChunks), records go through AppendRecords (checked by checksum: encoded here),
// the manifest waits in a temporary file until the records are durable and is then sent with
// PutManifest. `hasher` must be the store's. On error nothing is published; records appended
// are garbage for the store's next collection. `backend` reads the image.
[[nodiscard]] absl::StatusOr<VolumeBackupMeta> ImportVolumeInto(
    Store& store, const codec::ChunkHasher& hasher, WorkerPool& pool, io::Backend backend,
    const ImportOptions& options, ImportStats* stats, const ProgressFn* progress = nullptr);

// Adds a volume backup to its group record (creating it), keeping the Root volume first. The only
// way a published group changes: it grows by the volume (Store::GrowGroup).
[[nodiscard]] absl::Status AddToGroup(Store& store, const VolumeBackupMeta& meta);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_PIPELINE_IMPORTER_H_
