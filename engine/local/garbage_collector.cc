#include "engine/local/garbage_collector.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec/record.h"
#include "engine/format/manifest.h"
#include "engine/format/pack.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

GarbageCollector::GarbageCollector(LocalStore& store, GcOptions options)
    : store_(store), options_(std::move(options)) {}

GarbageCollector::~GarbageCollector() { Finish(); }

void GarbageCollector::Finish() {
  if (pinning_) store_.index_.SetPins(nullptr);
  pinning_ = false;
  phase_ = Phase::kDone;
  stats_.milliseconds = static_cast<uint64_t>(std::llround((Now() - started_) * 1000));
}

absl::StatusOr<bool> GarbageCollector::Step() {
  if (phase_ == Phase::kDone) return false;
  static constexpr const char* kNames[] = {"begin", "mark", "plan", "sweep", "commit", "done"};
  ++steps_;
  if (options_.before_step) options_.before_step(steps_, kNames[static_cast<int>(phase_)]);
  absl::Status st;
  switch (phase_) {
    case Phase::kBegin:
      st = Begin();
      if (st.ok()) phase_ = Phase::kMark;
      break;
    case Phase::kMark: {
      absl::StatusOr<bool> done = MarkStep();
      st = done.status();
      if (st.ok() && *done) phase_ = Phase::kPlan;
      break;
    }
    case Phase::kPlan:
      st = Plan();
      if (st.ok()) {
        sweep_ = plans_.begin();
        phase_ = options_.dry_run ? Phase::kDone : Phase::kSweep;
      }
      break;
    case Phase::kSweep:
      while (sweep_ != plans_.end() && !sweep_->second.rewrite) ++sweep_;
      if (sweep_ == plans_.end()) {
        phase_ = Phase::kCommit;
        break;
      }
      st = SweepPack(sweep_->second);
      ++sweep_;
      break;
    case Phase::kCommit:
      st = Commit();
      if (st.ok()) phase_ = Phase::kDone;
      break;
    case Phase::kDone:
      break;
  }
  if (!st.ok() || phase_ == Phase::kDone) Finish();
  if (!st.ok()) return st;
  return phase_ != Phase::kDone;
}

absl::Status GarbageCollector::Run(const ProgressFn* progress) {
  ProgressTicker mark(progress, "gc-mark");
  std::optional<ProgressTicker> sweep;
  for (;;) {
    CF_ASSIGN_OR_RETURN(bool more, Step());
    if (phase_ == Phase::kMark) {
      mark.state().chunks_done = next_manifest_;
      mark.state().chunks_total = manifests_.size();
      mark.state().bytes_done = stats_.chunks_referenced;
      mark.Tick();
    } else if (phase_ == Phase::kSweep || phase_ == Phase::kCommit) {
      if (!sweep) {
        mark.Tick(/*force=*/true);
        sweep.emplace(progress, "gc-sweep");
        for (const auto& [id, plan] : plans_) {
          if (plan.rewrite) sweep->state().bytes_total += plan.live_bytes;
        }
      }
      sweep->state().bytes_done = stats_.bytes_copied;
      sweep->Tick();
    }
    if (!more) break;
  }
  if (sweep) {
    sweep->state().final = true;
    sweep->Tick(/*force=*/true);
  }
  return absl::OkStatus();
}

absl::Status GarbageCollector::Begin() {
  started_ = Now();
  CF_RETURN_IF_ERROR(store_.CheckUsable());
  ChunkIndex& index = store_.index_;
  // Every record appended from here on goes to a new pack, so the packs that exist now hold
  // only records that a collection may judge.
  if (!options_.dry_run) {
    store_.seal_last_pack_ = true;
    store_.current_pack_ = 0;
  }
  first_new_pack_ = store_.packs_.empty() ? 1 : store_.packs_.rbegin()->first + 1;
  first_new_pack_ = std::max(first_new_pack_, store_.next_pack_id_);
  cutoff_ = index.record_count();
  for (const auto& [id, count] : store_.holds_) cutoff_ = std::min(cutoff_, count);
  for (const auto& [id, pack] : store_.packs_) {
    ++stats_.packs_before;
    stats_.bytes_before += pack.size;
  }
  live_ = std::make_unique<RecordBitmap>(cutoff_);
  index.SetPins(live_.get());
  pinning_ = true;
  CF_ASSIGN_OR_RETURN(manifests_, store_.ListManifests());
  return absl::OkStatus();
}

