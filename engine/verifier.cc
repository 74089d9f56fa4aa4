#include "engine/verifier.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kBatchBytes = 16 << 20;

}  // namespace

absl::StatusOr<VerifyReport> VerifyStore(LocalStore& store, WorkerPool& pool, VerifyMode mode,
                                         const ProgressFn* progress) {
  VerifyReport report;
  ProgressTicker ticker(progress, "verify");
  for (const auto& r : store.open_report().damaged_regions) {
    report.problems.push_back(absl::StrCat("damaged pack region ", r));
  }
  // Every record the index points at, once, with the chunks the index expects in it.
  std::vector<RecordLocation> locs;
  store.index().ForEach(
      [&](const codec::ChunkId&, const ChunkLocation& l) { locs.push_back(l.record); });
  std::sort(locs.begin(), locs.end());
  locs.erase(std::unique(locs.begin(), locs.end()), locs.end());
  for (const auto& l : locs) ticker.state().bytes_total += l.size;

  absl::flat_hash_set<RecordLocation> bad;
  std::vector<codec::Decompressor> decompressors(pool.slots());
  std::vector<std::vector<uint8_t>> scratch(pool.slots());
  std::vector<uint8_t> batch;
  std::vector<std::pair<size_t, size_t>> batch_recs;  // (locs index, offset in batch)
  auto check_batch = [&]() {
    std::vector<absl::Status> results(batch_recs.size());
    std::vector<uint32_t> chunk_counts(batch_recs.size(), 0);
    pool.Run(batch_recs.size(), [&](size_t i, size_t slot) {
      const auto& [li, off] = batch_recs[i];
      auto view = codec::ParseRecord(absl::MakeConstSpan(batch.data() + off, locs[li].size));
      if (!view.ok()) {
        results[i] = view.status();
        return;
      }
      chunk_counts[i] = view->chunk_count;
      if (mode == VerifyMode::kChecksum) {
        results[i] = codec::CheckPayload(*view);
      } else {
        scratch[slot].resize(view->raw_length);
        results[i] = codec::DecodeRecord(*view, decompressors[slot], &store.hasher(),
                                         absl::MakeSpan(scratch[slot]));
      }
    });
    for (size_t i = 0; i < batch_recs.size(); ++i) {
      const RecordLocation& l = locs[batch_recs[i].first];
      ++report.records;
      report.chunks += chunk_counts[i];
      report.stored_bytes += l.size;
      if (!results[i].ok()) {
        ++report.bad_records;
        bad.insert(l);
        report.problems.push_back(absl::StrCat("record at ", PackFileName(l.pack), ":", l.offset,
                                               " (", l.size, " bytes): ", results[i].message()));
      }
    }
    ticker.state().bytes_done = report.stored_bytes;
    ticker.Tick();
    batch.clear();
    batch_recs.clear();
  };
  auto read = store.ReadRecords(locs, [&](size_t i, absl::Span<const uint8_t> bytes) {
    batch_recs.emplace_back(i, batch.size());
    batch.insert(batch.end(), bytes.begin(), bytes.end());
    if (batch.size() >= kBatchBytes) check_batch();
    return absl::OkStatus();
  });
  if (!read.ok()) {
    report.problems.push_back(std::string(read.message()));
  }
  check_batch();

  // Chunks whose record is bad, or that the index places in a record that does not name them.
  absl::flat_hash_set<codec::ChunkId> bad_chunks;
  store.index().ForEach([&](const codec::ChunkId& id, const ChunkLocation& l) {
    if (bad.contains(l.record)) bad_chunks.insert(id);
  });

  // Name the volume backups that the findings break.
  CF_ASSIGN_OR_RETURN(std::vector<std::string> backups, store.ListManifests());
  absl::flat_hash_set<std::string> readable;
  std::vector<ManifestEntry> entries;
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
    DamagedBackup d;
    d.uuid = uuid;
    d.group_uuid = (*reader)->meta().group_uuid;
    d.name = (*reader)->meta().name.value_or("");
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, (*reader)->Next(&entries, 4096));
      if (n == 0) break;
      for (const auto& e : entries) {
        if (e.zero) continue;
        if (!store.index().Contains(e.id)) {
          ++d.missing_chunks;
        } else if (bad_chunks.contains(e.id)) {
          ++d.damaged_chunks;
        }
      }
    }
    if (d.missing_chunks || d.damaged_chunks) report.damaged.push_back(std::move(d));
  }
  CF_ASSIGN_OR_RETURN(std::vector<std::string> groups, store.ListGroups());
  for (const auto& g : groups) {
    ++report.groups;
    auto group = store.GetGroup(g);
    if (!group.ok()) {
      report.problems.push_back(std::string(group.status().message()));
      continue;
    }
    for (const auto& v : group->volume_uuids) {
      if (!readable.contains(v)) {
        report.problems.push_back(
            absl::StrCat("group ", g, " names volume backup ", v, " whose manifest is unusable"));
      }
    }
  }
  report.seconds = ticker.Elapsed();
  ticker.Tick(true);
  return report;
}

}  // namespace chunkferry::engine
