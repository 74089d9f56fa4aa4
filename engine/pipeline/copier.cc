#include "engine/pipeline/copier.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "codec/record.h"
#include "engine/format/manifest_delta.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// Most candidate manifests the base search opens on the source.
constexpr size_t kMaxBaseCandidates = 32;

class Copier {
 public:
  Copier(Store& src, Store& dst, const CopyOptions& options, CopyStats& stats,
         const ProgressFn* progress)
      : src_(src), dst_(dst), options_(options), stats_(stats), ticker_(progress, "copy") {}

  absl::Status Run(const std::string& group_uuid);
  // One volume backup, and no group: the destination holds it as a backup no group names
  // until a copy of its group publishes one.
  absl::Status RunBackup(const std::string& backup_uuid);

 private:
  absl::Status CheckStores() const;
  absl::Status CheckDeadline() const;
  // Copies the manifests of `volume_uuids` (bases looked for among backups of `like`'s VM),
  // then publishes `publish` when not null.
  absl::Status RunVolumes(const std::vector<std::string>& volume_uuids, const GroupRecord& like,
                          const GroupRecord* publish);
  // Asks the destination about the pending ids (a batch), then settles the batch asked before
  // it: the destination answers the new question while the previous batch's records travel.
  absl::Status Ask();
  struct AskedBatch;
  // Waits for the answer of `batch` and sends the records it lacks; asked_, when set, is the
  // batch asked after it.
  absl::Status Settle(std::unique_ptr<AskedBatch> batch);
  // Picks a base for each volume of `group` (see copier.h) and opens it on the source.
  absl::Status FindBases(const GroupRecord& group,
                         const std::vector<std::unique_ptr<ManifestSource>>& manifests);
  // Sleeps as long as the rate limit asks.
  void Pace();

  Store& src_;
  Store& dst_;
  const CopyOptions& options_;
  CopyStats& stats_;
  ProgressTicker ticker_;
  std::vector<std::unique_ptr<ManifestSource>> bases_;  // per volume; null: none
  std::vector<std::string> base_uuids_;
  // The batch being planned: unique ids not known from a base, not asked yet.
  std::vector<codec::ChunkId> pending_;
  absl::flat_hash_set<codec::ChunkId> pending_set_;
  // A batch asked and not settled yet. Its answer was taken before the records of the batch
  // settled meanwhile were sent; chunks of those records that it names are in `sent_since_`,
  // so that they do not travel twice.
  struct AskedBatch {
    std::vector<codec::ChunkId> ids;
    absl::flat_hash_set<codec::ChunkId> id_set;
    std::unique_ptr<Store::HaveQuery> answer;
    uint64_t target_bytes = 0;  // planned_bytes_ when it was asked: done once it is settled
    uint64_t target_chunks = 0;
  };
  std::unique_ptr<AskedBatch> asked_;
  absl::flat_hash_set<codec::ChunkId> sent_since_;
  // Progress: logical bytes and data entries read from the manifests so far, and the part of
  // them whose chunks the destination holds (reported).
  uint64_t planned_bytes_ = 0;
  uint64_t planned_chunks_ = 0;
  uint64_t done_bytes_ = 0;
  uint64_t done_chunks_ = 0;
  uint64_t sent_chunks_ = 0;  // chunks in the records sent so far (from their headers)
};

void Copier::Pace() {
  if (options_.rate_limit_bytes_per_s == 0) return;
  const double due =
      static_cast<double>(stats_.bytes_sent) / static_cast<double>(options_.rate_limit_bytes_per_s);
  const double ahead = due - ticker_.Elapsed();
  if (ahead > 0) std::this_thread::sleep_for(std::chrono::duration<double>(ahead));
}

// Sends the records the destination lacks for the pending ids.
absl::Status Copier::CheckDeadline() const {
  if (options_.deadline == std::chrono::steady_clock::time_point{} ||
      std::chrono::steady_clock::now() < options_.deadline) {
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the copy ran past its deadline after ", static_cast<int64_t>(ticker_.Elapsed()),
                   " s, having sent ", stats_.bytes_sent, " bytes; nothing was published"));
}

absl::Status Copier::Ask() {
  CF_RETURN_IF_ERROR(CheckDeadline());
  auto batch = std::make_unique<AskedBatch>();
  batch->ids = std::move(pending_);
  batch->id_set = std::move(pending_set_);
  pending_ = {};
  pending_set_ = {};
  batch->target_bytes = planned_bytes_;
  batch->target_chunks = planned_chunks_;
  if (!batch->ids.empty()) {
    const double asked = ticker_.Elapsed();
    CF_ASSIGN_OR_RETURN(batch->answer, dst_.AskHave(batch->ids));
    stats_.query_seconds += ticker_.Elapsed() - asked;
  }
  std::unique_ptr<AskedBatch> before = std::move(asked_);
  asked_ = std::move(batch);
  return before != nullptr ? Settle(std::move(before)) : absl::OkStatus();
}

