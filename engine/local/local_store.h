// A local image store: a directory of append-only pack files, a chunk index, volume manifests
// and group records (docs/FORMATS.md). One writer at a time (a lock file, with a clear error for
// the second); readers need no lock and see only what was committed.
//
//   STORE           descriptor (text): format, version, uuid, chunker, zstd level, record size
//   ID_KEY          optional: the secret that keys chunk ids (hex, mode 0600)
//   LOCK            flock(2)ed by the writer; holds its pid
//   packs/*.pack    chunk records
//   index/STATE, index/records, index/*.run  the chunk index (chunk_index.h)
//   volumes/<uuid>.manifest, groups/<uuid>.group, tmp/
//   deleting/<uuid>.group  a group being deleted (local_store_delete.cc)
#ifndef CHUNKFERRY_ENGINE_LOCAL_LOCAL_STORE_H_
#define CHUNKFERRY_ENGINE_LOCAL_LOCAL_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "codec/chunk_id.h"
#include "codec/compressor.h"
#include "engine/local/chunk_index.h"
#include "engine/store/store.h"
#include "engine/store/worker_pool.h"
#include "io/buffer.h"
#include "io/fd.h"
#include "io/queue.h"

namespace chunkferry::engine {

struct LocalStoreOptions {
  bool writable = true;  // takes the lock; cuts torn pack tails back
  io::QueueOptions queue;
  WorkerPool* pool = nullptr;         // for checking received records in parallel; not owned
  uint64_t pack_target = 1ull << 30;  // start a new pack past this size
  ChunkIndexOptions index;            // the memory the chunk index may use
  // ReadRecords (and so ReadRecordsFor) bypass the page cache (O_DIRECT where the file system
  // allows it). For a sender whose pace the network and the receiver set, not the disk (a sync
  // to a daemon or a pool): there a buffered read costs a kernel copy per byte, the largest part of
  // a sync client's CPU (docs/BENCHMARKS.md). A local copy stays faster buffered (readahead).
  bool direct_reads = false;
};

// What opening found and repaired.
struct OpenReport {
  bool index_rebuilt = false;
  std::string index_problem;                 // why it was rebuilt, when it was
  uint64_t tail_records_recovered = 0;       // records found past what the index covers
  std::vector<std::string> torn_tails_cut;   // "pack:offset..size" cut back
  std::vector<std::string> damaged_regions;  // "pack:begin..end" left for verify to report
};

class LocalStore final : public Store {
 public:
  // Creates an empty store in `dir` (created if missing; must be empty if it exists).
  [[nodiscard]] static absl::Status Init(const std::string& dir, const StoreInitOptions& options);
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LocalStore>> Open(
      const std::string& dir, const LocalStoreOptions& options);
  // Closes (see Close()); errors are lost, call Close() to see them.
  ~LocalStore() override;

  // Makes appended records durable, saves the index and releases the lock. After a failed write
  // the store is rolled back to its last durable state instead.
  [[nodiscard]] absl::Status Close() override;

  // Store interface.
  const StoreInfo& info() const override { return info_; }
  const std::string& location() const override { return dir_; }
  absl::Status HaveChunks(absl::Span<const codec::ChunkId> ids, std::vector<bool>* have) override;
  absl::Status ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                              const RecordSink& sink) override;
  absl::Status AppendRecords(absl::Span<const absl::Span<const uint8_t>> records, VerifyMode mode,
                             AppendStats* stats) override;
  absl::Status Flush() override;
  absl::Status PutManifest(const VolumeBackupMeta& meta, ManifestSource& entries) override;
  absl::StatusOr<std::unique_ptr<ManifestSource>> OpenManifest(
      const std::string& backup_uuid) override;
  absl::Status PutGroup(const GroupRecord& group) override;
  absl::StatusOr<GroupRecord> GetGroup(const std::string& group_uuid) override;
  absl::StatusOr<std::vector<std::string>> ListGroups() override;
  absl::StatusOr<std::vector<std::string>> ListBackups() override { return ListManifests(); }
  absl::StatusOr<DeleteResult> DeleteGroup(const std::string& group_uuid) override;
  absl::StatusOr<DeleteResult> DeleteBackup(const std::string& backup_uuid) override;

  absl::Status GrowGroup(const GroupRecord& group) override;

  // Local-only operations used by import, restore and verify.
  const codec::ChunkHasher& hasher() const { return hasher_; }
  const ChunkIndex& index() const { return index_; }
  const OpenReport& open_report() const { return report_; }
  io::Queue& queue() { return *queue_; }

