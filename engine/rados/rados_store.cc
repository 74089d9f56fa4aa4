#include "engine/rados/rados_store.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <list>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "engine/format/pack.h"
#include "engine/rados/rados_aio.h"
#include "engine/store/store_descriptor.h"
#include "io/status_macros.h"

namespace chunkferry::engine::rados {
namespace {

// ReadRecordsFor merges neighbouring records of a pack into reads of at most this many bytes,
// across gaps of at most kReadGapMax.
constexpr uint64_t kReadRangeMax = 4u << 20;
constexpr uint64_t kReadGapMax = 64u << 10;
// Byte offset of the pack id in a pack header (engine/format/pack.h).
constexpr size_t kPackIdOffset = 8;

uint64_t RandomSeed() {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) {
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           static_cast<uint64_t>(::getpid());
  }
  return seed;
}

}  // namespace

// ---- Init and open. ----

absl::Status RadosStore::Init(const RadosUrl& url, const RadosClientOptions& client,
                              const StoreInitOptions& options, const RadosInitOptions& rados) {
  CF_ASSIGN_OR_RETURN(StoreInfo info, NewStoreInfo(options));
  if (rados.index_shards == 0 || rados.index_shards > kMaxIndexShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("index shards must be between 1 and ", kMaxIndexShards));
  }
  if (!rados.data_pool.empty()) CF_RETURN_IF_ERROR(CheckPoolName(rados.data_pool));
  CF_ASSIGN_OR_RETURN(std::unique_ptr<RadosPool> pool, RadosPool::Connect(url, client));
  // The data pool must exist now, and take a write: an EC pool with no room or rights fails here,
  // not at the first sync.
  CF_RETURN_IF_ERROR(pool->OpenDataPool(rados.data_pool));
  librados::IoCtx& io = pool->io();
  uint64_t size = 0;
  time_t mtime = 0;
  int r = io.stat(kDescriptorObject, &size, &mtime);
  if (r == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("cannot create a store in ", url.ToString(), ": it already holds one"));
  }
  if (r != -ENOENT) return RadosError(r, "stat", kDescriptorObject, url.ToString());
  auto create = [&](const char* oid, const std::string& bytes) -> absl::Status {
    librados::ObjectWriteOperation op;
    op.create(true);
    if (!bytes.empty()) {
      librados::bufferlist bl;
      bl.append(bytes);
      op.write_full(bl);
    }
    const int rc = io.operate(oid, &op);
    if (rc == -EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "cannot create a store in ", url.ToString(), ": ", oid,
          " exists (another store being created there, or the leftovers of one: remove them)"));
    }
    return rc < 0 ? RadosError(rc, "create", oid, url.ToString()) : absl::OkStatus();
  };
  if (!options.id_key_hex.empty()) CF_RETURN_IF_ERROR(create(kIdKeyObject, options.id_key_hex));
  CF_RETURN_IF_ERROR(create(kCatalogObject, ""));
  if (!pool->data_pool().empty()) {
    constexpr char kProbe[] = "chunkferry.data_probe";
    librados::bufferlist probe;
    probe.append("probe");
    int rc = pool->data_io().write_full(kProbe, probe);
    if (rc >= 0) rc = pool->data_io().remove(kProbe);
    if (rc < 0)
      return RadosError(rc, "write a probe into data pool", rados.data_pool, url.ToString());
  }
  // The descriptor goes last: a pool without one holds no store.
  DescriptorExtras extras = {{kIndexShardsKey, absl::StrCat(rados.index_shards)}};
  if (!pool->data_pool().empty()) extras[kDataPoolKey] = pool->data_pool();
  return create(kDescriptorObject, FormatStoreDescriptor(info, extras));
}

RadosStore::RadosStore(std::unique_ptr<RadosPool> pool, RadosStoreOptions options)
    : pool_(std::move(pool)), options_(std::move(options)), random_(RandomSeed()) {}

