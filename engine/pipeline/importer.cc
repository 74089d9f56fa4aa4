#include "engine/pipeline/importer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "codec/chunker.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "codec/zero.h"
#include "engine/pipeline/window_reader.h"
#include "engine/store/scratch_manifest.h"
#include "io/buffer.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// One chunk of the current window.
struct Chunk {
  uint32_t offset;  // in the window's data
  uint32_t length;
  bool zero;
  bool fresh;  // first time seen: goes into a record
  codec::ChunkId id;
};

// A record to build: chunks [first, last) of the window's fresh list.
struct RecordPlan {
  size_t first, last;
  uint32_t raw;
  size_t out_offset;  // in the output arena
  size_t out_size;
  absl::Status status;
};

absl::Status AlreadyPublished(const std::string& uuid, const Store& store) {
  return absl::AlreadyExistsError(absl::StrCat(
      "volume backup ", uuid, " is already published in store ", store.location(),
      ": a published backup is never replaced; delete it first or import under a new uuid"));
}

// Where an import's records, manifest and group go: what differs between a local store (records
// placed straight into its packs, the manifest file renamed into place, a rollback on failure)
// and any other (records appended through the Store interface, the manifest sent by PutManifest).
class ImportTarget {
 public:
  virtual ~ImportTarget() = default;
  virtual Store& store() = 0;
  virtual const codec::ChunkHasher& hasher() const = 0;
  virtual io::Backend backend() const = 0;
  // AlreadyExists when the store has published `uuid`.
  [[nodiscard]] virtual absl::Status CheckNew(const std::string& uuid) = 0;
  // Where the manifest is written while the import runs.
  virtual std::string ManifestTmpPath() = 0;
  // Appends records this process encoded (`views[i]` parses `records[i]`).
  [[nodiscard]] virtual absl::Status Append(absl::Span<const absl::Span<const uint8_t>> records,
                                            absl::Span<const codec::RecordView> views) = 0;
  // Once the records are durable: publishes the manifest (and nothing else).
  [[nodiscard]] virtual absl::Status PublishManifest(const VolumeBackupMeta& meta,
                                                     ManifestWriter& manifest) = 0;
  // Takes a published manifest back (its group could not be grown).
  virtual void Unpublish(const std::string& uuid) = 0;
  // After a failure: undoes what can be undone.
  virtual void Abandon() = 0;
};

class LocalTarget final : public ImportTarget {
 public:
  explicit LocalTarget(LocalStore& store) : store_(store), gc_generation_(store.gc_generation()) {}
  Store& store() override { return store_; }
  const codec::ChunkHasher& hasher() const override { return store_.hasher(); }
  io::Backend backend() const override { return store_.queue().backend(); }
  absl::Status CheckNew(const std::string& uuid) override {
    return store_.HasManifest(uuid) ? AlreadyPublished(uuid, store_) : absl::OkStatus();
  }
  std::string ManifestTmpPath() override { return store_.NewTmpPath("manifest"); }
  absl::Status Append(absl::Span<const absl::Span<const uint8_t>> records,
                      absl::Span<const codec::RecordView> views) override {
    for (size_t i = 0; i < records.size(); ++i) {
      CF_RETURN_IF_ERROR(store_.AppendRecord(records[i], views[i]).status());
    }
    return absl::OkStatus();
  }
  absl::Status PublishManifest(const VolumeBackupMeta& meta, ManifestWriter& manifest) override {
    // Chunks deduplicated before a garbage collection are not pinned by it (lookups pin only
    // while it runs): a collection that removed records meanwhile voids the import.
    if (store_.gc_generation() != gc_generation_) {
      return absl::AbortedError(
          absl::StrCat("a garbage collection of store ", store_.location(),
                       " removed records while volume backup ", meta.uuid,
                       " was imported; nothing was published: import it again"));
    }
    return manifest.Finish(meta, store_.ManifestPath(meta.uuid));
  }
  void Unpublish(const std::string& uuid) override { ::unlink(store_.ManifestPath(uuid).c_str()); }
  void Abandon() override { (void)store_.Rollback(); }