  // Appends one record (`bytes`, parsed as `view`) that this process encoded or already checked,
  // and indexes its chunks. The bytes are copied; not durable until Flush().
  [[nodiscard]] absl::StatusOr<RecordLocation> AppendRecord(absl::Span<const uint8_t> bytes,
                                                            const codec::RecordView& view);

  // Appends records that the caller has already checked (codec::CheckReceivedRecord: `views[i]`
  // parses `records[i]`), each only when it holds a chunk the store lacks, and counts them in
  // `stats` (may be null) as AppendRecords does. The bytes are copied; not durable until Flush().
  // This lets a server check records on its own threads, then append them in one short call.
  // A write error stops the call, and (as for every writer here) rolls the store back to its
  // last Flush: what any caller appended since is dropped, and the next call starts afresh.
  [[nodiscard]] absl::Status AppendCheckedRecords(
      absl::Span<const absl::Span<const uint8_t>> records,
      absl::Span<const codec::RecordView> views, AppendStats* stats);

  struct LocatedRecord {
    size_t index;                     // in the `locations` asked for
    absl::Span<const uint8_t> bytes;  // valid only during the sink's call
  };
  using LocatedSink = std::function<absl::Status(absl::Span<const LocatedRecord> batch)>;
  // Reads the records at `locations` (through the queue, coalescing neighbours into large reads,
  // many in flight) and hands them to `sink` in batches, as they arrive, in any order. A short read
  // (a pack cut shorter than the index says) is DataLoss.
  [[nodiscard]] absl::Status ReadRecords(absl::Span<const RecordLocation> locations,
                                         const LocatedSink& sink);

  // A read prepared under whatever lock guards the store and done without it: the records
  // holding some chunks, and their packs' files, opened. The open files keep those bytes
  // readable even when a collection removes the packs meanwhile (a rollback of unflushed
  // records can still cut them short: DataLoss then). Lets a server send a slow reader its
  // records without holding the store.
  struct DetachedRead {
    std::vector<RecordLocation> locations;
    absl::flat_hash_map<uint32_t, io::Fd> packs;  // own descriptors of the packs read
  };
  // NotFound when the store lacks one of `ids` (as ReadRecordsFor).
  [[nodiscard]] absl::StatusOr<DetachedRead> PrepareDetachedRead(
      absl::Span<const codec::ChunkId> ids);
  // Reads a prepared read on `queue` (the caller's, not the store's) into `bufs` (kept between
  // calls by the caller) and hands the records to `sink` as ReadRecordsFor does. Touches nothing
  // of any store: thread-safe as long as `queue` and `bufs` are the caller's alone.
  [[nodiscard]] static absl::Status ReadDetached(const DetachedRead& read, io::Queue& queue,
                                                 std::vector<io::AlignedBuffer>& bufs,
                                                 const RecordSink& sink);

  // Asks the kernel to start reading the records at `locations` into the page cache, and returns
  // without waiting (posix_fadvise WILLNEED): a later ReadRecords of them then waits less. Only
  // advice: nothing is checked and nothing fails.
  void PrefetchRecords(absl::Span<const RecordLocation> locations);

  // Scans every pack from its first record (not trusting the index) and calls `visit` for each
  // intact record. Damaged regions and torn tails found are described in `problems`.
  [[nodiscard]] absl::Status ScanAllPacks(const RecordVisitor& visit,
                                          std::vector<std::string>* problems);

  // Names of all manifests (backup uuids), for verify.
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListManifests();
  [[nodiscard]] absl::StatusOr<std::unique_ptr<ManifestReader>> OpenManifestReader(
      const std::string& backup_uuid);
  // A fresh path in tmp/ for a file being built (e.g. a manifest).
  std::string NewTmpPath(absl::string_view what);
  std::string ManifestPath(const std::string& backup_uuid) const;
  std::string GroupPath(const std::string& group_uuid) const;
  // True when volume backup `backup_uuid` is published here.
  bool HasManifest(const std::string& backup_uuid) const;

  // Truncates packs back to their last durable size and forgets the chunks beyond it: what a
  // failed operation calls so that the store is left as it was.
  [[nodiscard]] absl::Status Rollback();