absl::StatusOr<std::unique_ptr<RadosStore>> RadosStore::Open(const RadosUrl& url,
                                                             const RadosStoreOptions& options) {
  if (options.pack_target < (1u << 16) || options.packs_in_flight == 0 ||
      options.index_batch == 0 || options.lookups_in_flight == 0 || options.ids_per_lookup == 0 ||
      options.reads_in_flight == 0 || options.lock_seconds < 3) {
    return absl::InvalidArgumentError("RADOS store options out of range");
  }
  CF_ASSIGN_OR_RETURN(std::unique_ptr<RadosPool> pool, RadosPool::Connect(url, options.client));
  std::unique_ptr<RadosStore> s(new RadosStore(std::move(pool), options));
  librados::IoCtx& io = s->pool_->io();
  const std::string where = url.ToString();
  librados::bufferlist bl;
  int r = io.read(kDescriptorObject, bl, 1 << 20, 0);
  if (r == -ENOENT) {
    return absl::NotFoundError(
        absl::StrCat(where, " is not a chunkferry store (no ", kDescriptorObject, " object)"));
  }
  if (r < 0) return RadosError(r, "read", kDescriptorObject, where);
  DescriptorExtras extras;
  CF_ASSIGN_OR_RETURN(
      s->info_,
      ParseStoreDescriptor(bl.to_str(), absl::StrCat(where, " ", kDescriptorObject), &extras));
  auto shards = extras.find(kIndexShardsKey);
  auto data_pool = extras.find(kDataPoolKey);
  if (shards == extras.end() || !absl::SimpleAtoi(shards->second, &s->index_shards_) ||
      s->index_shards_ == 0 || s->index_shards_ > kMaxIndexShards ||
      extras.size() != 1 + (data_pool != extras.end() ? 1 : 0) ||
      (data_pool != extras.end() && !CheckPoolName(data_pool->second).ok())) {
    return absl::DataLossError(absl::StrCat("store descriptor ", where, ": ", kIndexShardsKey,
                                            " is missing or out of range, ", kDataPoolKey,
                                            " is not a pool name, or a key is unknown"));
  }
  if (data_pool != extras.end()) CF_RETURN_IF_ERROR(s->pool_->OpenDataPool(data_pool->second));
  librados::bufferlist key;
  r = io.read(kIdKeyObject, key, 4096, 0);
  if (r >= 0) {
    CF_ASSIGN_OR_RETURN(s->hasher_, HasherFromIdKey(key.to_str()));
    s->info_.key_fingerprint = s->hasher_.key_fingerprint();
  } else if (r != -ENOENT) {
    return RadosError(r, "read", kIdKeyObject, where);
  }
  const size_t slots = options.pool ? options.pool->slots() : 1;
  s->decompressors_.resize(slots);
  s->scratch_.resize(slots);
  if (options.writable && !options.lock_on_demand) {
    CF_RETURN_IF_ERROR(s->TakeWriteLock());
    CF_RETURN_IF_ERROR(s->FinishInterruptedDeletes());
  }
  return s;
}

RadosStore::~RadosStore() { (void)Close(); }

absl::Status RadosStore::Close() {
  if (closed_) return absl::OkStatus();
  absl::Status st;
  if (options_.writable) {
    st = FlushImpl();
    if (!st.ok()) DropUnflushed();
  }
  closed_ = true;
  ReleaseWriteLock();
  return st;
}

void RadosStore::ReleaseWriteLock() {
  StopRenewing();
  if (locked_) {
    (void)pool_->io().unlock(kLockObject, kWriteLockName, lock_cookie_);
    locked_ = false;
  }
  lock_lost_ = false;
  vouched_.clear();
}

absl::Status RadosStore::BeginWrites() {
  if (!options_.lock_on_demand) return absl::OkStatus();
  CF_RETURN_IF_ERROR(CheckWritable());
  if (write_spans_ > 0) {
    ++write_spans_;
    return absl::OkStatus();
  }
  CF_RETURN_IF_ERROR(TakeWriteLock());
  if (absl::Status st = FinishInterruptedDeletes(); !st.ok()) {
    ReleaseWriteLock();
    return st;
  }
  write_spans_ = 1;
  return absl::OkStatus();
}

absl::Status RadosStore::EndWrites() {
  if (!options_.lock_on_demand || write_spans_ == 0) return absl::OkStatus();
  if (--write_spans_ > 0) return absl::OkStatus();
  // What a span appended and did not flush (its client went away) becomes durable garbage for
  // a collection, rather than records written after the lock is given back.
  absl::Status st = FlushImpl();
  if (!st.ok()) DropUnflushed();
  ReleaseWriteLock();
  return st;
}

