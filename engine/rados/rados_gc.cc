// RadosStore::CollectGarbage (rados_store.h). Runs with the store's lock held alone, so no writer
// appends or publishes meanwhile; a writer whose lock lapsed while it stalled finds out before it
// indexes or publishes (CheckLockHeld), and what it wrote just before is younger than the grace
// period, which keeps it from removal. Order, so that a crash anywhere leaves a store that reads
// correctly (the next collection finishes the job):
//   1. mark: every chunk a published manifest names;
//   2. rewrite: the live records of packs below the repack share go into new packs, durable, and
//      the index is pointed at them (the old copies stay readable until step 4);
//   3. sweep the index: entries of chunks no manifest names are removed;
//   4. remove the packs the index no longer names, and manifest parts the catalog does not name,
//      once older than the grace period.
#include <algorithm>
#include <chrono>
#include <ctime>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/record.h"
#include "engine/rados/rados_aio.h"
#include "engine/rados/rados_store.h"
#include "io/status_macros.h"

namespace chunkferry::engine::rados {
namespace {

constexpr size_t kIndexPage = 4096;
constexpr char kPackPrefix[] = "pack.";
constexpr char kManifestPrefix[] = "manifest.";

// "pack.0000002a" → 0x2a.
bool ParsePackObject(absl::string_view name, uint32_t* id) {
  if (!absl::ConsumePrefix(&name, kPackPrefix) || name.size() != 8) return false;
  return absl::SimpleHexAtoi(name, id) && *id != 0;
}

// "manifest.<uuid>.<tag hex>.<n>" → "<uuid>.<tag hex>".
bool ParseManifestPart(absl::string_view name, std::string* owner) {
  if (!absl::ConsumePrefix(&name, kManifestPrefix)) return false;
  const size_t last = name.rfind('.');
  if (last == absl::string_view::npos) return false;
  *owner = std::string(name.substr(0, last));
  return true;
}

}  // namespace

absl::StatusOr<GcStats> RadosStore::CollectGarbage(const GcOptions& options) {
  CF_RETURN_IF_ERROR(CheckWritable());
  if (!options_.exclusive) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a collection of ", location(), " needs the store's lock alone (open it exclusive)"));
  }
  const auto start = std::chrono::steady_clock::now();
  GcStats stats;
  CF_RETURN_IF_ERROR(FlushImpl());

  // 1. Mark.
  CF_ASSIGN_OR_RETURN(CatalogView catalog, ReadCatalogPrefix(kBackupPrefix));
  std::vector<codec::ChunkId> live;
  absl::flat_hash_set<std::string> named_parts;  // "<uuid>.<tag hex>" of published manifests
  std::vector<ManifestEntry> batch;
  for (const auto& [key, value] : catalog.values) {
    CF_ASSIGN_OR_RETURN(ManifestRef ref, DecodeManifestRef(value, key));
    const std::string uuid = key.substr(sizeof(kBackupPrefix) - 1);
    const std::string part0 = ManifestPartObject(uuid, ref.tag, 0);
    named_parts.insert(part0.substr(sizeof(kManifestPrefix) - 1,
                                    part0.size() - (sizeof(kManifestPrefix) - 1) - 2));
    CF_ASSIGN_OR_RETURN(std::unique_ptr<ManifestSource> m, OpenManifest(uuid));
    ++stats.manifests;
    for (;;) {
      CF_ASSIGN_OR_RETURN(size_t n, m->Next(&batch, 4096));
      if (n == 0) break;
      for (const auto& e : batch) {
        if (e.zero) continue;
        live.push_back(e.id);
        ++stats.chunks_referenced;
      }
    }
  }
  std::sort(live.begin(), live.end());
  live.erase(std::unique(live.begin(), live.end()), live.end());
  auto is_live = [&](const codec::ChunkId& id) {
    return std::binary_search(live.begin(), live.end(), id);
  };

