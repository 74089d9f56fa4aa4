#include "engine/pipeline/restorer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/pipeline/image_writer.h"
#include "io/buffer.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// Largest output write: what one request of a typical block device takes (max_sectors_kb), and
// the size of the store's own pack writes.
constexpr uint64_t kMaxWrite = 4 << 20;
// Windows in memory at once: one being decoded, the one before it (whose records the current
// window may share), and the writes of older ones still in flight.
constexpr int kArenas = 4;

// The records of one window: their stored bytes as read and their decoded raw bytes.
struct Arena {
  std::vector<RecordLocation> locs;
  absl::flat_hash_map<RecordLocation, size_t> slot_of;
  std::vector<size_t> stored_off, raw_off;
  std::vector<uint8_t> stored;
  io::AlignedBuffer raw;
  size_t writes_in_flight = 0;

  void Clear() {
    locs.clear();
    slot_of.clear();
    stored_off.clear();
    raw_off.clear();
  }
};

class Restorer {
 public:
  Restorer(LocalStore& store, WorkerPool& pool, const RestoreOptions& options, RestoreStats& stats,
           const ProgressFn* progress)
      : store_(store),
        pool_(pool),
        options_(options),
        stats_(stats),
        ticker_(progress, "restore"),
        decompressors_(pool.slots()) {}
  absl::Status Run(const std::string& backup_uuid);

 private:
  // A piece of output: `length` bytes at `out_offset` taken from arena `arena`, record slot
  // `slot`, starting at `raw_offset` in that record's raw bytes.
  struct Piece {
    uint64_t out_offset;
    uint32_t length;
    int arena;
    size_t slot;
    uint32_t raw_offset;
  };

  // Restores one window of entries at `out_offset`; once its own records are read, asks the
  // store to start reading `next` (the next window's records) while this one is decoded.
  absl::Status DoWindow(const std::vector<ManifestEntry>& entries, uint64_t out_offset,
                        absl::Span<const RecordLocation> next);
  absl::Status WritePieces(const std::vector<Piece>& pieces);

  LocalStore& store_;
  WorkerPool& pool_;
  const RestoreOptions& options_;
  RestoreStats& stats_;
  ProgressTicker ticker_;
  std::vector<codec::Decompressor> decompressors_;
  Arena arenas_[kArenas];
  int cur_ = 0;
  // Declared after the arenas: destroyed (its writes drained) before they are freed.
  std::unique_ptr<ImageWriter> writer_;
};
static_assert(kArenas <= ImageWriter::kGroups);

absl::Status Restorer::WritePieces(const std::vector<Piece>& pieces) {
  auto raw_of = [&](const Piece& p) {
    const Arena& a = arenas_[p.arena];
    return const_cast<uint8_t*>(a.raw.data()) + a.raw_off[p.slot] + p.raw_offset;
  };
  // Neighbouring pieces that are contiguous in both the output and memory go out as one write.
  // Records are decoded side by side in the order the window first needs them, so a run of
  // records written in sequence (the common case) becomes one large write, not one per record.
  for (size_t i = 0; i < pieces.size();) {
    const Piece& p = pieces[i];
    uint8_t* bytes = raw_of(p);
    uint64_t len = p.length;
    size_t j = i + 1;
    while (j < pieces.size() && pieces[j].arena == p.arena &&
           pieces[j].out_offset == p.out_offset + len && raw_of(pieces[j]) == bytes + len &&
           len + pieces[j].length <= kMaxWrite) {
      len += pieces[j].length;
      ++j;
    }
    CF_RETURN_IF_ERROR(writer_->Write(p.arena, absl::MakeConstSpan(bytes, len), p.out_offset));
    stats_.data_bytes += len;
    i = j;
  }
  return writer_->Kick();  // to the disk now, not when the next window waits for an arena
}