 private:
  LocalStore& store_;
  const uint64_t gc_generation_;
};

// Any store: a pool, where a collection never runs beside a writer (it takes the write lock
// alone), and records that never get a manifest are garbage for the next collection.
class StoreTarget final : public ImportTarget {
 public:
  StoreTarget(Store& store, const codec::ChunkHasher& hasher, io::Backend backend,
              ScratchDir scratch)
      : store_(store), hasher_(hasher), backend_(backend), scratch_(std::move(scratch)) {}
  Store& store() override { return store_; }
  const codec::ChunkHasher& hasher() const override { return hasher_; }
  io::Backend backend() const override { return backend_; }
  absl::Status CheckNew(const std::string& uuid) override {
    auto manifest = store_.OpenManifest(uuid);
    if (manifest.ok()) return AlreadyPublished(uuid, store_);
    return absl::IsNotFound(manifest.status()) ? absl::OkStatus() : manifest.status();
  }
  // The entries wait in a local file (a pool has no place for half a manifest); PutManifest
  // writes them to the store once the records are durable.
  std::string ManifestTmpPath() override { return scratch_.File("manifest.tmp"); }
  absl::Status Append(absl::Span<const absl::Span<const uint8_t>> records,
                      absl::Span<const codec::RecordView>) override {
    // Checked by checksum only: encoded here a moment ago, the ids computed from these bytes.
    return store_.AppendRecords(records, VerifyMode::kChecksum, &stats_);
  }
  absl::Status PublishManifest(const VolumeBackupMeta& meta, ManifestWriter& manifest) override {
    const std::string path = scratch_.File("manifest");
    CF_RETURN_IF_ERROR(manifest.Finish(meta, path));
    CF_ASSIGN_OR_RETURN(auto reader, ManifestReader::Open(path));
    return store_.PutManifest(meta, *reader);
  }
  void Unpublish(const std::string& uuid) override { (void)store_.DeleteBackup(uuid); }
  void Abandon() override {}

 private:
  Store& store_;
  const codec::ChunkHasher& hasher_;
  const io::Backend backend_;
  ScratchDir scratch_;  // the manifest, removed with it
  AppendStats stats_;   // AppendRecords wants one until Flush; the importer counts its own
};

class Importer {
 public:
  Importer(ImportTarget& target, WorkerPool& pool, const ImportOptions& options, ImportStats* stats,
           const ProgressFn* progress)
      : target_(target),
        store_(target.store()),
        pool_(pool),
        options_(options),
        stats_(*stats),
        ticker_(progress, "import"),
        chunker_(codec::MakeChunker(store_.info().chunker)) {
    for (size_t i = 0; i < pool.slots(); ++i) compressors_.emplace_back(store_.info().zstd_level);
  }

  ~Importer() { WaitEncodes(); }

  absl::StatusOr<VolumeBackupMeta> Run();

 private:
  // The work on one window. Two of them alternate: window w+1 is cut, hashed and deduplicated
  // while the pool still compresses window w, whose records are appended just before window
  // w+1's compression starts. So the serial parts (dedupe, manifest, appends) overlap with
  // compression instead of leaving cores idle between barriers.
  struct WindowWork {
    const uint8_t* data = nullptr;
    std::vector<Chunk> chunks;
    std::vector<size_t> fresh;  // indexes into chunks, in order
    std::vector<RecordPlan> plans;
    absl::flat_hash_set<codec::ChunkId> fresh_ids;  // not yet appended: dedupes later windows
    std::vector<codec::ChunkId> ids;                // of the data chunks, asked of the store
    std::vector<bool> held;                         // by the store, per entry of `ids`
    io::AlignedBuffer out;                          // encoded records
    std::shared_ptr<WorkerPool::Job> job;           // compression in progress
  };

