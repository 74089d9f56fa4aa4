#include "engine/pipeline/store_restorer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/pipeline/image_writer.h"
#include "io/buffer.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// Largest output write (as the local restorer's).
constexpr uint64_t kMaxWrite = 4 << 20;
// Windows in memory: one being gathered while the writes of the other are in flight.
constexpr int kArenas = 2;
static_assert(kArenas <= ImageWriter::kGroups);

// One window of the manifest: its entries, and its chunk data side by side in manifest order
// (holes take no room), filled by whichever records bring the chunks.
struct Arena {
  std::vector<ManifestEntry> entries;
  uint64_t out_offset = 0;          // of entries[0] in the image
  std::vector<uint64_t> data_off;   // per data entry: where its bytes go in `data`
  std::vector<uint32_t> next_same;  // per data entry: the next one with the same id, or kNone
  std::unique_ptr<std::atomic<bool>[]> filled;  // per data entry; claimed by one record
  size_t filled_room = 0;
  // id -> its first and last data entries (the chain runs first .. last through next_same).
  absl::flat_hash_map<codec::ChunkId, std::pair<uint32_t, uint32_t>> first_of;
  std::vector<codec::ChunkId> ids;  // distinct, in first-use order
  io::AlignedBuffer data;
  uint64_t data_bytes = 0;

  static constexpr uint32_t kNone = ~uint32_t{0};

  void Clear() {
    entries.clear();
    data_off.clear();
    next_same.clear();
    first_of.clear();
    ids.clear();
    data_bytes = 0;
  }
};

class StoreRestorer {
 public:
  StoreRestorer(Store& store, const codec::ChunkHasher& hasher, WorkerPool& pool,
                const StoreRestoreOptions& options, RestoreStats& stats, const ProgressFn* progress)
      : store_(store),
        hasher_(hasher),
        pool_(pool),
        options_(options),
        stats_(stats),
        ticker_(progress, "restore"),
        decompressors_(pool.slots()),
        scratch_(pool.slots()) {}
  absl::Status Run(const std::string& backup_uuid);

 private:
  // Lays out the window's data entries and gathers its distinct ids.
  void Plan(Arena& a);
  // Fetches the window's records and copies their chunks into place.
  absl::Status Gather(Arena& a);
  // Decodes (and checks) one record and copies the chunks the window wants into place.
  absl::Status TakeRecord(Arena& a, absl::Span<const uint8_t> bytes, size_t slot);
  absl::Status Write(int group, const Arena& a);

  Store& store_;
  const codec::ChunkHasher& hasher_;
  WorkerPool& pool_;
  const StoreRestoreOptions& options_;
  RestoreStats& stats_;
  ProgressTicker ticker_;
  std::vector<codec::Decompressor> decompressors_;
  std::vector<std::vector<uint8_t>> scratch_;
  Arena arenas_[kArenas];
  // Declared after the arenas: destroyed (its writes drained) before they are freed.
  std::unique_ptr<ImageWriter> writer_;
};

void StoreRestorer::Plan(Arena& a) {
  uint64_t pos = 0;
  for (const auto& e : a.entries) {
    if (e.zero) continue;
    const auto n = static_cast<uint32_t>(a.data_off.size());
    a.data_off.push_back(pos);
    a.next_same.push_back(Arena::kNone);
    pos += e.length;
    auto [it, added] = a.first_of.try_emplace(e.id, n, n);
    if (added) {
      a.ids.push_back(e.id);
    } else {
      a.next_same[it->second.second] = n;  // appended at the chain's end: manifest order
      it->second.second = n;
    }
  }
  a.data_bytes = pos;
  if (a.data.size() < pos) a.data = io::AlignedBuffer(pos + (pos >> 3));
  if (a.filled_room < a.data_off.size()) {
    a.filled_room = a.data_off.size() + (a.data_off.size() >> 3);
    a.filled = std::make_unique<std::atomic<bool>[]>(a.filled_room);
  }
  for (size_t i = 0; i < a.data_off.size(); ++i) {
    a.filled[i].store(false, std::memory_order_relaxed);
  }
}

