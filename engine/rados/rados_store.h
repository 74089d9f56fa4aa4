// An image store in a Ceph RADOS pool (rados:POOL[/NAMESPACE]), behind the Store interface, so that
// the copier and every command that takes a store take it too. Layout in rados_layout.h and
// docs/FORMATS.md ("RADOS store").
//
// Several writers on other nodes may use one pool at once; nothing here relies on a local
// filesystem:
//   - packs and manifest parts get write-once names (an exclusive create; a name taken by another
//     writer is retried under a new one), written whole, and "durable" is the cluster's write
//     completion (acknowledged by every replica);
//   - index entries are written only after their pack is durable, manifests only name chunks the
//     index holds, and a manifest or group is published by one change of the catalog, made as a
//     compare-and-write on the catalog object's version (retried when another writer changed it
//     meanwhile): records durable → manifest → group, as in a local store;
//   - writers share the lock "write" on chunkferry.lock (renewed while they live, expiring when
//     they die; a daemon's store only while a client writes through it: lock_on_demand); a
//     garbage collection takes it alone, so it never runs beside a writer.
//
// Appends: records are checked (VerifyMode) on the worker pool, copied once into the open pack
// buffer (RadosStoreOptions::pack_target), and a full pack is written with many in flight while
// the caller goes on. Chunks appended and not yet indexed are kept in memory (at most about
// index_batch of them: past that, the entries of durable packs are indexed before Flush).
//
// Not thread-safe (Store): one thread drives a RadosStore at a time.
#ifndef CHUNKFERRY_ENGINE_RADOS_RADOS_STORE_H_
#define CHUNKFERRY_ENGINE_RADOS_RADOS_STORE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "codec/compressor.h"
#include "engine/rados/rados_aio.h"
#include "engine/rados/rados_cluster.h"
#include "engine/rados/rados_layout.h"
#include "engine/store/gc_report.h"
#include "engine/store/store.h"
#include "engine/store/worker_pool.h"

namespace chunkferry::engine::rados {

struct RadosStoreOptions {
  RadosClientOptions client;
  bool writable = true;        // takes the shared write lock
  WorkerPool* pool = nullptr;  // checks received records in parallel; not owned
  // Bytes of records a pack object holds before the next one starts (a larger record goes alone).
  // 16 MiB: on the test cluster 16 MiB objects wrote 790 MB/s against 510 MB/s for 4 MiB ones at
  // the same 16 in flight (docs/BENCHMARKS.md).
  uint32_t pack_target = 16u << 20;
  size_t packs_in_flight = 4;
  // Chunks appended past which the entries of durable packs are indexed before a Flush.
  size_t index_batch = 1u << 16;
  // Index reads in flight in a batched lookup, and ids per read.
  size_t lookups_in_flight = 64;
  size_t ids_per_lookup = 4096;
  // Chunks this store remembers as held (answered "have", or indexed by it), so that PutManifest
  // need not look them up again: sound because no collection runs while the write lock is held,
  // and nothing else removes index entries. About 20 bytes each; past this many, PutManifest looks
  // up the rest.
  size_t vouch_max = 1u << 21;
  // Pack ranges read in flight by ReadRecordsFor.
  size_t reads_in_flight = 16;
  // How long the write lock lasts unless renewed (every third of it, by a thread of its own).
  uint32_t lock_seconds = 60;
  // Take the lock alone (a garbage collection): fails while any writer holds it, and keeps
  // writers out until Close().
  bool exclusive = false;
  // Writable, but the (shared) write lock is taken by BeginWrites and given back by the matching
  // last EndWrites, instead of held from Open to Close: a daemon that serves the pool for weeks
  // then keeps a collection out only while some client writes through it.
  bool lock_on_demand = false;
  // A collection removes an unreferenced pack or manifest part only once it is this old: what a
  // writer whose lock ran out while it stalled may still name (it checks its lock before it
  // indexes or publishes anything, so it fails rather than naming a removed object).
  uint32_t gc_grace_seconds = 120;
  // Tests only: runs in ReadRecordsFor between the index lookup and the reads, where a collection
  // on another node may move the records looked up.
  std::function<void()> after_lookup_for_test;
};

struct RadosInitOptions {
  uint32_t index_shards = kDefaultIndexShards;
  // The pool the packs go to, in the same namespace (empty: the URL's pool). For an erasure-coded
  // pool: the index, catalog, lock and manifests are omap and small objects, which stay on the
  // URL's replicated pool; packs are written whole, once, which EC pools take without overwrites.
  std::string data_pool;
};

class RadosStore final : public Store {
 public:
  // Creates a store in `url`'s pool and namespace, which must hold none yet (AlreadyExists).
  [[nodiscard]] static absl::Status Init(const RadosUrl& url, const RadosClientOptions& client,
                                         const StoreInitOptions& options,
                                         const RadosInitOptions& rados = {});
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RadosStore>> Open(
      const RadosUrl& url, const RadosStoreOptions& options);
  // Closes (see Close()); errors are lost.
  ~RadosStore() override;
  RadosStore(const RadosStore&) = delete;
  RadosStore& operator=(const RadosStore&) = delete;