absl::Status RadosStore::CheckWriting() const {
  CF_RETURN_IF_ERROR(CheckWritable());
  if (options_.lock_on_demand && !locked_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", location(), ": a write outside BeginWrites (the write lock is not held)"));
  }
  return absl::OkStatus();
}

absl::Status RadosStore::CheckWritable() const {
  if (closed_)
    return absl::FailedPreconditionError(absl::StrCat("store ", location(), " is closed"));
  if (!options_.writable) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", location(), " was opened read-only"));
  }
  return absl::OkStatus();
}

// ---- The write lock. ----

absl::Status RadosStore::TakeWriteLock() {
  char host[256] = {};
  (void)::gethostname(host, sizeof(host) - 1);
  lock_cookie_ = absl::StrCat(pool_->client_id(), "-", random_());
  const std::string desc =
      absl::StrCat(options_.exclusive ? "chunkferry collection" : "chunkferry writer", " pid ",
                   ::getpid(), " on ", host);
  struct timeval duration = {static_cast<time_t>(options_.lock_seconds), 0};
  librados::IoCtx& io = pool_->io();
  const int r = options_.exclusive ? io.lock_exclusive(kLockObject, kWriteLockName, lock_cookie_,
                                                       desc, &duration, 0)
                                   : io.lock_shared(kLockObject, kWriteLockName, lock_cookie_,
                                                    "chunkferry", desc, &duration, 0);
  if (r == -EBUSY || r == -EEXIST) {
    // Say who holds it.
    int exclusive = 0;
    std::string tag;
    std::list<librados::locker_t> lockers;
    std::string holders;
    if (io.list_lockers(kLockObject, kWriteLockName, &exclusive, &tag, &lockers) >= 0) {
      for (const auto& l : lockers) {
        absl::StrAppend(&holders, holders.empty() ? "" : "; ", l.client, " at ", l.address);
      }
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", location(), " is held by ",
        exclusive ? "a garbage collection" : absl::StrCat(lockers.size(), " writer(s)"),
        holders.empty() ? "" : absl::StrCat(" (", holders, ")"), "; try again when ",
        exclusive || lockers.size() == 1 ? "it has" : "they have",
        " finished (a lock of a process that died lapses after its duration)"));
  }
  if (r < 0) return RadosError(r, "lock", kLockObject, location());
  locked_ = true;
  lock_io_.dup(pool_->io());
  renewer_ = std::thread([this] { RenewLoop(); });
  return absl::OkStatus();
}

int RadosStore::RenewLock(librados::IoCtx& io) {
  struct timeval duration = {static_cast<time_t>(options_.lock_seconds), 0};
  // MUST_RENEW: a lock that ran out (and may have been taken and released by a collection) is
  // not silently taken again.
  const uint8_t flags = LIBRADOS_LOCK_FLAG_MUST_RENEW;
  return options_.exclusive
             ? io.lock_exclusive(kLockObject, kWriteLockName, lock_cookie_, "", &duration, flags)
             : io.lock_shared(kLockObject, kWriteLockName, lock_cookie_, "chunkferry", "",
                              &duration, flags);
}

absl::Status RadosStore::CheckLockHeld() {
  if (!locked_) return absl::OkStatus();
  const int r = lock_lost_ ? -ENOENT : RenewLock(pool_->io());
  if (r == -ENOENT || r == -EBUSY || r == -EEXIST) {
    lock_lost_ = true;
    vouched_.clear();
    return absl::AbortedError(absl::StrCat(
        "lost the lock on store ", location(),
        " (this process stalled past its duration, and a collection may have run): what it "
        "appended since its last flush is given up; run it again"));
  }
  return r < 0 ? RadosError(r, "renew the lock on", kLockObject, location()) : absl::OkStatus();
}