  // Quarantine: forgets the records that hold `ids` (damaged ones, found by verify), so that
  // their chunks count as absent and the next sync, import or repair brings good copies; saves
  // the index. The bytes stay in the packs until a collection drops them (nothing names them).
  // Returns how many records were forgotten. (An index rebuilt from the packs would index such a
  // record again if its payload checksum holds; verify --repair then forgets it again.)
  [[nodiscard]] absl::StatusOr<size_t> ForgetRecordsOf(absl::Span<const codec::ChunkId> ids);

  // Keeps the records appended from now on out of reach of garbage collections until the hold
  // is released: what a writer that lands chunks before naming them in a manifest (a sync
  // session) takes at its first append. Returns the hold's id.
  uint64_t HoldNewRecords();
  void ReleaseHold(uint64_t hold);
  // Counts collections that removed records: an import that deduplicated against the store
  // before a collection must not publish after it (the importer checks).
  uint64_t gc_generation() const { return gc_generation_; }

 private:
  // The collector reaches into the packs and the index (engine/local/garbage_collector.h).
  friend class GarbageCollector;

  // What the public writers (AppendRecord, AppendRecords, AppendCheckedRecords, Flush) do, and
  // then RollBackIfWriteFailed: after a write error, rolls back and returns the error (`st`,
  // or the write error when `st` is OK), so that one failure does not fail every later write.
  absl::StatusOr<RecordLocation> AppendRecordImpl(absl::Span<const uint8_t> bytes,
                                                  const codec::RecordView& view);
  absl::Status AppendRecordsImpl(absl::Span<const absl::Span<const uint8_t>> records,
                                 VerifyMode mode, AppendStats* stats);
  absl::Status FlushImpl();
  absl::Status RollBackIfWriteFailed(absl::Status st);

  // A run of neighbouring records read in one request: [offset, offset + length) of a pack
  // (offset block-aligned, length up to the end of the last record), holding the records at
  // order[first, last) of the locations it was made from.
  struct ReadRange {
    uint32_t pack;
    uint64_t offset;
    uint64_t length;
    size_t first, last;
  };
  // Sorts `locations` (their indices into *order) and merges neighbours into ranges of at most
  // kReadRangeMax bytes with gaps of at most kReadGapMax.
  static std::vector<ReadRange> MergeIntoRanges(absl::Span<const RecordLocation> locations,
                                                std::vector<size_t>* order);
  // ReadRecords' loop on any queue, buffers and pack files (`fd_of` gives a pack's descriptor).
  static absl::Status ReadLocated(absl::Span<const RecordLocation> locations, io::Queue& queue,
                                  std::vector<io::AlignedBuffer>& bufs,
                                  const std::function<absl::StatusOr<int>(uint32_t)>& fd_of,
                                  const LocatedSink& sink);
  // The records holding `ids`, sorted, each once; NotFound naming the first id the store lacks.
  absl::StatusOr<std::vector<RecordLocation>> LocateRecordsFor(
      absl::Span<const codec::ChunkId> ids);

  struct Pack {
    // Reads, fsync, truncation. Reads go through the page cache: on these machines buffered
    // reads with readahead ran 2.0 GB/s against 1.0 GB/s for O_DIRECT, and the copy stayed
    // faster with them even once direct reads went into huge-page buffers (docs/BENCHMARKS.md).
    io::Fd fd;
    io::Fd wfd;                // appends: O_DIRECT where the file system allows it
    io::Fd dfd;                // ReadRecords with LocalStoreOptions::direct_reads: O_DIRECT
    uint64_t size = 0;         // bytes appended, including buffered ones
    uint64_t submitted = 0;    // bytes handed to the queue
    uint64_t durable = 0;      // bytes known fsynced
    bool created_now = false;  // made by this process (removed by Rollback if empty)
  };
  // A buffer of appended bytes, written as one request at `offset` (block-aligned). It starts
  // with the partial block the pack ended in, if any.
  struct WriteBuffer {
    io::AlignedBuffer buf;
    size_t fill = 0;
    uint32_t pack = 0;
    uint64_t offset = 0;
    bool in_flight = false;
    bool sealed = false;  // full, waiting for the checks of the records in it
  };