absl::Status Copier::Settle(std::unique_ptr<AskedBatch> batch) {
  CF_RETURN_IF_ERROR(CheckDeadline());
  // Once this batch's chunks are there, every entry read before it was asked is done.
  const uint64_t target_bytes = batch->target_bytes, target_chunks = batch->target_chunks;
  auto report = [&](double fraction) {
    ProgressState& p = ticker_.state();
    p.bytes_done = done_bytes_ + static_cast<uint64_t>(
                                     fraction * static_cast<double>(target_bytes - done_bytes_));
    p.chunks_done =
        done_chunks_ +
        static_cast<uint64_t>(fraction * static_cast<double>(target_chunks - done_chunks_));
    p.bytes_sent = stats_.bytes_sent;
    p.chunks_sent = sent_chunks_;
  };
  auto finish = [&] {
    done_bytes_ = target_bytes;
    done_chunks_ = target_chunks;
    report(0);
    ticker_.Tick();
  };
  if (batch->ids.empty()) {
    sent_since_.clear();
    finish();
    return absl::OkStatus();
  }
  std::vector<bool> have;
  const double asked = ticker_.Elapsed();
  CF_RETURN_IF_ERROR(batch->answer->Wait(&have));
  stats_.query_seconds += ticker_.Elapsed() - asked;
  std::vector<codec::ChunkId> missing;
  for (size_t i = 0; i < batch->ids.size(); ++i) {
    if (!have[i] && !sent_since_.contains(batch->ids[i])) missing.push_back(batch->ids[i]);
  }
  sent_since_.clear();
  stats_.chunks_queried += batch->ids.size();
  stats_.chunks_missing += missing.size();
  if (missing.empty()) {
    finish();
    return absl::OkStatus();
  }
  // The batch asked after this one was answered before these records went: the chunks of
  // theirs it names are held once they land.
  const absl::flat_hash_set<codec::ChunkId>* next = asked_ != nullptr ? &asked_->id_set : nullptr;
  uint64_t moved_chunks = 0;  // chunks in the records sent for this batch (from their headers)
  // Batches go straight from the source's read buffers to the destination, which checks them
  // in parallel and copies them once, into its pack buffers.
  auto sink = [&](absl::Span<const absl::Span<const uint8_t>> records) {
    CF_RETURN_IF_ERROR(CheckDeadline());
    CF_RETURN_IF_ERROR(dst_.AppendRecords(records, options_.verify, &stats_.appended));
    stats_.records_sent += records.size();
    for (const auto& r : records) {
      stats_.bytes_sent += r.size();
      // The record header's chunk count (u16 at offset 6) and its chunk table (20-byte entries
      // from offset 32, each starting with the id; codec/record.h).
      if (r.size() < codec::kRecordFixedHeaderSize) continue;
      const uint64_t n = uint64_t{r[6]} | (uint64_t{r[7]} << 8);
      moved_chunks += n;
      sent_chunks_ += n;
      if (next == nullptr || next->empty() || r.size() < codec::RecordHeaderSize(n)) continue;
      for (uint64_t k = 0; k < n; ++k) {
        const codec::ChunkId id = codec::ChunkId::DecodeFrom(
            r.data() + codec::kRecordFixedHeaderSize + k * codec::kRecordChunkEntrySize);
        if (next->contains(id)) sent_since_.insert(id);
      }
    }
    report(std::min(1.0, static_cast<double>(moved_chunks) / static_cast<double>(missing.size())));
    ticker_.Tick();
    Pace();
    return absl::OkStatus();
  };
  const double started = ticker_.Elapsed();
  absl::Status read = src_.ReadRecordsFor(missing, sink);
  stats_.transfer_seconds += ticker_.Elapsed() - started;
  if (absl::IsNotFound(read)) {
    // The source's own manifests name these chunks: a source that lacks one is damaged (a
    // record that failed its checks is not indexed), not a request for something unknown.
    return absl::DataLossError(absl::StrCat(
        "the source lacks a chunk its backups name (damaged or lost; `chunkferry verify` lists "
        "the broken backups): ",
        read.message()));
  }
  CF_RETURN_IF_ERROR(read);
  finish();
  return absl::OkStatus();
}

