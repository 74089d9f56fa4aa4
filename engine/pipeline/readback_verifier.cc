#include "engine/pipeline/readback_verifier.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// Ids asked for at once: bounds what the store gathers for one call.
constexpr size_t kWindowIds = size_t{1} << 16;

// What a store says about damage it found in its own bytes (as opposed to not answering).
bool IsDamage(const absl::Status& st) {
  return absl::IsDataLoss(st) || absl::IsInvalidArgument(st) || absl::IsNotFound(st);
}

struct ChunkFindings {
  absl::flat_hash_set<codec::ChunkId> missing;  // the store does not hold them
  absl::flat_hash_set<codec::ChunkId> damaged;  // their record failed its check, or differs
};

class ReadBack {
 public:
  ReadBack(Store& store, const codec::ChunkHasher& hasher, WorkerPool& pool, VerifyMode mode,
           VerifyReport* report, ProgressTicker* ticker)
      : store_(store),
        hasher_(hasher),
        pool_(pool),
        mode_(mode),
        report_(report),
        ticker_(ticker),
        decompressors_(pool.slots()),
        scratch_(pool.slots()) {}

  // Reads back every id of `named` (chunk → the length manifests give it).
  absl::Status Run(const absl::flat_hash_map<codec::ChunkId, uint32_t>& named, ChunkFindings* out) {
    named_ = &named;
    out_ = out;
    std::vector<codec::ChunkId> window;
    window.reserve(std::min(named.size(), kWindowIds));
    for (const auto& [id, length] : named) {
      window.push_back(id);
      if (window.size() == kWindowIds) {
        CF_RETURN_IF_ERROR(Window(window));
        window.clear();
      }
    }
    return Window(window);
  }

 private:
  absl::Status Window(const std::vector<codec::ChunkId>& ids) {
    if (ids.empty()) return absl::OkStatus();
    std::vector<bool> have;
    CF_RETURN_IF_ERROR(store_.HaveChunks(ids, &have));
    std::vector<codec::ChunkId> held;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (have[i]) {
        held.push_back(ids[i]);
      } else {
        out_->missing.insert(ids[i]);
      }
    }
    seen_.clear();
    failed_.clear();
    retrying_ = false;
    absl::Status st = store_.ReadRecordsFor(held, [&](auto records) { return Check(records); });
    if (!st.ok() && !IsDamage(st)) return st;
    if (!st.ok()) {
      // A record the store cannot even hand out (its header is damaged, its pack is gone):
      // one id at a time, to name what it breaks. Records that failed their check already
      // are not counted twice.
      retrying_ = true;
      for (const auto& id : held) {
        if (seen_.contains(id)) continue;
        absl::Status one = store_.ReadRecordsFor(absl::MakeConstSpan(&id, 1),
                                                 [&](auto records) { return Check(records); });
        if (!one.ok() && !IsDamage(one)) return one;
        if (!one.ok()) Problem(std::string(one.message()));
      }
    }
    // An id that no intact record it was read with holds is damaged.
    for (const auto& id : held) {
      if (!seen_.contains(id)) out_->damaged.insert(id);
    }
    ticker_->state().bytes_done = report_->stored_bytes;
    ticker_->Tick();
    return absl::OkStatus();
  }

  absl::Status Check(absl::Span<const absl::Span<const uint8_t>> records) {
    std::vector<absl::Status> results(records.size());
    std::vector<codec::RecordView> views(records.size());
    pool_.Run(records.size(), [&](size_t i, size_t slot) {
      auto view = codec::CheckReceivedRecord(records[i], mode_ == VerifyMode::kFull,
                                             decompressors_[slot], &hasher_, &scratch_[slot]);
      if (view.ok()) {
        views[i] = *view;
      } else {
        results[i] = view.status();
      }
    });
    for (size_t i = 0; i < records.size(); ++i) {
      if (!results[i].ok()) {
        const uint64_t sum = codec::Checksum64(records[i]);
        if (!failed_.insert(sum).second && retrying_) continue;
      }
      ++report_->records;
      report_->stored_bytes += records[i].size();
      if (!results[i].ok()) {
        ++report_->bad_records;
        Problem(absl::StrCat("a record of ", records[i].size(), " bytes in ", store_.location(),
                             ": ", results[i].message()));
        continue;
      }
      report_->chunks += views[i].chunk_count;
      for (uint32_t c = 0; c < views[i].chunk_count; ++c) {
        const codec::ChunkRef ref = views[i].chunk(c);
        auto it = named_->find(ref.id);
        if (it == named_->end()) continue;
        seen_.insert(ref.id);
        // A manifest whose length disagrees with the chunk: restore refuses it.
        if (ref.raw_length != it->second) out_->damaged.insert(ref.id);
      }
    }
    return absl::OkStatus();
  }

  void Problem(std::string what) {
    if (problems_seen_.insert(what).second) report_->problems.push_back(std::move(what));
  }

  Store& store_;
  const codec::ChunkHasher& hasher_;
  WorkerPool& pool_;
  const VerifyMode mode_;
  VerifyReport* report_;
  ProgressTicker* ticker_;
  std::vector<codec::Decompressor> decompressors_;
  std::vector<std::vector<uint8_t>> scratch_;
  const absl::flat_hash_map<codec::ChunkId, uint32_t>* named_ = nullptr;
  ChunkFindings* out_ = nullptr;
  absl::flat_hash_set<codec::ChunkId> seen_;  // ids found in intact records, this window
  absl::flat_hash_set<uint64_t> failed_;      // checksums of records that failed, this window
  bool retrying_ = false;                     // reading the window again, id by id
  absl::flat_hash_set<std::string> problems_seen_;
};