  // What the index names: per pack, its live records; and the dead entries, per shard.
  struct PackUse {
    uint64_t live_bytes = 0;
    std::vector<RecordLocation> records;
  };
  absl::flat_hash_map<uint32_t, PackUse> packs;
  absl::flat_hash_set<RecordLocation> seen;  // records counted (live and dead)
  uint64_t dead_records = 0;
  std::vector<std::set<std::string>> dead(index_shards_);
  for (uint32_t shard = 0; shard < index_shards_; ++shard) {
    std::string after;
    for (bool more = true; more;) {
      std::map<std::string, librados::bufferlist> values;
      int rval = 0;
      librados::ObjectReadOperation op;
      op.omap_get_vals2(after, "", kIndexPage, &values, &more, &rval);
      const int r = pool_->io().operate(IndexObject(shard), &op, nullptr);
      if (r == -ENOENT) break;
      if (r < 0 || rval < 0) {
        return RadosError(r < 0 ? r : rval, "read", IndexObject(shard), location());
      }
      for (auto& [key, value] : values) {
        auto id = ParseIndexKey(key);
        auto loc = DecodeIndexValue(value.to_str());
        if (!id.ok() || !loc.ok()) {
          return absl::DataLossError(absl::StrCat("index of ", location(), " (", IndexObject(shard),
                                                  ") holds a damaged entry"));
        }
        if (!is_live(*id)) {
          dead[shard].insert(key);
          if (seen.insert(*loc).second) ++dead_records;
          continue;
        }
        if (seen.insert(*loc).second) {
          ++stats.records_live;
          PackUse& use = packs[loc->pack];
          use.live_bytes += loc->size;
          use.records.push_back(*loc);
        }
      }
      if (!values.empty()) after = values.rbegin()->first;
    }
  }
  // (A record holding live and dead chunks counts once, as live when its live entry came first.)
  stats.records_total = stats.records_live + dead_records;
  seen.clear();