  // Flushes what was appended and releases the write lock.
  [[nodiscard]] absl::Status Close() override;

  // With lock_on_demand: spans in which this store writes. They nest (a count): the first
  // BeginWrites takes the shared write lock (FailedPrecondition naming the holder while a
  // collection runs), the last EndWrites flushes and gives it back. Outside a span, appends,
  // publications and deletes are FailedPrecondition. Without lock_on_demand both do nothing.
  [[nodiscard]] absl::Status BeginWrites();
  [[nodiscard]] absl::Status EndWrites();

  // Store interface.
  const StoreInfo& info() const override { return info_; }
  const std::string& location() const override { return pool_->location(); }
  absl::Status HaveChunks(absl::Span<const codec::ChunkId> ids, std::vector<bool>* have) override;
  absl::Status ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                              const RecordSink& sink) override;
  absl::Status AppendRecords(absl::Span<const absl::Span<const uint8_t>> records, VerifyMode mode,
                             AppendStats* stats) override;
  absl::Status Flush() override;
  absl::Status PutManifest(const VolumeBackupMeta& meta, ManifestSource& entries) override;
  // Chunks of entries equal to those of base_uuid's manifest as this store published it (the
  // caller's `base` only says there is one; none published here: PutManifest) are not looked up
  // again, so an incremental sync's lookups stay with its new chunks.
  absl::Status PutManifestWithBase(const VolumeBackupMeta& meta, ManifestSource& entries,
                                   ManifestSource* base, const std::string& base_uuid) override;
  bool ManifestsAreLocal() const override { return false; }
  absl::StatusOr<std::unique_ptr<ManifestSource>> OpenManifest(
      const std::string& backup_uuid) override;
  absl::Status PutGroup(const GroupRecord& group) override;
  absl::Status GrowGroup(const GroupRecord& group) override;
  absl::StatusOr<GroupRecord> GetGroup(const std::string& group_uuid) override;
  absl::StatusOr<std::vector<std::string>> ListGroups() override;
  absl::StatusOr<std::vector<std::string>> ListBackups() override;
  absl::StatusOr<DeleteResult> DeleteGroup(const std::string& group_uuid) override;
  absl::StatusOr<DeleteResult> DeleteBackup(const std::string& backup_uuid) override;

  // Collects garbage: index entries of chunks no published manifest names, packs none of whose
  // records the index names, packs whose live share is below options.repack_below (their live
  // records rewritten into new packs first), and manifest parts the catalog does not name. Needs
  // the store opened with `exclusive`. Memory: 16 bytes per chunk that manifests name, plus the
  // live records' locations. (GcOptions::mark_batch, copy_batch_bytes, before_step: unused.)
  [[nodiscard]] absl::StatusOr<GcStats> CollectGarbage(const GcOptions& options);

  // The pool's quarantine (verify --repair): removes the index entries of `ids` whose record,
  // read and checked again here (`mode`), fails its check or cannot be read, so that those chunks
  // count as absent and the next sync, import or repair brings good copies. An entry that changed
  // meanwhile is left. Returns how many records lost their entries. Needs the write lock.
  [[nodiscard]] absl::StatusOr<uint64_t> ForgetDamagedChunks(absl::Span<const codec::ChunkId> ids,
                                                             VerifyMode mode);