void RadosStore::RenewLoop() {
  std::unique_lock<std::mutex> lock(renew_mu_);
  const auto period = std::chrono::milliseconds(options_.lock_seconds * 1000 / 3);
  while (!renew_cv_.wait_for(lock, period, [this] { return stop_renewing_; })) {
    // Another failure is retried at the next period; the lock lasts its duration meanwhile.
    const int r = RenewLock(lock_io_);
    if (r == -ENOENT || r == -EBUSY || r == -EEXIST) lock_lost_ = true;
  }
}

void RadosStore::StopRenewing() {
  {
    std::lock_guard<std::mutex> lock(renew_mu_);
    stop_renewing_ = true;
  }
  renew_cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  std::lock_guard<std::mutex> lock(renew_mu_);
  stop_renewing_ = false;  // for the next lock (lock_on_demand)
}

// ---- Index lookups. ----

absl::Status RadosStore::Lookup(absl::Span<const codec::ChunkId> ids,
                                std::vector<std::optional<RecordLocation>>* found) {
  found->assign(ids.size(), std::nullopt);
  // The ids of each shard, then one read per ids_per_lookup of them.
  std::vector<std::vector<size_t>> by_shard(index_shards_);
  for (size_t i = 0; i < ids.size(); ++i) by_shard[IndexShard(ids[i], index_shards_)].push_back(i);
  struct Read {
    uint32_t shard = 0;
    std::vector<size_t> which;
    std::map<std::string, librados::bufferlist> values;
    int rval = 0;
    Aio aio;
  };
  std::vector<Read> reads;
  for (uint32_t shard = 0; shard < index_shards_; ++shard) {
    const auto& all = by_shard[shard];
    for (size_t from = 0; from < all.size(); from += options_.ids_per_lookup) {
      Read& rd = reads.emplace_back();
      rd.shard = shard;
      rd.which.assign(all.begin() + static_cast<ptrdiff_t>(from),
                      all.begin() + static_cast<ptrdiff_t>(
                                        std::min(all.size(), from + options_.ids_per_lookup)));
    }
  }
  absl::Status status;
  auto finish = [&](Read& rd) {
    if (!rd.aio.submitted()) return;
    const int r = rd.aio.Wait();
    if (r == -ENOENT) return;  // a shard nothing was indexed in yet
    if (r < 0 || rd.rval < 0) {
      if (status.ok()) {
        status =
            RadosError(r < 0 ? r : rd.rval, "look up chunks in", IndexObject(rd.shard), location());
      }
      return;
    }
    for (size_t i : rd.which) {
      auto it = rd.values.find(IndexKey(ids[i]));
      if (it == rd.values.end()) continue;
      auto loc = DecodeIndexValue(it->second.to_str());
      if (!loc.ok()) {
        if (status.ok()) {
          status = absl::DataLossError(absl::StrCat("index of ", location(), " (",
                                                    IndexObject(rd.shard), "): chunk ",
                                                    ids[i].ToHex(), ": ", loc.status().message()));
        }
        continue;
      }
      (*found)[i] = *loc;
    }
  };
  size_t done = 0;
  for (size_t next = 0; next < reads.size(); ++next) {
    while (next - done >= options_.lookups_in_flight) finish(reads[done++]);
    Read& rd = reads[next];
    std::set<std::string> keys;
    for (size_t i : rd.which) keys.insert(IndexKey(ids[i]));
    librados::ObjectReadOperation op;
    op.omap_get_vals_by_keys(keys, &rd.values, &rd.rval);
    const int r = rd.aio.Submit([&](librados::AioCompletion* c) {
      return pool_->io().aio_operate(IndexObject(rd.shard), c, &op, nullptr);
    });
    if (r < 0) {
      while (done < next) finish(reads[done++]);
      return RadosError(r, "look up chunks in", IndexObject(rd.shard), location());
    }
  }
  while (done < reads.size()) finish(reads[done++]);
  return status;
}

absl::Status RadosStore::HaveChunks(absl::Span<const codec::ChunkId> ids, std::vector<bool>* have) {
  if (closed_) return CheckWritable();
  have->assign(ids.size(), false);
  std::vector<codec::ChunkId> ask;
  std::vector<size_t> where;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (unflushed_.contains(ids[i])) {
      (*have)[i] = true;
    } else {
      ask.push_back(ids[i]);
      where.push_back(i);
    }
  }
  std::vector<std::optional<RecordLocation>> found;
  CF_RETURN_IF_ERROR(Lookup(ask, &found));
  for (size_t k = 0; k < ask.size(); ++k) {
    (*have)[where[k]] = found[k].has_value();
    if (found[k] && options_.writable) Vouch(ask[k]);
  }
  return absl::OkStatus();
}