  // The objects: packs (with their sizes and ages) and manifest parts.
  const time_t now = std::time(nullptr);
  struct Object {
    std::string name;
    uint32_t pack = 0;              // 0: a manifest part
    librados::IoCtx* io = nullptr;  // the pool it is in
    uint64_t size = 0;
    time_t mtime = 0;
    Aio aio;
  };
  std::deque<Object> objects;
  // Packs are in the data pool, manifest parts in the store's own (one and the same without a
  // data pool).
  librados::IoCtx& meta_io = pool_->io();
  librados::IoCtx& data_io = pool_->data_io();
  try {
    std::vector<librados::IoCtx*> pools = {&meta_io};
    if (&data_io != &meta_io) pools.push_back(&data_io);
    for (librados::IoCtx* io : pools) {
      for (auto it = io->nobjects_begin(); it != io->nobjects_end(); ++it) {
        const std::string& name = it->get_oid();
        uint32_t id = 0;
        std::string owner;
        if (io == &data_io && ParsePackObject(name, &id)) {
          objects.push_back(Object{name, id, io, 0, 0, Aio()});
        } else if (io == &meta_io && ParseManifestPart(name, &owner) &&
                   !named_parts.contains(owner)) {
          objects.push_back(Object{name, 0, io, 0, 0, Aio()});
        }
      }
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("list the objects of ", location(), ": ", e.what()));
  }
  for (auto& o : objects) {
    const int r = o.aio.Submit(
        [&](librados::AioCompletion* c) { return o.io->aio_stat(o.name, c, &o.size, &o.mtime); });
    if (r < 0) return RadosError(r, "stat", o.name, location());
  }
  std::vector<Object*> remove;
  std::vector<uint32_t> rewrite;
  for (auto& o : objects) {
    const int r = o.aio.Wait();
    if (r == -ENOENT) continue;
    if (r < 0) return RadosError(r, "stat", o.name, location());
    const bool old_enough = now - o.mtime >= static_cast<time_t>(options_.gc_grace_seconds);
    if (o.pack == 0) {
      if (old_enough) remove.push_back(&o);  // a part no published manifest names
      continue;
    }
    ++stats.packs_before;
    stats.bytes_before += o.size;
    auto use = packs.find(o.pack);
    if (use == packs.end()) {
      if (old_enough) remove.push_back(&o);
    } else if (options.repack_below > 0 && static_cast<double>(use->second.live_bytes) <
                                               options.repack_below * static_cast<double>(o.size)) {
      rewrite.push_back(o.pack);
      remove.push_back(&o);
    }
  }
  if (options.dry_run) {
    for (Object* o : remove) {
      if (o->pack != 0) {
        ++(packs.contains(o->pack) ? stats.packs_rewritten : stats.packs_removed);
        stats.bytes_removed += o->size;
      }
    }
    for (uint32_t p : rewrite) stats.bytes_copied += packs[p].live_bytes;
    stats.bytes_reclaimed = stats.bytes_removed - std::min(stats.bytes_removed, stats.bytes_copied);
    stats.milliseconds =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - start)
                                  .count());
    return stats;
  }

  // 2. Rewrite the live records of the sparse packs into new ones, and index them there.
  for (uint32_t p : rewrite) {
    PackUse& use = packs[p];
    std::sort(use.records.begin(), use.records.end());
    for (size_t from = 0; from < use.records.size();) {
      // One read per pack, records of at most ~copy of a pack target at a time.
      const RecordLocation& first = use.records[from];
      size_t to = from;
      uint64_t end = first.offset;
      while (to < use.records.size() &&
             use.records[to].offset + use.records[to].size - first.offset <= options_.pack_target) {
        end = use.records[to].offset + use.records[to].size;
        ++to;
      }
      if (to == from) {
        end = first.offset + first.size;
        to = from + 1;
      }
      librados::bufferlist bl;
      const int r = pool_->data_io().read(PackObject(p), bl, end - first.offset, first.offset);
      if (r < 0) return RadosError(r, "read", PackObject(p), location());
      if (bl.length() != end - first.offset) {
        return absl::DataLossError(absl::StrCat("store ", location(), ": ", PackObject(p),
                                                " is shorter than the records the index names"));
      }
      const uint8_t* base = reinterpret_cast<const uint8_t*>(bl.c_str());
      for (size_t i = from; i < to; ++i) {
        const RecordLocation& loc = use.records[i];
        absl::Span<const uint8_t> bytes(base + (loc.offset - first.offset), loc.size);
        auto view = codec::ParseRecord(bytes);
        if (!view.ok() || view->size != bytes.size() || !codec::CheckPayload(*view).ok()) {
          return absl::DataLossError(absl::StrCat("store ", location(), ": ", PackObject(p),
                                                  " offset ", loc.offset,
                                                  " is damaged; run verify before collecting"));
        }
        if (open_pack_ && !open_pack_->entries.empty() &&
            open_pack_->bytes.size() + bytes.size() > kPackHeaderSize + options_.pack_target) {
          CF_RETURN_IF_ERROR(SealPack());
        }
        if (!open_pack_) CF_RETURN_IF_ERROR(StartPack());
        PackWrite& w = *open_pack_;
        RecordLocation moved{w.id, loc.size, w.bytes.size()};
        w.bytes.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        for (uint32_t c = 0; c < view->chunk_count; ++c) {
          const codec::ChunkId id = view->chunk(c).id;
          if (is_live(id)) w.entries.emplace_back(id, moved);
        }
        ++stats.records_copied;
        stats.bytes_copied += loc.size;
      }
      from = to;
    }
    ++stats.packs_rewritten;
  }
  CF_RETURN_IF_ERROR(FlushImpl());  // the copies durable and indexed before any removal

  // 3. Sweep the index (what this store vouched for may go now).
  vouched_.clear();
  for (uint32_t shard = 0; shard < index_shards_; ++shard) {
    if (dead[shard].empty()) continue;
    librados::ObjectWriteOperation op;
    op.omap_rm_keys(dead[shard]);
    const int r = pool_->io().operate(IndexObject(shard), &op);
    if (r < 0) return RadosError(r, "sweep", IndexObject(shard), location());
  }

  // 4. Remove what nothing names.
  std::deque<std::pair<Object*, Aio>> removing;
  for (Object* o : remove) {
    auto& [obj, aio] = removing.emplace_back(o, Aio());
    const int r =
        aio.Submit([&](librados::AioCompletion* c) { return obj->io->aio_remove(obj->name, c); });
    if (r < 0) return RadosError(r, "remove", obj->name, location());
  }
  for (auto& [o, aio] : removing) {
    const int r = aio.Wait();
    if (r < 0 && r != -ENOENT) return RadosError(r, "remove", o->name, location());
    if (o->pack != 0) {
      if (!packs.contains(o->pack)) ++stats.packs_removed;
      stats.bytes_removed += o->size;
    }
  }
  stats.bytes_reclaimed = stats.bytes_removed - std::min(stats.bytes_removed, stats.bytes_copied);
  stats.milliseconds = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - start)
                                                 .count());
  return stats;
}

}  // namespace chunkferry::engine::rados