absl::Status Copier::FindBases(const GroupRecord& group,
                               const std::vector<std::unique_ptr<ManifestSource>>& manifests) {
  absl::flat_hash_set<std::string> own, wanted;
  for (const auto& m : manifests) {
    own.insert(m->meta().uuid);
    if (!m->meta().volume_uuid.empty()) wanted.insert(m->meta().volume_uuid);
  }
  if (wanted.empty()) return absl::OkStatus();
  CF_ASSIGN_OR_RETURN(std::vector<std::string> names, dst_.ListGroups());
  std::vector<GroupRecord> held;
  for (const auto& name : names) {
    absl::StatusOr<GroupRecord> g = dst_.GetGroup(name);
    if (absl::IsNotFound(g.status())) continue;  // removed meanwhile
    if (!g.ok()) return g.status();
    // Another VM's backups would not share volumes.
    if (group.vm_instance_uuid && g->vm_instance_uuid &&
        *group.vm_instance_uuid != *g->vm_instance_uuid) {
      continue;
    }
    held.push_back(*std::move(g));
  }
  std::stable_sort(held.begin(), held.end(), [](const GroupRecord& a, const GroupRecord& b) {
    return a.create_date > b.create_date;
  });
  struct Best {
    int64_t create_date = 0;
    std::string uuid;
  };
  absl::flat_hash_map<std::string, Best> best;  // by volume_uuid
  absl::flat_hash_set<std::string> seen;
  size_t opened = 0;
  for (const GroupRecord& g : held) {
    if (best.size() == wanted.size() || opened >= kMaxBaseCandidates) break;
    for (const std::string& b : g.volume_uuids) {
      if (own.contains(b) || !seen.insert(b).second) continue;
      if (opened >= kMaxBaseCandidates) break;
      ++opened;
      // Best effort: a backup the source lacks (or cannot read) is no candidate.
      absl::StatusOr<std::unique_ptr<ManifestSource>> m = src_.OpenManifest(b);
      if (!m.ok()) continue;
      const VolumeBackupMeta& meta = (*m)->meta();
      if (meta.uuid != b || !wanted.contains(meta.volume_uuid)) continue;
      auto [it, fresh] = best.try_emplace(meta.volume_uuid);
      if (fresh || meta.create_date > it->second.create_date) {
        it->second.create_date = meta.create_date;
        it->second.uuid = b;
      }
    }
  }
  for (size_t i = 0; i < manifests.size(); ++i) {
    auto it = best.find(manifests[i]->meta().volume_uuid);
    if (it == best.end()) continue;
    absl::StatusOr<std::unique_ptr<ManifestSource>> m = src_.OpenManifest(it->second.uuid);
    if (!m.ok()) continue;
    bases_[i] = *std::move(m);
    base_uuids_[i] = it->second.uuid;
    ++stats_.volumes_with_base;
  }
  return absl::OkStatus();
}

absl::Status Copier::CheckStores() const {
  if (src_.info().uuid == dst_.info().uuid) {
    return absl::InvalidArgumentError(
        absl::StrCat("source and destination are the same store (", src_.info().uuid, ")"));
  }
  if (src_.info().key_fingerprint != dst_.info().key_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("stores ", src_.location(), " and ", dst_.location(),
                     " key their chunk ids differently; give both the same id key"));
  }
  return absl::OkStatus();
}

absl::Status Copier::Run(const std::string& group_uuid) {
  CF_RETURN_IF_ERROR(CheckStores());
  CF_ASSIGN_OR_RETURN(GroupRecord group, src_.GetGroup(group_uuid));
  return RunVolumes(group.volume_uuids, group, &group);
}

absl::Status Copier::RunBackup(const std::string& backup_uuid) {
  CF_RETURN_IF_ERROR(CheckStores());
  // No group to say whose VM it is: bases may come from any VM's backups of the same volume.
  return RunVolumes({backup_uuid}, GroupRecord{}, nullptr);
}