  // From the catalog alone: no manifest is read.
  absl::StatusOr<std::vector<VolumeBackupMeta>> ListBackupMetas(
      const std::function<bool(const std::string& uuid)>& wanted) override;

  const codec::ChunkHasher& hasher() const { return hasher_; }
  uint32_t index_shards() const { return index_shards_; }
  RadosPool& rados() { return *pool_; }
  // Packs written whole by this store since it was opened (tests, benchmarks).
  uint64_t packs_written() const { return packs_written_; }
  // Reads looked up again because a collection had moved their records meanwhile (tests).
  uint64_t reads_retried() const { return reads_retried_; }
  // Chunks looked up in the index to publish manifests (tests: what a base spared).
  uint64_t manifest_lookups() const { return manifest_lookups_; }

 private:
  // A pack being filled or written: its bytes (header and records) and the index entries of the
  // chunks it brings.
  struct PackWrite {
    uint32_t id = 0;
    std::string bytes;
    std::vector<std::pair<codec::ChunkId, RecordLocation>> entries;
    librados::AioCompletion* completion = nullptr;
  };
  // The catalog at one version: what a compare-and-write reads before it writes.
  struct CatalogView {
    uint64_t version = 0;
    std::map<std::string, std::string> values;  // the keys asked for that exist
  };
  // Fills `op` from `view` and sets *write when there is something to write; an error stops.
  using CatalogChange = std::function<absl::Status(
      const CatalogView& view, librados::ObjectWriteOperation* op, bool* write)>;

  RadosStore(std::unique_ptr<RadosPool> pool, RadosStoreOptions options);
  absl::Status CheckWritable() const;
  absl::Status TakeWriteLock();
  // Renews the lock and fails when it was lost (it ran out while this process stalled, and a
  // collection may have run): what writers check before they index or publish anything.
  absl::Status CheckLockHeld();
  int RenewLock(librados::IoCtx& io);
  void RenewLoop();
  void StopRenewing();

  enum class RecordCheck { kIntact, kDamaged };
  // Reads the record at `loc` and checks it (`mode`) and that it holds `id`.
  absl::StatusOr<RecordCheck> CheckStoredRecord(const RecordLocation& loc, const codec::ChunkId& id,
                                                VerifyMode mode);
  // Index lookups, many in flight: found[i] is where ids[i]'s record is, when the index has it.
  absl::Status Lookup(absl::Span<const codec::ChunkId> ids,
                      std::vector<std::optional<RecordLocation>>* found);
  // One lookup of `ids` and the reads of their records into `sink`. The ids whose pack was gone
  // when read go to *moved (to be looked up again), unless `last_try`: then that is DataLoss.
  absl::Status ReadLookedUp(absl::Span<const codec::ChunkId> ids, const RecordSink& sink,
                            bool last_try, std::vector<codec::ChunkId>* moved);
  // How often ReadRecordsFor looks up again ids whose pack a collection removed meanwhile: each
  // time means another collection ran between a lookup and its read.
  static constexpr int kReadRetries = 3;

  uint32_t NewPackId();
  absl::Status StartPack();
  absl::Status SubmitPack(PackWrite& pack);
  // Writes the open pack out (when it holds records).
  absl::Status SealPack();
  // Waits for the oldest pack in flight and moves its entries on to be indexed.
  absl::Status ReapPack();
  // Index writes: StartIndexWrite sends the entries of durable packs (unindexed_) as one batch,
  // FinishIndexWrite waits for it; WriteIndex finishes the batch before and starts the next.
  absl::Status StartIndexWrite();
  absl::Status FinishIndexWrite();
  absl::Status WriteIndex();
  absl::Status FlushImpl();
  // Only under the write lock: a chunk vouched for without it could be collected before a
  // manifest that trusts the vouch is published.
  void Vouch(const codec::ChunkId& id) {
    if (locked_ && vouched_.size() < options_.vouch_max) vouched_.insert(id);
  }
  // FailedPrecondition when a write comes outside a BeginWrites span (lock_on_demand).
  absl::Status CheckWriting() const;
  // Stops renewing and gives the write lock back; forgets what was vouched for under it.
  void ReleaseWriteLock();
  // Drops everything appended since the last Flush (after an error): nothing names it, a
  // collection removes what reached the pool.
  void DropUnflushed();