// ---- Reads. ----

absl::Status RadosStore::ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                                        const RecordSink& sink) {
  if (closed_) return CheckWritable();
  for (const auto& id : ids) {
    if (unflushed_.contains(id)) {
      // Records of this writer not indexed yet: make them durable and indexed first.
      CF_RETURN_IF_ERROR(FlushImpl());
      break;
    }
  }
  // A collection may move records between a lookup and its read (it rewrites the live records of
  // a pack into a new one, points the index there and removes the old pack): the ids of a pack
  // found gone are looked up again and read where they are now.
  std::vector<codec::ChunkId> moved;
  CF_RETURN_IF_ERROR(ReadLookedUp(ids, sink, /*last_try=*/false, &moved));
  for (int retry = 1; !moved.empty(); ++retry) {
    ++reads_retried_;
    const std::vector<codec::ChunkId> again = std::move(moved);
    moved.clear();
    CF_RETURN_IF_ERROR(ReadLookedUp(again, sink, retry == kReadRetries, &moved));
  }
  return absl::OkStatus();
}

absl::Status RadosStore::ReadLookedUp(absl::Span<const codec::ChunkId> ids, const RecordSink& sink,
                                      bool last_try, std::vector<codec::ChunkId>* moved) {
  std::vector<std::optional<RecordLocation>> found;
  CF_RETURN_IF_ERROR(Lookup(ids, &found));
  if (options_.after_lookup_for_test) options_.after_lookup_for_test();
  std::vector<RecordLocation> locs;
  locs.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!found[i]) {
      return absl::NotFoundError(
          absl::StrCat("store ", location(), " has no chunk ", ids[i].ToHex()));
    }
    locs.push_back(*found[i]);
  }
  std::sort(locs.begin(), locs.end());
  locs.erase(std::unique(locs.begin(), locs.end()), locs.end());
  // Neighbouring records of a pack in one read.
  struct Range {
    uint32_t pack;
    uint64_t offset, length;
    size_t first, last;  // locs[first, last)
    librados::bufferlist bl;
    int rval = 0;
    Aio aio;
  };
  std::vector<Range> ranges;
  for (size_t i = 0; i < locs.size(); ++i) {
    const RecordLocation& l = locs[i];
    if (!ranges.empty()) {
      Range& r = ranges.back();
      const uint64_t end = r.offset + r.length;
      if (r.pack == l.pack && l.offset >= end && l.offset - end <= kReadGapMax &&
          l.offset + l.size - r.offset <= kReadRangeMax) {
        r.length = l.offset + l.size - r.offset;
        r.last = i + 1;
        continue;
      }
    }
    Range& r = ranges.emplace_back();
    r.pack = l.pack;
    r.offset = l.offset;
    r.length = l.size;
    r.first = i;
    r.last = i + 1;
  }
  absl::Status status;
  absl::flat_hash_set<uint32_t> gone;  // packs removed since the lookup
  std::vector<absl::Span<const uint8_t>> batch;
  auto finish = [&](Range& r) {
    if (!r.aio.submitted()) return;
    const int rc = r.aio.Wait();
    if (!status.ok()) return;
    if (rc == -ENOENT && !last_try) {
      gone.insert(r.pack);
      return;
    }
    if (rc < 0) {
      status = rc == -ENOENT ? absl::DataLossError(absl::StrCat(
                                   "store ", location(), ": the index names records in ",
                                   PackObject(r.pack), ", which is gone"))
                             : RadosError(rc, "read", PackObject(r.pack), location());
      return;
    }
    if (r.bl.length() < r.length) {
      status = absl::DataLossError(absl::StrCat("store ", location(), ": ", PackObject(r.pack),
                                                " ends at ", r.offset + r.bl.length(),
                                                ", before the records the index names"));
      return;
    }
    const uint8_t* base = reinterpret_cast<const uint8_t*>(r.bl.c_str());
    batch.clear();
    for (size_t i = r.first; i < r.last; ++i) {
      absl::Span<const uint8_t> bytes(base + (locs[i].offset - r.offset), locs[i].size);
      auto view = codec::ParseRecord(bytes);
      if (!view.ok() || view->size != bytes.size()) {
        status = absl::DataLossError(
            absl::StrCat("store ", location(), ": ", PackObject(r.pack), " offset ", locs[i].offset,
                         ": not the record the index names",
                         view.ok() ? "" : absl::StrCat(" (", view.status().message(), ")")));
        return;
      }
      batch.push_back(bytes);
    }
    status = sink(batch);
    r.bl.clear();
  };
  size_t done = 0;
  for (size_t next = 0; next < ranges.size() && status.ok(); ++next) {
    while (next - done >= options_.reads_in_flight) finish(ranges[done++]);
    Range& r = ranges[next];
    const int rc = r.aio.Submit([&](librados::AioCompletion* c) {
      return pool_->data_io().aio_read(PackObject(r.pack), c, &r.bl, r.length, r.offset);
    });
    if (rc < 0) {
      status = RadosError(rc, "read", PackObject(r.pack), location());
      break;
    }
  }
  while (done < ranges.size()) finish(ranges[done++]);
  if (status.ok() && !gone.empty()) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (gone.contains(found[i]->pack)) moved->push_back(ids[i]);
    }
  }
  return status;
}

