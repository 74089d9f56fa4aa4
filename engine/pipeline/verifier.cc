#include "engine/pipeline/verifier.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kBatchBytes = 16 << 20;

}  // namespace

absl::Status CheckGroups(Store& store, const absl::flat_hash_set<std::string>& readable,
                         VerifyReport* report) {
  CF_ASSIGN_OR_RETURN(std::vector<std::string> groups, store.ListGroups());
  for (const auto& g : groups) {
    ++report->groups;
    auto group = store.GetGroup(g);
    if (!group.ok()) {
      report->problems.push_back(std::string(group.status().message()));
      continue;
    }
    for (const auto& v : group->volume_uuids) {
      if (!readable.contains(v)) {
        report->problems.push_back(
            absl::StrCat("group ", g, " names volume backup ", v, " whose manifest is unusable"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status NameDamage(const std::string& uuid, ManifestSource& source,
                        const absl::flat_hash_map<codec::ChunkId, uint32_t>& lengths,
                        const std::function<EntryState(const codec::ChunkId&)>& classify,
                        VerifyReport* report) {
  DamagedBackup d;
  d.uuid = uuid;
  d.group_uuid = source.meta().group_uuid;
  d.name = source.meta().name.value_or("");
  std::vector<ManifestEntry> entries;
  for (;;) {
    CF_ASSIGN_OR_RETURN(size_t n, source.Next(&entries, 4096));
    if (n == 0) break;
    for (const auto& e : entries) {
      if (e.zero) continue;
      EntryState state = classify(e.id);
      if (state == EntryState::kIntact) {
        auto len = lengths.find(e.id);
        if (len != lengths.end() && len->second != e.length) state = EntryState::kDamaged;
      }
      switch (state) {
        case EntryState::kIntact:
          break;
        case EntryState::kMissing:
          ++d.missing_chunks;
          break;
        case EntryState::kDamaged:
          ++d.damaged_chunks;
          break;
      }
    }
  }
  if (d.missing_chunks || d.damaged_chunks) report->damaged.push_back(std::move(d));
  return absl::OkStatus();
}

absl::Status FinishReport(Store& store, const absl::flat_hash_set<std::string>& readable,
                          ProgressTicker& ticker, VerifyReport* report) {
  CF_RETURN_IF_ERROR(CheckGroups(store, readable, report));
  report->seconds = ticker.Elapsed();
  ticker.Tick(true);
  return absl::OkStatus();
}

absl::StatusOr<VerifyReport> VerifyStore(LocalStore& store, WorkerPool& pool, VerifyMode mode,
                                         const ProgressFn* progress) {
  VerifyReport report;
  ProgressTicker ticker(progress, "verify");
  // Every record in every pack, found by scanning (the index is checked against it, not
  // trusted), checked in parallel batches.
  uint64_t pack_bytes = 0;
  for (const auto& [pack, covered] : store.index().coverage()) pack_bytes += covered;
  ticker.state().bytes_total = pack_bytes;
  absl::flat_hash_map<RecordLocation, bool> found;        // record → intact
  std::map<RecordLocation, std::string> bad_records;      // record → what is wrong with it
  absl::flat_hash_map<codec::ChunkId, uint32_t> lengths;  // chunk → raw length, from the tables
  std::vector<codec::Decompressor> decompressors(pool.slots());
  std::vector<std::vector<uint8_t>> scratch(pool.slots());
  std::vector<uint8_t> batch;
  std::vector<std::pair<RecordLocation, size_t>> batch_recs;  // (where, offset in batch)
  auto check_batch = [&]() {
    std::vector<absl::Status> results(batch_recs.size());
    std::vector<uint32_t> chunk_counts(batch_recs.size(), 0);
    std::vector<std::vector<codec::ChunkRef>> tables(batch_recs.size());
    pool.Run(batch_recs.size(), [&](size_t i, size_t slot) {
      const auto& [loc, off] = batch_recs[i];
      auto view = codec::ParseRecord(absl::MakeConstSpan(batch.data() + off, loc.size));
      if (!view.ok()) {
        results[i] = view.status();
        return;
      }
      chunk_counts[i] = view->chunk_count;
      for (uint32_t c = 0; c < view->chunk_count; ++c) tables[i].push_back(view->chunk(c));
      if (mode == VerifyMode::kChecksum) {
        results[i] = codec::CheckPayload(*view);
      } else {
        scratch[slot].resize(view->raw_length);
        results[i] = codec::DecodeRecord(*view, decompressors[slot], &store.hasher(),
                                         absl::MakeSpan(scratch[slot]));
      }
    });
    for (size_t i = 0; i < batch_recs.size(); ++i) {
      const RecordLocation& l = batch_recs[i].first;
      ++report.records;
      report.chunks += chunk_counts[i];
      report.stored_bytes += l.size;
      found[l] = results[i].ok();
      for (const auto& ref : tables[i]) lengths.try_emplace(ref.id, ref.raw_length);
      if (!results[i].ok()) {
        bad_records[l] = absl::StrCat("record at ", PackFileName(l.pack), ":", l.offset, " (",
                                      l.size, " bytes): ", results[i].message());
      }
    }
    ticker.state().bytes_done = report.stored_bytes;
    ticker.Tick();
    batch.clear();
    batch_recs.clear();
  };
  CF_RETURN_IF_ERROR(store.ScanAllPacks(
      [&](const RecordLocation& loc, const codec::RecordView&, absl::Span<const uint8_t> bytes) {
        batch_recs.emplace_back(loc, batch.size());
        batch.insert(batch.end(), bytes.begin(), bytes.end());
        if (batch.size() >= kBatchBytes) check_batch();
      },
      &report.problems));
  check_batch();

  // Chunks the index places in a record that failed its check or that is not there at all.
  absl::flat_hash_set<codec::ChunkId> bad_chunks;
  absl::flat_hash_set<RecordLocation> bad_in_use;
  uint64_t dangling = 0;
  CF_RETURN_IF_ERROR(store.index().ForEach([&](const codec::ChunkId& id, const ChunkLocation& l) {
    auto it = found.find(l.record);
    if (it == found.end()) {
      ++dangling;
      bad_chunks.insert(id);
    } else if (!it->second) {
      bad_chunks.insert(id);
      bad_in_use.insert(l.record);
    }
  }));
  // A damaged record the index does not name holds nothing a backup can get (quarantined by
  // verify --repair, or garbage): noted, not a problem; a collection reclaims it.
  for (const auto& [loc, what] : bad_records) {
    if (bad_in_use.contains(loc)) {
      ++report.bad_records;
      report.problems.push_back(what);
    } else {
      ++report.unused_bad_records;
    }
  }
  // The index's runs whole: a damaged one answers "absent" for some chunks (never "present"
  // wrongly), which costs dedupe; removing index/ rebuilds it from the packs.
  if (absl::Status runs = store.index().CheckRuns(); !runs.ok()) {
    report.problems.push_back(absl::StrCat(runs.message(),
                                           " (remove the store's index/ directory to rebuild "
                                           "the index from the packs)"));
  }
  report.bad_chunks.assign(bad_chunks.begin(), bad_chunks.end());
  if (dangling > 0) {
    report.problems.push_back(absl::StrCat(dangling,
                                           " chunks of the index point at records that "
                                           "no pack holds intact"));
  }

  // Name the volume backups that the findings break.
  CF_ASSIGN_OR_RETURN(std::vector<std::string> backups, store.ListManifests());
  absl::flat_hash_set<std::string> readable;
  for (const auto& uuid : backups) {
    ++report.manifests;
    auto reader = store.OpenManifestReader(uuid);
    if (!reader.ok()) {
      DamagedBackup d;
      d.uuid = uuid;
      d.problem = std::string(reader.status().message());
      report.damaged.push_back(std::move(d));
      continue;
    }
    readable.insert(uuid);
    // Lengths from the records' tables.
    CF_RETURN_IF_ERROR(NameDamage(
        uuid, **reader, lengths,
        [&](const codec::ChunkId& id) {
          if (!store.index().Contains(id)) return EntryState::kMissing;
          return bad_chunks.contains(id) ? EntryState::kDamaged : EntryState::kIntact;
        },
        &report));
  }
  CF_RETURN_IF_ERROR(FinishReport(store, readable, ticker, &report));
  return report;
}

}  // namespace chunkferry::engine
