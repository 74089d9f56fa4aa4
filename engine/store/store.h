// The Store interface: what the copier needs from any image store, local (a directory) or
// remote (a daemon on another node, reached through the wire protocol). The copier only talks to
// this interface, so one pipeline copies from any store to any store.
#ifndef CHUNKFERRY_ENGINE_STORE_STORE_H_
#define CHUNKFERRY_ENGINE_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "codec/chunker.h"
#include "engine/format/manifest.h"
#include "engine/format/volume_backup.h"

namespace chunkferry::engine {

// What a new store is made with (`store init`), whatever kind of store it is.
struct StoreInitOptions {
  codec::ChunkerSpec chunker;  // default fixed 4 KiB: see docs/FORMATS.md
  int zstd_level = 1;
  uint32_t record_target = 64 << 10;
  std::string id_key_hex;  // empty: unkeyed ids
  std::string uuid;        // empty: a new random uuid
};

// How a receiving store checks a record before accepting it.
enum class VerifyMode : uint8_t {
  kFull,      // decompress and recompute every chunk id (the default)
  kChecksum,  // check the stored bytes against the record's checksum only
};

struct StoreInfo {
  std::string uuid;
  codec::ChunkerSpec chunker;
  int zstd_level = 1;
  uint32_t record_target = 64 << 10;  // raw bytes grouped into one record
  uint64_t key_fingerprint = 0;       // 0: unkeyed chunk ids
};

struct AppendStats {
  uint64_t records_received = 0;
  uint64_t records_appended = 0;  // the rest held only chunks the store already had
  uint64_t bytes_appended = 0;
  uint64_t chunks_added = 0;
};

// What a delete removes: a group (with its volume backups) or one volume backup.
enum class DeleteKind : uint8_t { kGroup = 0, kBackup = 1 };

// What a delete removed.
struct DeleteResult {
  std::vector<std::string> groups_removed;
  std::vector<std::string> backups_removed;
  // Volume backups of a deleted group that another group names too, so left in place.
  std::vector<std::string> backups_kept;
};

// An image store. Implementations are not thread-safe: one thread drives a Store at a time.
class Store {
 public:
  virtual ~Store() = default;

  virtual const StoreInfo& info() const = 0;
  // Makes what was appended durable and lets the store go (locks, connections); later calls fail.
  // Destroying a store closes it too, but loses the error. A store that holds nothing to finish
  // (a remote one, whose daemon keeps its own) has nothing to report.
  [[nodiscard]] virtual absl::Status Close() { return absl::OkStatus(); }
  // Where the store is (a path or an address), for messages.
  virtual const std::string& location() const = 0;

  // Sets have[i] to whether the store holds ids[i]. Answered from the index: no pack is read.
  [[nodiscard]] virtual absl::Status HaveChunks(absl::Span<const codec::ChunkId> ids,
                                                std::vector<bool>* have) = 0;

  // A have-query asked ahead of its answer (AskHave).
  class HaveQuery {
   public:
    virtual ~HaveQuery() = default;
    // Sets have[i] to the answer for the query's ids[i]: whether the store held it when the
    // query was asked (records appended since may hold more).
    [[nodiscard]] virtual absl::Status Wait(std::vector<bool>* have) = 0;
  };
  // HaveChunks(ids) asked now and answered by Wait(), so that a store across a network answers
  // while its caller goes on (sends the records of the query before, say): a daemon's gets the
  // question now. The default answers at once. `ids` need not outlive the call.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<HaveQuery>> AskHave(
      absl::Span<const codec::ChunkId> ids);