// ---- Appends. ----

uint32_t RadosStore::NewPackId() {
  for (;;) {
    const auto id = static_cast<uint32_t>(random_());
    if (id != 0) return id;
  }
}

absl::Status RadosStore::StartPack() {
  PackWrite& p = open_pack_.emplace();
  p.id = NewPackId();
  if (!spare_buffers_.empty()) {
    p.bytes = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
  }
  // Room for a whole pack up front, kept across packs: a buffer that grew by doubling would
  // copy itself on the way and end at twice the pack's size.
  // The header is copied in: assigning the temporary would move its small buffer in and drop
  // this one (measured: 224 k page faults importing 1 GiB, every pack regrown 1 → 16 MiB).
  p.bytes.reserve(kPackHeaderSize + options_.pack_target);
  const std::string header = EncodePackHeader(p.id, info_.uuid);
  p.bytes.assign(header.data(), header.size());
  return absl::OkStatus();
}

absl::Status RadosStore::SubmitPack(PackWrite& pack) {
  if (pack.completion != nullptr) pack.completion->release();
  pack.completion = librados::Rados::aio_create_completion();
  librados::ObjectWriteOperation op;
  op.create(true);  // write-once: a name another writer took fails, and is retried under a new one
  librados::bufferlist bl =
      librados::bufferlist::static_from_mem(pack.bytes.data(), pack.bytes.size());
  op.write_full(bl);
  const int r = pool_->data_io().aio_operate(PackObject(pack.id), pack.completion, &op);
  if (r < 0) {
    pack.completion->release();
    pack.completion = nullptr;  // nothing in flight: ReapPack reports it
    return RadosError(r, "write", PackObject(pack.id), location());
  }
  return absl::OkStatus();
}

absl::Status RadosStore::SealPack() {
  if (!open_pack_ || open_pack_->entries.empty()) return absl::OkStatus();
  while (in_flight_.size() >= options_.packs_in_flight) CF_RETURN_IF_ERROR(ReapPack());
  in_flight_.push_back(std::move(*open_pack_));
  open_pack_.reset();
  return SubmitPack(in_flight_.back());
}