absl::Status Restorer::DoWindow(const std::vector<ManifestEntry>& entries, uint64_t out_offset,
                                absl::Span<const RecordLocation> next) {
  const int prev_arena = (cur_ + kArenas - 1) % kArenas;
  Arena& arena = arenas_[cur_];
  CF_RETURN_IF_ERROR(writer_->WaitGroup(cur_));
  arena.Clear();
  std::vector<Piece> pieces;
  pieces.reserve(entries.size());
  uint64_t off = out_offset;
  struct Pending {
    size_t piece;
    uint16_t slot;  // the chunk's slot in its record
    codec::ChunkId id;
  };
  std::vector<Pending> pending;
  for (const auto& e : entries) {
    if (e.zero) {
      stats_.hole_bytes += e.length;
      off += e.length;
      continue;
    }
    const std::optional<ChunkLocation> loc = store_.index().Find(e.id);
    if (!loc) {
      return absl::DataLossError(absl::StrCat("volume backup needs chunk ", e.id.ToHex(),
                                              " that store ", store_.location(),
                                              " does not hold (run verify)"));
    }
    Piece p{off, static_cast<uint32_t>(e.length), cur_, 0, 0};
    auto prev = arenas_[prev_arena].slot_of.find(loc->record);
    if (prev != arenas_[prev_arena].slot_of.end()) {
      p.arena = prev_arena;
      p.slot = prev->second;
    } else {
      auto [it, added] = arena.slot_of.try_emplace(loc->record, arena.locs.size());
      if (added) arena.locs.push_back(loc->record);
      p.slot = it->second;
    }
    pending.push_back(Pending{pieces.size(), loc->slot, e.id});
    pieces.push_back(p);
    off += e.length;
  }
  // Read this window's records.
  size_t stored_total = 0;
  arena.stored_off.resize(arena.locs.size());
  for (size_t i = 0; i < arena.locs.size(); ++i) {
    arena.stored_off[i] = stored_total;
    stored_total += arena.locs[i].size;
  }
  arena.stored.resize(stored_total);
  CF_RETURN_IF_ERROR(
      store_.ReadRecords(arena.locs, [&](absl::Span<const LocalStore::LocatedRecord> batch) {
        for (const auto& r : batch) {
          std::memcpy(arena.stored.data() + arena.stored_off[r.index], r.bytes.data(),
                      r.bytes.size());
        }
        return absl::OkStatus();
      }));
  stats_.records_read += arena.locs.size();
  stats_.stored_bytes += stored_total;
  store_.PrefetchRecords(next);
  // Parse, then decode and verify on every core.
  std::vector<codec::RecordView> views(arena.locs.size());
  arena.raw_off.resize(arena.locs.size());
  size_t raw_total = 0;
  for (size_t i = 0; i < arena.locs.size(); ++i) {
    CF_ASSIGN_OR_RETURN(
        views[i], codec::ParseRecord(absl::MakeConstSpan(arena.stored.data() + arena.stored_off[i],
                                                         arena.locs[i].size)));
    arena.raw_off[i] = raw_total;
    // Each record's raw bytes start on a block boundary, so that one odd-sized record (a
    // volume's short last chunk, deduped into another volume) leaves the rest aligned for
    // direct writes.
    raw_total += io::AlignUp(views[i].raw_length, io::kDirectAlignment);
  }
  if (arena.raw.size() < raw_total) arena.raw = io::AlignedBuffer(raw_total + (raw_total >> 2));
  std::vector<absl::Status> results(views.size());
  const codec::ChunkHasher* hasher = options_.verify_ids ? &store_.hasher() : nullptr;
  pool_.Run(views.size(), [&](size_t i, size_t slot) {
    results[i] = codec::DecodeRecord(
        views[i], decompressors_[slot], hasher,
        absl::MakeSpan(arena.raw.data() + arena.raw_off[i], views[i].raw_length));
  });
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      return absl::DataLossError(absl::StrCat("record at ", PackFileName(arena.locs[i].pack), ":",
                                              arena.locs[i].offset, " in ", store_.location(),
                                              " is damaged: ", results[i].message()));
    }
  }
  // Resolve each piece's offset inside its record, checking that the record names the chunk
  // the manifest asks for, with the manifest's length: a disagreeing index or manifest must
  // fail the restore, never write a wrong image.
  for (const auto& pend : pending) {
    Piece& p = pieces[pend.piece];
    const Arena& a = arenas_[p.arena];
    codec::RecordView v;
    if (p.arena == cur_) {
      v = views[p.slot];
    } else {
      CF_ASSIGN_OR_RETURN(v, codec::ParseRecord(absl::MakeConstSpan(
                                 a.stored.data() + a.stored_off[p.slot], a.locs[p.slot].size)));
    }
    if (pend.slot >= v.chunk_count || v.chunk(pend.slot).id != pend.id ||
        v.chunk(pend.slot).raw_length != p.length) {
      return absl::DataLossError(absl::StrCat("chunk ", pend.id.ToHex(), " (", p.length,
                                              " bytes at offset ", p.out_offset,
                                              ") does not match the record the index of ",
                                              store_.location(), " points at; run verify"));
    }
    p.raw_offset = v.raw_offset(pend.slot);
  }
  if (writer_->stream()) {
    // Standard output takes bytes in order: holes become zeros.
    size_t k = 0;
    for (const auto& e : entries) {
      if (e.zero) {
        CF_RETURN_IF_ERROR(writer_->AppendZeros(e.length));
      } else {
        const Piece& p = pieces[k++];
        const Arena& a = arenas_[p.arena];
        CF_RETURN_IF_ERROR(writer_->Append(
            absl::MakeConstSpan(a.raw.data() + a.raw_off[p.slot] + p.raw_offset, p.length)));
        stats_.data_bytes += p.length;
      }
    }
  } else {
    CF_RETURN_IF_ERROR(WritePieces(pieces));
  }
  cur_ = (cur_ + 1) % kArenas;
  return absl::OkStatus();
}