  // Cuts, hashes and deduplicates a window, adds it to the manifest and plans its records;
  // returns the bytes used (the rest is carried into the next window).
  absl::StatusOr<size_t> PlanWindow(WindowWork& w, const uint8_t* data, size_t n, bool last,
                                    const WindowWork& previous);
  void StartEncode(WindowWork& w);
  // Waits for a window's compression and appends its records in order.
  absl::Status FinishEncode(WindowWork& w);
  void WaitEncodes();

  ImportTarget& target_;
  Store& store_;
  WorkerPool& pool_;
  const ImportOptions& options_;
  ImportStats& stats_;
  ProgressTicker ticker_;
  std::unique_ptr<codec::Chunker> chunker_;
  std::vector<codec::Compressor> compressors_;
  std::unique_ptr<WindowReader> reader_;
  std::unique_ptr<ManifestWriter> manifest_;
  WindowWork work_[2];
  std::vector<absl::Span<const uint8_t>> records_;  // of the window being appended
  std::vector<codec::RecordView> views_;
};

absl::StatusOr<size_t> Importer::PlanWindow(WindowWork& w, const uint8_t* data, size_t n, bool last,
                                            const WindowWork& previous) {
  // 1. Boundaries (serial: content-defined cuts depend on what came before).
  w.data = data;
  w.chunks.clear();
  size_t pos = 0;
  while (pos < n) {
    const size_t len = chunker_->FindBoundary(absl::MakeConstSpan(data + pos, n - pos), last);
    if (len == 0) break;
    w.chunks.push_back(
        Chunk{static_cast<uint32_t>(pos), static_cast<uint32_t>(len), false, false, {}});
    pos += len;
  }
  // 2. Zero detection and ids on every core.
  std::vector<Chunk>& chunks = w.chunks;
  const size_t tasks = std::min<size_t>(chunks.size(), pool_.slots() * 4);
  const codec::ChunkHasher& hasher = target_.hasher();
  pool_.Run(tasks, [&](size_t t, size_t) {
    const size_t b = chunks.size() * t / tasks, e = chunks.size() * (t + 1) / tasks;
    for (size_t i = b; i < e; ++i) {
      Chunk& c = chunks[i];
      const auto bytes = absl::MakeConstSpan(data + c.offset, c.length);
      c.zero = codec::IsAllZero(bytes);
      if (!c.zero) c.id = hasher.Hash(bytes);
    }
  });
  // 3. What the store holds: one batched question per window.
  w.ids.clear();
  for (const Chunk& c : chunks) {
    if (!c.zero) w.ids.push_back(c.id);
  }
  CF_RETURN_IF_ERROR(store_.HaveChunks(w.ids, &w.held));
  // 4. Dedupe and the manifest, in order; fresh chunks grouped into records. The previous
  // window's fresh chunks are not in the store yet (still being compressed).
  w.fresh.clear();
  w.plans.clear();
  w.fresh_ids.clear();
  const uint32_t target = store_.info().record_target;
  for (size_t i = 0, d = 0; i < chunks.size(); ++i) {
    Chunk& c = chunks[i];
    ++stats_.chunks;
    if (c.zero) {
      ++stats_.zero_chunks;
      stats_.zero_bytes += c.length;
      CF_RETURN_IF_ERROR(manifest_->AddZero(c.length));
      continue;
    }
    CF_RETURN_IF_ERROR(manifest_->AddData(c.id, c.length));
    if (w.held[d++] || previous.fresh_ids.contains(c.id) || !w.fresh_ids.insert(c.id).second) {
      ++stats_.duplicate_chunks;
      continue;
    }
    c.fresh = true;
    ++stats_.new_chunks;
    stats_.new_raw_bytes += c.length;
    if (w.plans.empty() || w.plans.back().raw + c.length > target ||
        w.plans.back().last - w.plans.back().first >= codec::kMaxRecordChunks) {
      w.plans.push_back(RecordPlan{w.fresh.size(), w.fresh.size(), 0, 0, 0, {}});
    }
    w.fresh.push_back(i);
    w.plans.back().last = w.fresh.size();
    w.plans.back().raw += c.length;
  }
  size_t arena = 0;
  for (auto& p : w.plans) {
    p.out_offset = arena;
    arena += codec::MaxRecordSize(p.last - p.first, p.raw);
  }
  if (w.out.size() < arena) w.out = io::AlignedBuffer(arena + (arena >> 3));
  stats_.bytes_read += pos;
  return pos;
}