  // Catalog reads and compare-and-writes.
  absl::StatusOr<CatalogView> ReadCatalogKeys(const std::set<std::string>& keys);
  // Every pair whose key starts with `prefix`, all read at one version.
  absl::StatusOr<CatalogView> ReadCatalogPrefix(absl::string_view prefix);
  // Reads with `read`, lets `change` fill the write, and writes it only if the catalog is still
  // at the version read; again from the read when another writer came between.
  // PutGroup, or with `grow` GrowGroup: one compare-and-write of the catalog.
  absl::Status PublishGroup(const GroupRecord& group, bool grow);
  absl::Status ChangeCatalog(const std::function<absl::StatusOr<CatalogView>()>& read,
                             const CatalogChange& change);
  absl::StatusOr<ManifestRef> GetManifestRef(const std::string& backup_uuid);
  absl::Status UploadManifest(const std::string& path, const std::string& backup_uuid,
                              ManifestRef* ref);
  absl::Status RemoveManifestParts(const std::string& backup_uuid, const ManifestRef& ref);
  // FailedPrecondition when `entries` names a chunk the index lacks; entries equal to `base`'s
  // (a manifest published here) at the same offset are not looked up.
  absl::Status CheckChunksDurable(const VolumeBackupMeta& meta, ManifestSource& entries,
                                  ManifestSource* base);
  // PutManifest, trusting `base` (when not null) as CheckChunksDurable does.
  absl::Status PublishManifest(const VolumeBackupMeta& meta, ManifestSource& entries,
                               ManifestSource* base);
  absl::Status FinishDelete(const std::string& deleting_key);
  absl::Status FinishInterruptedDeletes();
  absl::StatusOr<DeleteResult> Delete(DeleteKind kind, const std::string& uuid);

  std::unique_ptr<RadosPool> pool_;
  RadosStoreOptions options_;
  StoreInfo info_;
  codec::ChunkHasher hasher_;
  uint32_t index_shards_ = kDefaultIndexShards;
  bool closed_ = false;
  std::mt19937_64 random_;

  std::optional<PackWrite> open_pack_;
  std::deque<PackWrite> in_flight_;
  std::vector<std::string> spare_buffers_;
  std::vector<std::pair<codec::ChunkId, RecordLocation>> unindexed_;  // in durable packs
  struct IndexWrite {
    std::vector<std::pair<codec::ChunkId, RecordLocation>> entries;
    std::string values;                           // what the writes' bufferlists point into
    std::deque<std::pair<uint32_t, Aio>> writes;  // shard, its omap_set
    absl::Status status;
  };
  std::optional<IndexWrite> index_write_;          // the batch in flight
  absl::flat_hash_set<codec::ChunkId> unflushed_;  // appended, not yet in the index
  absl::flat_hash_set<codec::ChunkId> vouched_;    // in the index, seen by this store (vouch_max)
  absl::Status failed_;  // an asynchronous write's error, returned by the next call
  uint64_t packs_written_ = 0;
  uint64_t reads_retried_ = 0;
  uint64_t manifest_lookups_ = 0;

  std::vector<codec::Decompressor> decompressors_;  // one per pool slot
  std::vector<std::vector<uint8_t>> scratch_;

  // The write lock, renewed by renewer_ until StopRenewing().
  std::string lock_cookie_;
  bool locked_ = false;
  size_t write_spans_ = 0;   // BeginWrites not yet ended (lock_on_demand)
  librados::IoCtx lock_io_;  // the renewer's own handle on the pool
  std::mutex renew_mu_;
  std::condition_variable renew_cv_;
  bool stop_renewing_ = false;
  std::atomic<bool> lock_lost_{false};
  std::thread renewer_;
};

}  // namespace chunkferry::engine::rados

#endif  // CHUNKFERRY_ENGINE_RADOS_RADOS_STORE_H_