// Calls `fn` with every data entry of `source`.
template <typename Fn>
absl::Status ForEachDataEntry(ManifestSource& source, Fn&& fn) {
  std::vector<ManifestEntry> entries;
  for (;;) {
    CF_ASSIGN_OR_RETURN(size_t n, source.Next(&entries, 4096));
    if (n == 0) return absl::OkStatus();
    for (const auto& e : entries) {
      if (!e.zero) fn(e);
    }
  }
}

}  // namespace

absl::StatusOr<VerifyReport> VerifyByReadingBack(Store& store, const codec::ChunkHasher& hasher,
                                                 WorkerPool& pool, VerifyMode mode,
                                                 const ProgressFn* progress) {
  VerifyReport report;
  ProgressTicker ticker(progress, "verify");
  // Every chunk a published manifest names, with the length it names.
  CF_ASSIGN_OR_RETURN(std::vector<std::string> backups, store.ListBackups());
  absl::flat_hash_map<codec::ChunkId, uint32_t> named;
  absl::flat_hash_set<std::string> readable;
  for (const auto& uuid : backups) {
    ++report.manifests;
    auto source = store.OpenManifest(uuid);
    absl::Status st = source.status();
    if (st.ok()) {
      st = ForEachDataEntry(**source, [&](const ManifestEntry& e) {
        named.try_emplace(e.id, e.length);  // the first length seen; others are compared later
      });
    }
    if (!st.ok() && !IsDamage(st)) return st;
    if (!st.ok()) {
      DamagedBackup d;
      d.uuid = uuid;
      d.problem = std::string(st.message());
      report.damaged.push_back(std::move(d));
      continue;
    }
    readable.insert(uuid);
  }
  ChunkFindings findings;
  ReadBack reader(store, hasher, pool, mode, &report, &ticker);
  CF_RETURN_IF_ERROR(reader.Run(named, &findings));
  report.bad_chunks.assign(findings.damaged.begin(), findings.damaged.end());
  std::sort(report.bad_chunks.begin(), report.bad_chunks.end());

  // Name the volume backups that the findings break.
  for (const auto& uuid : backups) {
    if (!readable.contains(uuid)) continue;
    CF_ASSIGN_OR_RETURN(std::unique_ptr<ManifestSource> source, store.OpenManifest(uuid));
    // Lengths as the first manifest naming each chunk gave them: two manifests that give one
    // chunk two lengths name one wrong.
    CF_RETURN_IF_ERROR(NameDamage(
        uuid, *source, named,
        [&](const codec::ChunkId& id) {
          if (findings.missing.contains(id)) return EntryState::kMissing;
          return findings.damaged.contains(id) ? EntryState::kDamaged : EntryState::kIntact;
        },
        &report));
  }
  CF_RETURN_IF_ERROR(FinishReport(store, readable, ticker, &report));
  return report;
}

}  // namespace chunkferry::engine