absl::Status RadosStore::ReapPack() {
  PackWrite& p = in_flight_.front();
  if (p.completion == nullptr) {
    const std::string name = PackObject(p.id);
    in_flight_.pop_front();
    return absl::UnavailableError(absl::StrCat("write ", name, " in ", location(), ": not sent"));
  }
  p.completion->wait_for_complete();
  int r = p.completion->get_return_value();
  while (r == -EEXIST) {
    // Another writer took the name first: the same bytes under a new one.
    const uint32_t old = p.id;
    p.id = NewPackId();
    StoreU32(reinterpret_cast<uint8_t*>(p.bytes.data()) + kPackIdOffset, p.id);
    for (auto& [id, loc] : p.entries) {
      if (loc.pack == old) loc.pack = p.id;
    }
    CF_RETURN_IF_ERROR(SubmitPack(p));  // on failure the pack stays, with nothing in flight
    p.completion->wait_for_complete();
    r = p.completion->get_return_value();
  }
  p.completion->release();
  p.completion = nullptr;
  absl::Status st;
  if (r < 0) {
    st = RadosError(r, "write", PackObject(p.id), location());
  } else {
    ++packs_written_;
    unindexed_.insert(unindexed_.end(), p.entries.begin(), p.entries.end());
  }
  spare_buffers_.push_back(std::move(p.bytes));
  in_flight_.pop_front();
  CF_RETURN_IF_ERROR(st);
  if (unindexed_.size() >= options_.index_batch) return WriteIndex();
  return absl::OkStatus();
}

absl::Status RadosStore::StartIndexWrite() {
  if (unindexed_.empty()) return absl::OkStatus();
  CF_RETURN_IF_ERROR(CheckLockHeld());
  IndexWrite& w = index_write_.emplace();
  w.entries = std::move(unindexed_);
  unindexed_.clear();
  // The values live in one buffer the bufferlists point into, kept until the writes are done: a
  // bufferlist appended to would allocate a page of its own for 16 bytes. All of them share one
  // static raw buffer, so each value costs one small node, not a raw buffer and a node.
  w.values.reserve(w.entries.size() * kIndexValueSize);
  for (const auto& e : w.entries) w.values += EncodeIndexValue(e.second);
  const ceph::bufferptr values(
      ceph::buffer::create_static(static_cast<unsigned>(w.values.size()), w.values.data()));
  // The maps are filled in key order, each entry placed at the end without a search: librados
  // takes nothing but a std::map, and building it was most of the index writes' CPU (perf).
  struct Keyed {
    uint32_t shard;
    std::string key;
    uint32_t entry;
  };
  std::vector<Keyed> keyed;
  keyed.reserve(w.entries.size());
  for (size_t i = 0; i < w.entries.size(); ++i) {
    const codec::ChunkId& id = w.entries[i].first;
    keyed.push_back({IndexShard(id, index_shards_), IndexKey(id), static_cast<uint32_t>(i)});
  }
  std::sort(keyed.begin(), keyed.end(), [](const Keyed& a, const Keyed& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.key < b.key;
  });
  for (size_t begin = 0; begin < keyed.size();) {
    const uint32_t shard = keyed[begin].shard;
    std::map<std::string, librados::bufferlist> entries;
    size_t end = begin;
    for (; end < keyed.size() && keyed[end].shard == shard; ++end) {
      auto it =
          entries.emplace_hint(entries.end(), std::move(keyed[end].key), librados::bufferlist());
      if (it->second.length() != 0) continue;  // a chunk twice in one batch: its first record
      it->second.append(values, keyed[end].entry * kIndexValueSize, kIndexValueSize);
    }
    begin = end;
    auto& [s, aio] = w.writes.emplace_back(shard, Aio());
    librados::ObjectWriteOperation op;
    op.omap_set(entries);
    const int r = aio.Submit([&](librados::AioCompletion* c) {
      return pool_->io().aio_operate(IndexObject(s), c, &op);
    });
    if (r < 0 && w.status.ok())
      w.status = RadosError(r, "index chunks in", IndexObject(s), location());
  }
  return absl::OkStatus();
}

absl::Status RadosStore::FinishIndexWrite() {
  if (!index_write_) return absl::OkStatus();
  IndexWrite& w = *index_write_;
  for (auto& [shard, aio] : w.writes) {
    const int r = aio.Wait();
    if (r < 0 && w.status.ok()) {
      w.status = RadosError(r, "index chunks in", IndexObject(shard), location());
    }
  }
  absl::Status st = w.status;
  if (st.ok()) {
    for (const auto& e : w.entries) {
      unflushed_.erase(e.first);
      Vouch(e.first);
    }
  }
  index_write_.reset();
  return st;
}