absl::Status StoreRestorer::TakeRecord(Arena& a, absl::Span<const uint8_t> bytes, size_t slot) {
  CF_ASSIGN_OR_RETURN(codec::RecordView view, codec::ParseRecord(bytes));
  if (view.size != bytes.size()) return absl::DataLossError("record has trailing bytes");
  std::vector<uint8_t>& raw = scratch_[slot];
  raw.resize(view.raw_length);
  // Checks the stored bytes' checksum, and with the hasher every chunk id.
  CF_RETURN_IF_ERROR(codec::DecodeRecord(view, decompressors_[slot],
                                         options_.restore.verify_ids ? &hasher_ : nullptr,
                                         absl::MakeSpan(raw)));
  for (uint32_t c = 0; c < view.chunk_count; ++c) {
    const codec::ChunkRef ref = view.chunk(c);
    auto it = a.first_of.find(ref.id);
    if (it == a.first_of.end()) continue;  // a chunk of the record this window does not use
    for (uint32_t k = it->second.first; k != Arena::kNone; k = a.next_same[k]) {
      if (a.filled[k].exchange(true, std::memory_order_relaxed)) continue;  // another record had it
      // The manifest's length must be the record's: a disagreement is damage, never a short or
      // long copy into the image.
      const uint64_t want =
          (k + 1 < a.data_off.size() ? a.data_off[k + 1] : a.data_bytes) - a.data_off[k];
      if (want != ref.raw_length) {
        return absl::DataLossError(absl::StrCat("chunk ", ref.id.ToHex(), " is ", ref.raw_length,
                                                " bytes in its record and ", want,
                                                " in the manifest"));
      }
      std::memcpy(a.data.data() + a.data_off[k], raw.data() + view.raw_offset(c), ref.raw_length);
    }
  }
  return absl::OkStatus();
}

absl::Status StoreRestorer::Gather(Arena& a) {
  if (a.ids.empty()) return absl::OkStatus();
  std::vector<absl::Status> results;
  absl::Status st =
      store_.ReadRecordsFor(a.ids, [&](absl::Span<const absl::Span<const uint8_t>> records) {
        results.assign(records.size(), absl::OkStatus());
        pool_.Run(records.size(),
                  [&](size_t i, size_t slot) { results[i] = TakeRecord(a, records[i], slot); });
        stats_.records_read += records.size();
        for (const auto& r : records) stats_.stored_bytes += r.size();
        for (const auto& r : results) {
          if (!r.ok()) {
            return absl::DataLossError(absl::StrCat("store ", store_.location(),
                                                    " handed out a damaged record: ", r.message()));
          }
        }
        return absl::OkStatus();
      });
  if (absl::IsNotFound(st)) {
    return absl::DataLossError(absl::StrCat("the volume backup needs a chunk that store ",
                                            store_.location(),
                                            " does not hold (run verify): ", st.message()));
  }
  CF_RETURN_IF_ERROR(st);
  size_t k = 0;
  for (const auto& e : a.entries) {
    if (e.zero) continue;
    if (!a.filled[k++].load(std::memory_order_relaxed)) {
      return absl::DataLossError(absl::StrCat("store ", store_.location(),
                                              " did not hand out chunk ", e.id.ToHex(),
                                              " that the volume backup needs (run verify)"));
    }
  }
  return absl::OkStatus();
}