absl::StatusOr<bool> GarbageCollector::MarkSome(const std::string& backup_uuid, size_t budget,
                                                size_t* used) {
  *used = 0;
  if (reader_ == nullptr) {
    auto reader = store_.OpenManifestReader(backup_uuid);
    // Deleted since it was listed: nothing of it needs keeping.
    if (absl::IsNotFound(reader.status())) return true;
    CF_RETURN_IF_ERROR(reader.status());
    reader_ = *std::move(reader);
  }
  std::vector<ManifestEntry> batch;
  std::vector<codec::ChunkId> ids;
  std::vector<int64_t> records;
  size_t done = 0;
  while (done < budget) {
    CF_ASSIGN_OR_RETURN(size_t n, reader_->Next(&batch, std::min(budget - done, size_t{4096})));
    if (n == 0) {
      *used = done;
      reader_.reset();
      ++stats_.manifests;
      return true;
    }
    done += n;
    ids.clear();
    for (const ManifestEntry& e : batch) {
      if (!e.zero) ids.push_back(e.id);
    }
    records.resize(ids.size());
    // The lookups mark the records live (the pins).
    store_.index_.FindRecordNumbers(ids, absl::MakeSpan(records));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (records[i] < 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "volume backup ", backup_uuid, " names chunk ", ids[i].ToHex(), " that store ",
            store_.dir_, " does not index: the store is damaged (run verify); gc changed nothing"));
      }
    }
    stats_.chunks_referenced += ids.size();
  }
  *used = done;
  return false;
}

absl::Status GarbageCollector::MarkManifest(const std::string& backup_uuid) {
  size_t used = 0;
  for (;;) {
    CF_ASSIGN_OR_RETURN(bool done, MarkSome(backup_uuid, SIZE_MAX, &used));
    if (done) return absl::OkStatus();
  }
}

absl::StatusOr<bool> GarbageCollector::MarkStep() {
  // A step looks up at most mark_batch entries, so that it stays short for a daemon however
  // large a manifest is; small manifests share a step.
  size_t budget = options_.mark_batch;
  while (next_manifest_ < manifests_.size() && budget > 0) {
    size_t used = 0;
    CF_ASSIGN_OR_RETURN(bool done, MarkSome(manifests_[next_manifest_], budget, &used));
    budget -= std::min(budget, std::max<size_t>(used, 1));
    if (done) ++next_manifest_;
  }
  return next_manifest_ == manifests_.size();
}

absl::Status GarbageCollector::Plan() {
  // Manifests published since Mark listed them were pinned as they were written; read them
  // anyway, so that nothing depends on how they were published.
  CF_ASSIGN_OR_RETURN(std::vector<std::string> now, store_.ListManifests());
  for (const std::string& m : now) {
    if (!std::binary_search(manifests_.begin(), manifests_.end(), m)) {
      CF_RETURN_IF_ERROR(MarkManifest(m));
    }
  }
  const ChunkIndex& index = store_.index_;
  std::map<uint32_t, PackPlan> all;
  for (const auto& [id, pack] : store_.packs_) {
    if (id < first_new_pack_) all[id].size = pack.size;
  }
  // Records past the cutoff (held by a writer) protect their pack.
  for (size_t r = cutoff_; r < index.record_count(); ++r) {
    auto it = all.find(index.record(r).pack);
    if (it != all.end()) it->second.protected_ = true;
  }
  stats_.records_total = 0;
  for (size_t r = 0; r < cutoff_; ++r) {
    auto it = all.find(index.record(r).pack);
    if (it == all.end()) continue;  // removed by an earlier collection
    ++stats_.records_total;
    if (live_->Get(r)) {
      it->second.live_bytes += index.record(r).size;
      ++stats_.records_live;
    }
  }
  for (auto& [id, plan] : all) {
    if (plan.protected_) continue;
    if (plan.live_bytes == 0) {
      plans_[id] = std::move(plan);
    } else if (static_cast<double>(plan.live_bytes) <
               options_.repack_below * static_cast<double>(plan.size)) {
      plan.rewrite = true;
      plans_[id] = std::move(plan);
    }
  }
  // The record numbers of the packs to reclaim, to copy the live ones and forget the others.
  for (size_t r = 0; r < cutoff_; ++r) {
    auto it = plans_.find(index.record(r).pack);
    if (it != plans_.end()) it->second.records.push_back(static_cast<uint32_t>(r));
  }
  // A dry run stops here and reports the plan; a real one counts in Sweep and Commit what they do.
  if (options_.dry_run) {
    for (const auto& [id, plan] : plans_) {
      ++(plan.rewrite ? stats_.packs_rewritten : stats_.packs_removed);
      if (plan.rewrite) stats_.bytes_copied += plan.live_bytes;
      stats_.bytes_removed += plan.size;
    }
    stats_.bytes_reclaimed = stats_.bytes_removed - stats_.bytes_copied;
  }
  return absl::OkStatus();
}