  using RecordSink =
      std::function<absl::Status(absl::Span<const absl::Span<const uint8_t>> records)>;
  // Streams the records that hold `ids`, each record once, in an order the store picks for fast
  // reads, in batches as they arrive. `sink` runs on the calling thread; the bytes are valid only
  // during the call. An id the store lacks is NotFound; an error from `sink` stops the stream
  // and is returned.
  [[nodiscard]] virtual absl::Status ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                                                    const RecordSink& sink) = 0;

  // Receives records, checks every one (`mode`), and appends those holding chunks the store
  // lacks. The checks may run after the call returns (a remote store's do, so that the caller's
  // I/O goes on meanwhile): a record that fails them makes this call, a later one or Flush()
  // return the error, and then no record from its batch on is appended; earlier batches stay.
  // (A batch: one call; a local store takes a call of more than 16 MiB in parts of up to 16 MiB,
  // each a batch.) Chunks of records received but not yet checked count as held for
  // HaveChunks(). Not durable until Flush(). `stats` must stay valid until Flush().
  [[nodiscard]] virtual absl::Status AppendRecords(
      absl::Span<const absl::Span<const uint8_t>> records, VerifyMode mode, AppendStats* stats) = 0;

  // Finishes the checks of received records and makes every appended record durable.
  [[nodiscard]] virtual absl::Status Flush() = 0;

  // Writes the manifest of one volume backup from `entries` (its meta comes from `meta`). Every
  // chunk it names must already be durable in this store (FailedPrecondition otherwise).
  [[nodiscard]] virtual absl::Status PutManifest(const VolumeBackupMeta& meta,
                                                 ManifestSource& entries) = 0;
  // As PutManifest, where `base` (when not null) holds the entries of volume backup `base_uuid`,
  // which this store holds too: a store reached over a network may send only the difference
  // (RemoteStore: PUT_MANIFEST_DELTA, falling back to the whole manifest). The result is the
  // same manifest. Rewinds both sources as it needs.
  [[nodiscard]] virtual absl::Status PutManifestWithBase(const VolumeBackupMeta& meta,
                                                         ManifestSource& entries,
                                                         ManifestSource* base,
                                                         const std::string& base_uuid) {
    (void)base;
    (void)base_uuid;
    return PutManifest(meta, entries);
  }
  // True when OpenManifest is cheap (a local file): the copier then reads extra manifests of
  // this store to find bases for a destination that is not.
  virtual bool ManifestsAreLocal() const { return true; }
  // NotFound when the store has no such volume backup.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<ManifestSource>> OpenManifest(
      const std::string& backup_uuid) = 0;

  // Publishes a group; every volume it names must have a manifest here.
  [[nodiscard]] virtual absl::Status PutGroup(const GroupRecord& group) = 0;
  // Publishes `group` when its group has no record yet; else grows the published record by
  // volumes (GroupOnlyGrows: same VM and date, every volume still named, the old ones in their
  // old order): how an import builds a group one volume at a time. Anything else is
  // AlreadyExists, as for PutGroup. Unimplemented by a store that cannot (a daemon).
  [[nodiscard]] virtual absl::Status GrowGroup(const GroupRecord& group) {
    (void)group;
    return absl::UnimplementedError(
        absl::StrCat("store ", location(), " cannot grow a published group"));
  }
  // NotFound when the store has no such group.
  [[nodiscard]] virtual absl::StatusOr<GroupRecord> GetGroup(const std::string& group_uuid) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListGroups() = 0;
  // Every volume backup the store holds, whether a group names it or not (one synced alone).
  // Unimplemented from a daemon too old to tell.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListBackups() = 0;
  // The metas of the volume backups ListBackups names that `wanted` (called with each uuid)
  // accepts; one deleted meanwhile is left out. Here each is read from its manifest (a daemon
  // sends it whole: ask only for those needed); a store that keeps metas apart answers without
  // reading manifests (a pool, from its catalog). Unimplemented as ListBackups is.
  [[nodiscard]] virtual absl::StatusOr<std::vector<VolumeBackupMeta>> ListBackupMetas(
      const std::function<bool(const std::string& uuid)>& wanted);

  // Deletes group `group_uuid` and the volume backups it names (those that no other group names
  // too). The group is unreachable when this returns, whatever happens after; a crash part way
  // is finished by the store's next writable open. Chunks stay until a garbage collection.
  // NotFound when the store has no such group.
  [[nodiscard]] virtual absl::StatusOr<DeleteResult> DeleteGroup(const std::string& group_uuid) = 0;
  // Deletes one volume backup that no group names. FailedPrecondition naming the group when one
  // does; NotFound when the store has no such backup.
  [[nodiscard]] virtual absl::StatusOr<DeleteResult> DeleteBackup(
      const std::string& backup_uuid) = 0;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_STORE_STORE_H_