absl::Status RadosStore::WriteIndex() {
  // One batch travels while the next gathers: the caller waits only for the one before.
  CF_RETURN_IF_ERROR(FinishIndexWrite());
  return StartIndexWrite();
}

absl::Status RadosStore::AppendRecords(absl::Span<const absl::Span<const uint8_t>> records,
                                       VerifyMode mode, AppendStats* stats) {
  CF_RETURN_IF_ERROR(CheckWriting());
  if (!failed_.ok()) {
    absl::Status st = failed_;
    DropUnflushed();
    return st;
  }
  // Every record is checked before any is appended: a bad one appends nothing of its call.
  std::vector<codec::RecordView> views(records.size());
  std::vector<absl::Status> checks(records.size());
  const bool full = mode == VerifyMode::kFull;
  auto check = [&](size_t i, size_t slot) {
    auto v = codec::CheckReceivedRecord(records[i], full, decompressors_[slot], &hasher_,
                                        &scratch_[slot]);
    if (v.ok()) {
      views[i] = *v;
    } else {
      checks[i] = v.status();
    }
  };
  if (options_.pool != nullptr && records.size() > 1) {
    options_.pool->Run(records.size(), check);
  } else {
    for (size_t i = 0; i < records.size(); ++i) check(i, 0);
  }
  for (size_t i = 0; i < records.size(); ++i) {
    if (!checks[i].ok()) {
      return absl::DataLossError(absl::StrCat("record ", i, " of ", records.size(),
                                              " refused by store ", location(), ": ",
                                              checks[i].message()));
    }
  }
  for (size_t i = 0; i < records.size(); ++i) {
    const codec::RecordView& v = views[i];
    if (stats != nullptr) ++stats->records_received;
    bool needed = false;
    for (uint32_t c = 0; c < v.chunk_count && !needed; ++c) {
      needed = !unflushed_.contains(v.chunk(c).id);
    }
    if (!needed) continue;
    const size_t size = records[i].size();
    if (open_pack_ && !open_pack_->entries.empty() &&
        open_pack_->bytes.size() + size > kPackHeaderSize + options_.pack_target) {
      absl::Status st = SealPack();
      if (!st.ok()) {
        DropUnflushed();
        return st;
      }
    }
    if (!open_pack_) CF_RETURN_IF_ERROR(StartPack());
    PackWrite& p = *open_pack_;
    RecordLocation loc;
    loc.pack = p.id;
    loc.offset = p.bytes.size();
    loc.size = static_cast<uint32_t>(size);
    p.bytes.append(reinterpret_cast<const char*>(records[i].data()), size);
    for (uint32_t c = 0; c < v.chunk_count; ++c) {
      const codec::ChunkId id = v.chunk(c).id;
      if (unflushed_.insert(id).second) {
        p.entries.emplace_back(id, loc);
        if (stats != nullptr) ++stats->chunks_added;
      }
    }
    if (stats != nullptr) {
      ++stats->records_appended;
      stats->bytes_appended += size;
    }
  }
  // Reap the packs already written without waiting for the others.
  while (!in_flight_.empty() && in_flight_.front().completion->is_complete()) {
    absl::Status st = ReapPack();
    if (!st.ok()) {
      DropUnflushed();
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status RadosStore::FlushImpl() {
  absl::Status st = SealPack();
  while (!in_flight_.empty()) {
    absl::Status r = ReapPack();
    if (st.ok()) st = r;
  }
  if (st.ok()) st = WriteIndex();
  absl::Status last = FinishIndexWrite();
  return st.ok() ? last : st;
}

absl::Status RadosStore::Flush() {
  CF_RETURN_IF_ERROR(CheckWritable());
  absl::Status st = failed_.ok() ? FlushImpl() : failed_;
  if (!st.ok()) DropUnflushed();
  return st;
}

void RadosStore::DropUnflushed() {
  for (auto& p : in_flight_) {
    if (p.completion != nullptr) {
      p.completion->wait_for_complete();
      p.completion->release();
    }
  }
  in_flight_.clear();
  open_pack_.reset();
  (void)FinishIndexWrite();  // durable packs' entries: harmless either way
  unindexed_.clear();
  unflushed_.clear();
  failed_ = absl::OkStatus();
}

}  // namespace chunkferry::engine::rados