absl::Status Restorer::Run(const std::string& backup_uuid) {
  CF_ASSIGN_OR_RETURN(auto reader, store_.OpenManifestReader(backup_uuid));
  const uint64_t size = reader->meta().size;
  stats_.bytes = size;
  ticker_.state().bytes_total = size;
  // Fixed-size chunks put every piece on a block boundary: write them straight to the disk.
  CF_ASSIGN_OR_RETURN(writer_, ImageWriter::Open(options_.output, size, options_.overwrite,
                                                 absl::StartsWith(reader->meta().chunker, "fixed:"),
                                                 store_.queue().backend()));
  auto run = [&]() -> absl::Status {
    // Windows are restored one behind the manifest: `ready` waits until the window after it
    // has been gathered, so that its records can be prefetched while `ready` is decoded.
    std::vector<ManifestEntry> batch, window, ready;
    absl::flat_hash_set<RecordLocation> window_records;
    uint64_t window_bytes = 0, out_offset = 0;
    auto restore_ready = [&](absl::Span<const RecordLocation> next) -> absl::Status {
      if (ready.empty()) return absl::OkStatus();
      CF_RETURN_IF_ERROR(DoWindow(ready, out_offset, next));
      for (const auto& w : ready) out_offset += w.length;
      ready.clear();
      ticker_.state().bytes_done = out_offset;
      ticker_.Tick();
      return absl::OkStatus();
    };
    auto window_done = [&]() -> absl::Status {
      const std::vector<RecordLocation> records(window_records.begin(), window_records.end());
      CF_RETURN_IF_ERROR(restore_ready(records));
      ready.swap(window);
      window.clear();
      window_records.clear();
      window_bytes = 0;
      return absl::OkStatus();
    };
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, reader->Next(&batch, 1024));
      for (const auto& e : batch) {
        window.push_back(e);
        if (!e.zero) {
          window_bytes += e.length;
          const std::optional<ChunkLocation> loc = store_.index().Find(e.id);
          if (loc) window_records.insert(loc->record);
        }
        if (window_bytes >= options_.window || window_records.size() >= options_.window_records) {
          CF_RETURN_IF_ERROR(window_done());
        }
      }
      if (n == 0) break;
    }
    if (!window.empty()) CF_RETURN_IF_ERROR(window_done());
    CF_RETURN_IF_ERROR(restore_ready({}));
    return writer_->Commit();
  };
  absl::Status st = run();
  if (!st.ok()) writer_->Abandon();
  stats_.seconds = ticker_.Elapsed();
  ticker_.state().bytes_done = size;
  ticker_.Tick(true);
  return st;
}

}  // namespace

absl::Status RestoreVolume(LocalStore& store, WorkerPool& pool, const std::string& backup_uuid,
                           const RestoreOptions& options, RestoreStats* stats,
                           const ProgressFn* progress) {
  RestoreStats local;
  return Restorer(store, pool, options, stats ? *stats : local, progress).Run(backup_uuid);
}

}  // namespace chunkferry::engine