  LocalStore(std::string dir, LocalStoreOptions options);
  absl::Status LoadIndexAndPacks();
  absl::StatusOr<Pack*> OpenPack(uint32_t id);
  // Flushes (which saves the index) when the index's memtable is full.
  [[nodiscard]] absl::Status SaveIndexIfFull();
  absl::Status StartNewPack();
  absl::Status OpenBuffer();
  // Writes the open buffer out (padded to a block when partial) and moves to the next one.
  absl::Status SubmitBuffer();
  // Queues the write of buffers_[b], padded to a block; says whether it was padded.
  absl::StatusOr<bool> SubmitWrite(size_t b);
  // Moves on to the next buffer, once its earlier write is done.
  absl::Status NextBuffer();
  absl::Status ReapWrites(size_t min_complete);
  absl::Status DrainWrites();
  // Submits the open buffer and waits for every write: what readers of the packs need first.
  absl::Status FinishWrites();
  absl::Status CheckUsable() const;
  // Deletes what the group record parked in deleting/ (by DeleteGroup, or by a run that crashed
  // part way) names, then the record: the second half of DeleteGroup, and what a writable open
  // does for every record it finds there.
  absl::Status FinishGroupDelete(const std::string& group_uuid, DeleteResult* result);
  absl::Status FinishInterruptedDeletes();
  std::string DeletingPath(const std::string& group_uuid) const;
  // FailedPrecondition unless every volume `group` names has a manifest here.
  absl::Status CheckGroupVolumes(const GroupRecord& group) const;

  // AppendRecords takes received records in parts that fit the write buffers with room to
  // spare and stay in one pack. A part is placed first (buffer positions, index entries), then
  // the pool checks each record and copies it into its place, the caller's thread taking part:
  // one copy, made in parallel. Buffers the part filled are written only once every check has
  // passed; a failed check puts the write position and the index back where the part began.
  struct PlacedRecord {
    absl::Span<const uint8_t> bytes;  // the caller's
    codec::RecordView view;
    bool append = false;  // holds a chunk the store lacks
    size_t buffer = 0;    // where its first byte goes
    size_t pos = 0;
    absl::Status check;
  };
  // Where appends go next; what a failed part restores.
  struct WriteCursor {
    uint32_t pack = 0;
    uint64_t pack_size = 0;
    size_t buffer = 0;
    bool buffer_open = false;
    size_t fill = 0;
    size_t index_records = 0;
  };
  // Picks the pack the next `bytes` go to, starting a new one when the current one would pass
  // the target.
  absl::Status PackFor(size_t bytes);
  // Reserves room for `size` bytes at the end of the current pack and says where they start.
  // Buffers it fills are sealed (kept back from writing) and listed in sealed_.
  absl::Status Reserve(size_t size, size_t* buffer, size_t* pos);
  // Copies `bytes` into the buffers from (buffer, pos) on, as Reserve placed them.
  void CopyToBuffers(absl::Span<const uint8_t> bytes, size_t buffer, size_t pos);
  // Writes the sealed buffers out, in order.
  absl::Status SubmitSealed();
  // Places, checks and appends one part (see above).
  absl::Status AppendPart(absl::Span<PlacedRecord> part, VerifyMode mode, AppendStats* stats);
  WriteCursor SaveCursor();
  void RestoreCursor(const WriteCursor& cursor);

  std::string dir_;
  LocalStoreOptions options_;
  StoreInfo info_;
  codec::ChunkHasher hasher_;
  ChunkIndex index_;
  OpenReport report_;
  io::Fd lock_fd_;
  std::unique_ptr<io::Queue> queue_;
  std::map<uint32_t, Pack> packs_;
  uint32_t current_pack_ = 0;  // 0: none open for appending yet
  std::vector<WriteBuffer> buffers_;
  size_t current_buffer_ = 0;
  bool buffer_open_ = false;  // buffers_[current_buffer_] is being filled
  size_t writes_in_flight_ = 0;
  bool packs_dir_dirty_ = false;
  bool closed_ = false;
  absl::Status failed_;  // first write error of the operation running (then rolled back)
  std::vector<io::AlignedBuffer> read_buffers_;     // ReadRecords' requests in flight
  std::vector<codec::Decompressor> decompressors_;  // one per pool slot
  std::vector<std::vector<uint8_t>> scratch_;       // one per pool slot
  std::vector<size_t> sealed_;        // full buffers of the part being appended, in order
  std::vector<PlacedRecord> placed_;  // AppendRecords' records, kept for their capacity
  uint64_t tmp_counter_ = 0;
  uint32_t next_pack_id_ = 1;         // never reused within a process, even after a collection
  bool seal_last_pack_ = false;       // the next append starts a new pack (a collection began)
  std::map<uint64_t, size_t> holds_;  // hold id → record count when taken
  uint64_t next_hold_ = 1;
  uint64_t gc_generation_ = 0;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_LOCAL_LOCAL_STORE_H_