absl::Status StoreRestorer::Write(int group, const Arena& a) {
  uint64_t out = a.out_offset;
  size_t k = 0;
  if (writer_->stream()) {
    for (const auto& e : a.entries) {
      if (e.zero) {
        CF_RETURN_IF_ERROR(writer_->AppendZeros(e.length));
        stats_.hole_bytes += e.length;  // as the local restorer counts them: the backup's holes
      } else {
        CF_RETURN_IF_ERROR(
            writer_->Append(absl::MakeConstSpan(a.data.data() + a.data_off[k++], e.length)));
        stats_.data_bytes += e.length;
      }
    }
    return absl::OkStatus();
  }
  // Runs of data entries are contiguous in the image and in `data`: one write each (up to
  // kMaxWrite); holes stay holes.
  for (size_t i = 0; i < a.entries.size();) {
    if (a.entries[i].zero) {
      stats_.hole_bytes += a.entries[i].length;
      out += a.entries[i++].length;
      continue;
    }
    const uint64_t start = out, from = a.data_off[k];
    uint64_t len = 0;
    while (i < a.entries.size() && !a.entries[i].zero &&
           (len == 0 || len + a.entries[i].length <= kMaxWrite)) {
      len += a.entries[i].length;
      out += a.entries[i++].length;
      ++k;
    }
    CF_RETURN_IF_ERROR(
        writer_->Write(group, absl::MakeConstSpan(a.data.data() + from, len), start));
    stats_.data_bytes += len;
  }
  return writer_->Kick();
}

absl::Status StoreRestorer::Run(const std::string& backup_uuid) {
  CF_ASSIGN_OR_RETURN(std::unique_ptr<ManifestSource> manifest, store_.OpenManifest(backup_uuid));
  const VolumeBackupMeta& meta = manifest->meta();
  stats_.bytes = meta.size;
  ticker_.state().bytes_total = meta.size;
  CF_ASSIGN_OR_RETURN(
      writer_, ImageWriter::Open(options_.restore.output, meta.size, options_.restore.overwrite,
                                 absl::StartsWith(meta.chunker, "fixed:"), options_.backend));
  auto run = [&]() -> absl::Status {
    std::vector<ManifestEntry> batch;
    size_t taken = 0;  // of batch
    uint64_t out_offset = 0;
    bool end = false;
    for (int cur = 0; !end; cur = (cur + 1) % kArenas) {
      Arena& a = arenas_[cur];
      CF_RETURN_IF_ERROR(writer_->WaitGroup(cur));
      a.Clear();
      a.out_offset = out_offset;
      uint64_t data = 0;
      while (data < options_.window) {
        if (taken == batch.size()) {
          CF_ASSIGN_OR_RETURN(size_t n, manifest->Next(&batch, 4096));
          taken = 0;
          if (n == 0) {
            end = true;
            break;
          }
        }
        const ManifestEntry& e = batch[taken++];
        a.entries.push_back(e);
        if (!e.zero) data += e.length;
      }
      if (a.entries.empty()) break;
      Plan(a);
      CF_RETURN_IF_ERROR(Gather(a));
      CF_RETURN_IF_ERROR(Write(cur, a));
      for (const auto& e : a.entries) out_offset += e.length;
      ticker_.state().bytes_done = out_offset;
      ticker_.Tick();
    }
    if (out_offset != meta.size) {
      return absl::DataLossError(absl::StrCat("the manifest of ", backup_uuid, " covers ",
                                              out_offset, " bytes, its meta says ", meta.size));
    }
    return writer_->Commit();
  };
  absl::Status st = run();
  if (!st.ok()) writer_->Abandon();
  stats_.seconds = ticker_.Elapsed();
  ticker_.state().bytes_done = meta.size;
  ticker_.Tick(true);
  return st;
}

}  // namespace

absl::Status RestoreFromStore(Store& store, const codec::ChunkHasher& hasher, WorkerPool& pool,
                              const std::string& backup_uuid, const StoreRestoreOptions& options,
                              RestoreStats* stats, const ProgressFn* progress) {
  RestoreStats local;
  return StoreRestorer(store, hasher, pool, options, stats ? *stats : local, progress)
      .Run(backup_uuid);
}

}  // namespace chunkferry::engine