void Importer::StartEncode(WindowWork& w) {
  // 5. Encode records on the workers into the window's arena.
  WindowWork* wp = &w;
  w.job = pool_.Start(w.plans.size(), [this, wp](size_t r, size_t slot) {
    WindowWork& ww = *wp;
    RecordPlan& p = ww.plans[r];
    std::vector<codec::ChunkRef> refs;
    std::vector<absl::Span<const uint8_t>> parts;
    refs.reserve(p.last - p.first);
    parts.reserve(p.last - p.first);
    for (size_t k = p.first; k < p.last; ++k) {
      const Chunk& c = ww.chunks[ww.fresh[k]];
      refs.push_back(codec::ChunkRef{c.id, c.length});
      parts.push_back(absl::MakeConstSpan(ww.data + c.offset, c.length));
    }
    auto size = codec::EncodeRecord(
        refs, parts, &compressors_[slot],
        absl::MakeSpan(ww.out.data() + p.out_offset, codec::MaxRecordSize(refs.size(), p.raw)));
    if (size.ok()) {
      p.out_size = *size;
    } else {
      p.status = size.status();
    }
  });
}

absl::Status Importer::FinishEncode(WindowWork& w) {
  if (w.job == nullptr) return absl::OkStatus();
  pool_.Wait(*w.job);
  w.job = nullptr;
  // 6. Append in order.
  records_.clear();
  views_.clear();
  for (const auto& p : w.plans) {
    CF_RETURN_IF_ERROR(p.status);
    const auto bytes = absl::MakeConstSpan(w.out.data() + p.out_offset, p.out_size);
    CF_ASSIGN_OR_RETURN(codec::RecordView view, codec::ParseRecord(bytes));
    records_.push_back(bytes);
    views_.push_back(view);
    ++stats_.records;
    stats_.stored_bytes += p.out_size;
  }
  CF_RETURN_IF_ERROR(target_.Append(records_, views_));
  w.plans.clear();
  w.fresh_ids.clear();
  ticker_.state().bytes_done = stats_.bytes_read;
  ticker_.state().chunks_done = stats_.chunks;
  ticker_.Tick();
  return absl::OkStatus();
}

void Importer::WaitEncodes() {
  for (auto& w : work_) {
    if (w.job != nullptr) pool_.Wait(*w.job);
    w.job = nullptr;
  }
}