absl::Status Copier::RunVolumes(const std::vector<std::string>& volume_uuids,
                                const GroupRecord& like, const GroupRecord* publish) {
  std::vector<std::unique_ptr<ManifestSource>> manifests;
  for (const auto& v : volume_uuids) {
    CF_ASSIGN_OR_RETURN(auto m, src_.OpenManifest(v));
    stats_.logical_bytes += m->meta().size;
    manifests.push_back(std::move(m));
  }
  stats_.volumes = manifests.size();
  bases_.resize(manifests.size());
  base_uuids_.resize(manifests.size());
  if (options_.use_base && src_.ManifestsAreLocal() && !dst_.ManifestsAreLocal()) {
    CF_RETURN_IF_ERROR(FindBases(like, manifests));
  }
  // Totals for progress: the manifests' trailers count their entries; other sources are counted.
  ticker_.state().bytes_total = stats_.logical_bytes;
  for (auto& m : manifests) {
    if (const auto* reader = dynamic_cast<const ManifestReader*>(m.get())) {
      ticker_.state().chunks_total += reader->data_entries();
      continue;
    }
    std::vector<ManifestEntry> batch;
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, m->Next(&batch, 4096));
      if (n == 0) break;
      for (const auto& e : batch) ticker_.state().chunks_total += e.zero ? 0 : 1;
    }
    m->Rewind();
  }
  ticker_.Tick(false);
  // Plan and transfer, a query's worth of unique ids at a time: memory stays bounded by the
  // batch, and ids sent in an earlier batch are answered "have" by the destination.
  // The base is walked in step, by byte offset: an entry equal to the base's at its offset names
  // a chunk the destination holds.
  std::vector<ManifestEntry> entries;
  for (size_t i = 0; i < manifests.size(); ++i) {
    ManifestSource& m = *manifests[i];
    BaseCursor base(bases_[i].get());
    uint64_t offset = 0;
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, m.Next(&entries, 4096));
      if (n == 0) break;
      for (const auto& e : entries) {
        CF_ASSIGN_OR_RETURN(const ManifestEntry* b, base.At(offset));
        offset += e.length;
        planned_bytes_ += e.length;
        if (e.zero) continue;
        ++planned_chunks_;
        ++stats_.chunks_referenced;
        if (b != nullptr && SameEntry(*b, e)) {
          ++stats_.chunks_known_from_base;
          continue;
        }
        if (pending_set_.insert(e.id).second) pending_.push_back(e.id);
        if (pending_.size() >= options_.ids_per_query) CF_RETURN_IF_ERROR(Ask());
      }
    }
  }
  CF_RETURN_IF_ERROR(Ask());
  CF_RETURN_IF_ERROR(Settle(std::move(asked_)));
  const double commit_started = ticker_.Elapsed();
  CF_RETURN_IF_ERROR(dst_.Flush());
  CF_RETURN_IF_ERROR(CheckDeadline());
  ticker_.state().phase = "commit";
  for (size_t i = 0; i < manifests.size(); ++i) {
    VolumeBackupMeta meta = manifests[i]->meta();
    meta.status = "Ready";
    if (bases_[i] != nullptr) {
      CF_RETURN_IF_ERROR(
          dst_.PutManifestWithBase(meta, *manifests[i], bases_[i].get(), base_uuids_[i]));
    } else {
      CF_RETURN_IF_ERROR(dst_.PutManifest(meta, *manifests[i]));
    }
  }
  if (publish != nullptr) CF_RETURN_IF_ERROR(dst_.PutGroup(*publish));
  stats_.seconds = ticker_.Elapsed();
  stats_.commit_seconds = stats_.seconds - commit_started;
  ticker_.Tick(true);
  return absl::OkStatus();
}

// Runs `run` on a copier, and once more without bases when the destination refused a manifest
// against one.
template <typename RunFn>
absl::Status CopyWithRetry(Store& src, Store& dst, const CopyOptions& options, CopyStats* stats,
                           const ProgressFn* progress, RunFn run) {
  CopyStats local;
  CopyStats& out = stats ? *stats : local;
  absl::Status st = run(Copier(src, dst, options, out, progress));
  if (absl::IsFailedPrecondition(st) && out.volumes_with_base > 0) {
    // A base's chunks were taken as held, and the destination refused a manifest naming one it
    // lacks: a quarantine there (verify --repair) dropped it. Without bases every chunk is
    // asked about, and what was sent already is not sent again.
    CopyOptions no_base = options;
    no_base.use_base = false;
    out = CopyStats();
    out.retried_without_base = true;
    st = run(Copier(src, dst, no_base, out, progress));
  }
  return st;
}

}  // namespace

absl::Status CopyGroup(Store& src, Store& dst, const std::string& group_uuid,
                       const CopyOptions& options, CopyStats* stats, const ProgressFn* progress) {
  return CopyWithRetry(src, dst, options, stats, progress,
                       [&](Copier&& c) { return c.Run(group_uuid); });
}

absl::Status CopyBackup(Store& src, Store& dst, const std::string& backup_uuid,
                        const CopyOptions& options, CopyStats* stats, const ProgressFn* progress) {
  return CopyWithRetry(src, dst, options, stats, progress,
                       [&](Copier&& c) { return c.RunBackup(backup_uuid); });
}

}  // namespace chunkferry::engine
