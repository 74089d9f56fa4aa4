// What the store daemon serves: a local store, or any other Store (a RADOS pool, so that several
// stateless daemons can front one pool). The session (store_session.h) makes every request through
// this; what differs between the two is here:
//   - appends: a local store takes records the session checked as they are; any other store gets
//     them through AppendRecords (checksum-checked once more, cheaply);
//   - reads: a local store's reads are prepared under the server's mutex and done without it, on
//     the connection's own queue; any other store is read under the mutex, a bounded slice of
//     ids at a time copied out, and sent without it;
//   - manifests are streamed from a local store's file, or written from the store into a
//     temporary file first;
//   - a collection of a local store runs step by step in the daemon; a pool is collected by
//     `chunkferry gc --store rados:...` on any node (it takes the pool alone), not through one of
//     its daemons.
#ifndef CHUNKFERRY_ENGINE_WIRE_SERVED_STORE_H_
#define CHUNKFERRY_ENGINE_WIRE_SERVED_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "codec/record.h"
#include "engine/local/local_store.h"
#include "engine/store/scratch_manifest.h"
#include "engine/store/store.h"
#include "io/queue.h"

namespace chunkferry::engine {

// One connection's READs: state a connection keeps between them (queues, buffers).
class ServedReader {
 public:
  virtual ~ServedReader() = default;
  // Hands the records holding `ids` to `sink` (each record once), taking `store_mu` only while
  // the store itself is used: `sink` runs without it, so a slow reader holds up no other
  // connection.
  [[nodiscard]] virtual absl::Status Read(absl::Span<const codec::ChunkId> ids,
                                          std::mutex& store_mu, const Store::RecordSink& sink) = 0;
};

class ServedStore {
 public:
  virtual ~ServedStore() = default;

  // The Store calls (HaveChunks, Flush, PutManifest, groups, listings, deletes): under the
  // server's mutex.
  virtual Store& store() = 0;
  // Recomputes chunk ids for the session's full checks.
  virtual const codec::ChunkHasher& hasher() const = 0;

  // Appends records the session has checked (`views[i]` parses `records[i]`). Under the mutex.
  [[nodiscard]] virtual absl::Status AppendChecked(
      absl::Span<const absl::Span<const uint8_t>> records,
      absl::Span<const codec::RecordView> views, AppendStats* stats) = 0;
  // A session's writing span, from its first request that may change the store (HAVE, APPEND,
  // FLUSH, PUT_MANIFEST(_DELTA), PUT_GROUP, DELETE) to its end: a local store keeps what the
  // session appends out of a collection's reach meanwhile; a pool's store holds the pool's write
  // lock (RadosStore lock_on_demand), which fails while a collection runs. Returns what
  // EndWrites takes. Under the mutex.
  [[nodiscard]] virtual absl::StatusOr<uint64_t> BeginWrites() = 0;
  virtual void EndWrites(uint64_t span) = 0;

  // A new path for a received manifest (the caller removes it). Under the mutex.
  virtual std::string NewTmpPath(absl::string_view what) = 0;
  // The base of a PUT_MANIFEST_DELTA. Under the mutex. NotFound when the store lacks it.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<ManifestSource>> OpenBase(
      const std::string& backup_uuid) {
    return store().OpenManifest(backup_uuid);
  }
  // Bytes of the published manifest of `backup_uuid` (what a PUT_MANIFEST added, for quotas); 0
  // when the store cannot tell cheaply.
  virtual uint64_t ManifestBytes(const std::string& backup_uuid) = 0;
  // A file holding the published manifest of `backup_uuid` in the manifest format, for
  // OPEN_MANIFEST. Takes `store_mu` itself, only as long as the store is used. NotFound when the
  // store lacks it.
  struct ManifestFile {
    std::string path;
    std::optional<ScratchDir> scratch;  // when `path` is a copy in it, removed with it
  };
  [[nodiscard]] virtual absl::StatusOr<ManifestFile> OpenManifestFile(
      const std::string& backup_uuid, std::mutex& store_mu) = 0;

  // A reader for one connection; `backend` for the queues it may make.
  virtual std::unique_ptr<ServedReader> NewReader(io::Backend backend) = 0;

  // The local store a collection runs on, or null when the daemon cannot collect this store.
  virtual LocalStore* collectable() { return nullptr; }
};

// Serves `store` (not owned).
std::unique_ptr<ServedStore> ServeLocalStore(LocalStore& store);
// How a store other than a local one marks the spans in which sessions write (the first begin
// and the last end of overlapping sessions): RadosStore::BeginWrites / EndWrites. Empty: nothing.
struct WriteSpanHooks {
  std::function<absl::Status()> begin;
  std::function<absl::Status()> end;
};
// Serves any other store (not owned); `hasher` must be the store's. Fails when no scratch
// directory can be made for the manifests passing through.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ServedStore>> ServeAnyStore(
    Store& store, const codec::ChunkHasher& hasher, WriteSpanHooks hooks = {});

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_SERVED_STORE_H_