absl::Status GarbageCollector::SweepPack(PackPlan& plan) {
  const ChunkIndex& index = store_.index_;
  std::vector<uint32_t> live;
  for (uint32_t r : plan.records) {
    if (live_->Get(r)) live.push_back(r);
  }
  // In batches of copy_batch_bytes: read them, then append the copies (a read and an append
  // cannot share the store's queue at once).
  std::vector<std::vector<uint8_t>> bytes;
  for (size_t first = 0; first < live.size();) {
    std::vector<RecordLocation> locations;
    uint64_t batch_bytes = 0;
    size_t last = first;
    while (last < live.size() && (last == first || batch_bytes < options_.copy_batch_bytes)) {
      locations.push_back(index.record(live[last]));
      batch_bytes += locations.back().size;
      ++last;
    }
    bytes.assign(locations.size(), {});
    CF_RETURN_IF_ERROR(
        store_.ReadRecords(locations, [&](absl::Span<const LocalStore::LocatedRecord> batch) {
          for (const auto& rec : batch) bytes[rec.index].assign(rec.bytes.begin(), rec.bytes.end());
          return absl::OkStatus();
        }));
    for (size_t i = 0; i < locations.size(); ++i) {
      absl::StatusOr<codec::RecordView> view = codec::ParseRecord(bytes[i]);
      absl::StatusOr<RecordLocation> copy =
          view.ok() ? store_.AppendRecord(bytes[i], *view) : view.status();
      if (!copy.ok()) return UndoRelocations(plan, copy.status());
      store_.index_.Relocate(live[first + i], *copy);
      plan.copied.push_back(live[first + i]);
      plan.moved_from.push_back(locations[i]);
      stats_.bytes_copied += copy->size;
      ++stats_.records_copied;
    }
    first = last;
  }
  // Durable before the step ends: a rollback by another writer must not cut the copies that the
  // index now points at.
  absl::Status flushed = store_.Flush();
  if (!flushed.ok()) return UndoRelocations(plan, flushed);
  // The copies are durable: the moves may go to disk (both places stay valid until Commit
  // removes the old pack), which keeps the moves waiting in memory to one pack's worth.
  return store_.index_.PersistRecords();
}

absl::Status GarbageCollector::UndoRelocations(PackPlan& plan, absl::Status why) {
  // The old pack is still there: point the records back at it, so that the rollback of copies
  // that never became durable leaves the index whole.
  for (size_t i = 0; i < plan.copied.size(); ++i) {
    store_.index_.Relocate(plan.copied[i], plan.moved_from[i]);
  }
  plan.copied.clear();
  plan.moved_from.clear();
  return why;
}

absl::Status GarbageCollector::Commit() {
  CF_RETURN_IF_ERROR(store_.Flush());
  ChunkIndex& index = store_.index_;
  // Records of the packs going away, not copied: their chunks are forgotten. A pack one of whose
  // uncopied records was used since Plan stays, whole.
  RecordBitmap dead(cutoff_);
  std::vector<uint32_t> removed;
  for (auto& [id, plan] : plans_) {
    std::sort(plan.copied.begin(), plan.copied.end());
    bool used_late = false;
    for (uint32_t r : plan.records) {
      if (live_->Get(r) && !std::binary_search(plan.copied.begin(), plan.copied.end(), r)) {
        used_late = true;
        break;
      }
    }
    if (used_late) {
      ++stats_.packs_kept_late_pin;
      continue;
    }
    for (uint32_t r : plan.records) {
      if (!std::binary_search(plan.copied.begin(), plan.copied.end(), r)) dead.Set(r);
    }
    removed.push_back(id);
    ++(plan.rewrite ? stats_.packs_rewritten : stats_.packs_removed);
    stats_.bytes_removed += plan.size;
  }
  stats_.bytes_reclaimed =
      stats_.bytes_removed > stats_.bytes_copied ? stats_.bytes_removed - stats_.bytes_copied : 0;
  if (removed.empty()) return absl::OkStatus();
  CF_RETURN_IF_ERROR(index.EraseChunksOf([&](uint32_t r) { return r < cutoff_ && dead.Get(r); }));
  for (uint32_t id : removed) index.coverage().erase(id);
  // The index must stop naming the packs before they go (an open that finds a named pack
  // missing rebuilds the whole index).
  CF_RETURN_IF_ERROR(index.Save());
  // A crash point of its own: the index is saved, the packs are still there.
  ++steps_;
  if (options_.before_step) options_.before_step(steps_, "unlink");
  for (uint32_t id : removed) {
    store_.packs_.erase(id);  // closes its descriptors
    const std::string path = absl::StrCat(store_.dir_, "/packs/", PackFileName(id));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return io::ErrnoStatus(errno, "unlink", path);
    }
  }
  CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(store_.dir_, "/packs")));
  ++store_.gc_generation_;
  return absl::OkStatus();
}

}  // namespace chunkferry::engine