absl::StatusOr<VolumeBackupMeta> Importer::Run() {
  VolumeBackupMeta meta = options_.meta;
  if (meta.uuid.empty()) meta.uuid = NewUuid();
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (meta.create_date == 0) meta.create_date = now;
  meta.last_op_date = now;
  meta.chunker = store_.info().chunker.ToString();
  if (meta.install_path.empty()) meta.install_path = DefaultInstallPath(meta.group_uuid, meta.uuid);
  CF_RETURN_IF_ERROR(ValidateMeta(meta));
  CF_RETURN_IF_ERROR(target_.CheckNew(meta.uuid));
  if (options_.add_to_group) {
    // A group record that cannot be read would fail the import after its data is in: find out
    // before reading a byte.
    auto group = store_.GetGroup(meta.group_uuid);
    if (!group.ok() && !absl::IsNotFound(group.status())) return group.status();
  }
  CF_ASSIGN_OR_RETURN(
      reader_,
      WindowReader::Open(options_.source, target_.backend(),
                         io::AlignUp(chunker_->max_size(), io::kDirectAlignment), options_.window));
  WindowReader& reader = *reader_;
  stats_.direct_io = reader.direct();
  ticker_.state().bytes_total = reader.size();
  CF_ASSIGN_OR_RETURN(manifest_, ManifestWriter::Create(target_.ManifestTmpPath()));

  const size_t gap = reader.gap();
  size_t carry = 0;
  for (int i = 0; i < WindowReader::kBuffers - 2; ++i) CF_RETURN_IF_ERROR(reader.ReadAhead());
  for (size_t w = 0;; ++w) {
    CF_ASSIGN_OR_RETURN(size_t got, reader.Wait(w));
    // Windows w+1 (submitted last time) and w+2 (now) are read while this one is worked on:
    // with one window ahead the disk idled whenever planning and appending took longer than a
    // read (measured: the import of a dense 1 GiB volume waited ~0.9 s on reads, ~0.45 s with
    // two; three gained nothing more, the appends then waited on the disk instead). Window
    // w+2's buffer held window w-2, whose compression finished in the last round.
    const bool last = reader.submitted_end() && reader.submitted() == w + 1;
    CF_RETURN_IF_ERROR(reader.ReadAhead());
    uint8_t* data = reader.buffer(w) + gap - carry;
    const size_t n = carry + got;
    WindowWork& work = work_[w % 2];
    WindowWork& previous = work_[(w + 1) % 2];
    CF_ASSIGN_OR_RETURN(size_t used, PlanWindow(work, data, n, last, previous));
    carry = n - used;
    if (!last) {
      if (carry > gap) return absl::InternalError("chunker left more than its maximum unconsumed");
      std::memmove(reader.buffer(w + 1) + gap - carry, data + used, carry);
    }
    CF_RETURN_IF_ERROR(FinishEncode(previous));
    StartEncode(work);
    if (last) {
      CF_RETURN_IF_ERROR(FinishEncode(work));
      break;
    }
  }
  meta.size = stats_.bytes_read;
  CF_RETURN_IF_ERROR(store_.Flush());
  CF_RETURN_IF_ERROR(target_.PublishManifest(meta, *manifest_));
  if (options_.add_to_group) {
    absl::Status grouped = AddToGroup(store_, meta);
    if (!grouped.ok()) {
      // The backup is not part of any group: take its manifest back, as if it never came.
      target_.Unpublish(meta.uuid);
      return grouped;
    }
  }
  stats_.seconds = ticker_.Elapsed();
  ticker_.Tick(true);
  return meta;
}

}  // namespace

absl::StatusOr<VolumeBackupMeta> ImportVolume(LocalStore& store, WorkerPool& pool,
                                              const ImportOptions& options, ImportStats* stats,
                                              const ProgressFn* progress) {
  ImportStats local;
  if (stats == nullptr) stats = &local;
  LocalTarget target(store);
  auto result = Importer(target, pool, options, stats, progress).Run();
  if (!result.ok()) target.Abandon();
  return result;
}

absl::StatusOr<VolumeBackupMeta> ImportVolumeInto(Store& store, const codec::ChunkHasher& hasher,
                                                  WorkerPool& pool, io::Backend backend,
                                                  const ImportOptions& options, ImportStats* stats,
                                                  const ProgressFn* progress) {
  ImportStats local;
  if (stats == nullptr) stats = &local;
  CF_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Make());
  StoreTarget target(store, hasher, backend, std::move(scratch));
  return Importer(target, pool, options, stats, progress).Run();
}

absl::Status AddToGroup(Store& store, const VolumeBackupMeta& meta) {
  GroupRecord group;
  auto existing = store.GetGroup(meta.group_uuid);
  if (existing.ok()) {
    group = *std::move(existing);
  } else if (absl::IsNotFound(existing.status())) {
    group.group_uuid = meta.group_uuid;
    group.vm_instance_uuid = meta.vm_instance_uuid;
    group.create_date = meta.create_date;
  } else {
    return existing.status();
  }
  if (std::find(group.volume_uuids.begin(), group.volume_uuids.end(), meta.uuid) ==
      group.volume_uuids.end()) {
    if (meta.type == "Root") {
      group.volume_uuids.insert(group.volume_uuids.begin(), meta.uuid);
    } else {
      group.volume_uuids.push_back(meta.uuid);
    }
  }
  return store.GrowGroup(group);
}

}  // namespace chunkferry::engine
