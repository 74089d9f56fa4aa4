#include "engine/wire/served_store.h"

#include <sys/stat.h>

#include <atomic>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "io/buffer.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// ---- A local store. ----

class LocalReader final : public ServedReader {
 public:
  LocalReader(LocalStore& store, io::Backend backend) : store_(store), backend_(backend) {}

  absl::Status Read(absl::Span<const codec::ChunkId> ids, std::mutex& store_mu,
                    const Store::RecordSink& sink) override {
    // Where the records are, and their packs opened, under the lock; the reading and the
    // sending without it, on this connection's own file queue.
    absl::StatusOr<LocalStore::DetachedRead> read;
    {
      std::lock_guard<std::mutex> lock(store_mu);
      read = store_.PrepareDetachedRead(ids);
    }
    CF_RETURN_IF_ERROR(read.status());
    if (queue_ == nullptr) {
      io::QueueOptions qo;
      qo.backend = backend_;
      qo.depth = kQueueDepth;
      qo.threads = 2;
      CF_ASSIGN_OR_RETURN(queue_, io::MakeQueue(qo));
    }
    return LocalStore::ReadDetached(*read, *queue_, buffers_, sink);
  }

 private:
  static constexpr unsigned kQueueDepth = 8;
  LocalStore& store_;
  const io::Backend backend_;
  // Made at the first READ (the connection's WireConn has a queue of its own, for its socket).
  std::unique_ptr<io::Queue> queue_;
  std::vector<io::AlignedBuffer> buffers_;
};

class LocalServed final : public ServedStore {
 public:
  explicit LocalServed(LocalStore& store) : store_(store) {}

  Store& store() override { return store_; }
  const codec::ChunkHasher& hasher() const override { return store_.hasher(); }
  absl::Status AppendChecked(absl::Span<const absl::Span<const uint8_t>> records,
                             absl::Span<const codec::RecordView> views,
                             AppendStats* stats) override {
    return store_.AppendCheckedRecords(records, views, stats);
  }
  absl::StatusOr<uint64_t> BeginWrites() override { return store_.HoldNewRecords(); }
  void EndWrites(uint64_t span) override { store_.ReleaseHold(span); }
  std::string NewTmpPath(absl::string_view what) override { return store_.NewTmpPath(what); }
  absl::StatusOr<std::unique_ptr<ManifestSource>> OpenBase(
      const std::string& backup_uuid) override {
    CF_ASSIGN_OR_RETURN(std::unique_ptr<ManifestReader> reader,
                        store_.OpenManifestReader(backup_uuid));
    return std::unique_ptr<ManifestSource>(std::move(reader));
  }
  uint64_t ManifestBytes(const std::string& backup_uuid) override {
    struct stat st;
    return ::stat(store_.ManifestPath(backup_uuid).c_str(), &st) == 0
               ? static_cast<uint64_t>(st.st_size)
               : 0;
  }
  absl::StatusOr<ManifestFile> OpenManifestFile(const std::string& backup_uuid,
                                                std::mutex& store_mu) override {
    // Published manifests are replaced only by rename, so the file stays whole while it is
    // streamed, without the lock.
    ManifestFile file;
    {
      std::lock_guard<std::mutex> lock(store_mu);
      file.path = store_.ManifestPath(backup_uuid);
    }
    return file;
  }
  std::unique_ptr<ServedReader> NewReader(io::Backend backend) override {
    return std::make_unique<LocalReader>(store_, backend);
  }
  LocalStore* collectable() override { return &store_; }

 private:
  LocalStore& store_;
};

// ---- Any other store. ----

// Ids read from the store per hold of the lock, and record bytes gathered before they go out:
// past that many a batch is sent with the lock held (a slice of ids whose records are large or
// scattered), so that a connection's memory stays bounded.
constexpr size_t kReadSliceIds = 1024;
constexpr size_t kReadGatherBytes = 8u << 20;

class AnyReader final : public ServedReader {
 public:
  explicit AnyReader(Store& store) : store_(store) {}

  absl::Status Read(absl::Span<const codec::ChunkId> ids, std::mutex& store_mu,
                    const Store::RecordSink& sink) override {
    // A record holding ids of two slices would be read twice: it goes out once.
    absl::flat_hash_set<std::pair<uint64_t, size_t>> sent;
    for (size_t begin = 0; begin < ids.size(); begin += kReadSliceIds) {
      const auto slice = ids.subspan(begin, std::min(kReadSliceIds, ids.size() - begin));
      absl::Status st;
      {
        std::lock_guard<std::mutex> lock(store_mu);
        st = store_.ReadRecordsFor(slice, [&](absl::Span<const absl::Span<const uint8_t>> got) {
          for (const auto& r : got) {
            CF_ASSIGN_OR_RETURN(codec::RecordView view, codec::ParseRecord(r));
            if (!sent.insert({view.payload_checksum, r.size()}).second) continue;
            ends_.push_back(bytes_.size() + r.size());
            bytes_.insert(bytes_.end(), r.begin(), r.end());
          }
          return bytes_.size() >= kReadGatherBytes ? SendGathered(sink) : absl::OkStatus();
        });
      }
      if (st.ok()) st = SendGathered(sink);
      if (!st.ok()) {
        bytes_.clear();
        ends_.clear();
        return st;
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status SendGathered(const Store::RecordSink& sink) {
    std::vector<absl::Span<const uint8_t>> records;
    records.reserve(ends_.size());
    size_t begin = 0;
    for (size_t end : ends_) {
      records.emplace_back(bytes_.data() + begin, end - begin);
      begin = end;
    }
    absl::Status st = records.empty() ? absl::OkStatus() : sink(records);
    bytes_.clear();
    ends_.clear();
    return st;
  }

  Store& store_;
  std::vector<uint8_t> bytes_;  // records gathered, side by side
  std::vector<size_t> ends_;    // where each ends in bytes_
};

class AnyServed final : public ServedStore {
 public:
  AnyServed(Store& store, const codec::ChunkHasher& hasher, ScratchDir scratch,
            WriteSpanHooks hooks)
      : store_(store), hasher_(hasher), scratch_(std::move(scratch)), hooks_(std::move(hooks)) {}

  Store& store() override { return store_; }
  const codec::ChunkHasher& hasher() const override { return hasher_; }
  absl::Status AppendChecked(absl::Span<const absl::Span<const uint8_t>> records,
                             absl::Span<const codec::RecordView>, AppendStats* stats) override {
    // Checked by the session already: the store's own check is the cheap one.
    return store_.AppendRecords(records, VerifyMode::kChecksum, stats);
  }
  absl::StatusOr<uint64_t> BeginWrites() override {
    if (hooks_.begin) CF_RETURN_IF_ERROR(hooks_.begin());
    return 1;
  }
  void EndWrites(uint64_t) override {
    // The store flushes what an abandoned session left; a failure there is that session's
    // loss alone (nothing names those records), so it is not anyone's error.
    if (hooks_.end) (void)hooks_.end();
  }
  std::string NewTmpPath(absl::string_view what) override {
    return scratch_.File(absl::StrCat(what, ".", ++tmp_counter_));
  }
  uint64_t ManifestBytes(const std::string&) override { return 0; }
  absl::StatusOr<ManifestFile> OpenManifestFile(const std::string& backup_uuid,
                                                std::mutex& store_mu) override {
    ManifestFile file;
    CF_ASSIGN_OR_RETURN(ScratchDir dir, ScratchDir::Make());
    file.scratch.emplace(std::move(dir));
    std::lock_guard<std::mutex> lock(store_mu);
    CF_ASSIGN_OR_RETURN(std::unique_ptr<ManifestSource> source, store_.OpenManifest(backup_uuid));
    CF_ASSIGN_OR_RETURN(file.path, WriteScratchManifest(*file.scratch, source->meta(), *source));
    return file;
  }
  std::unique_ptr<ServedReader> NewReader(io::Backend) override {
    return std::make_unique<AnyReader>(store_);
  }

 private:
  Store& store_;
  const codec::ChunkHasher& hasher_;
  ScratchDir scratch_;  // received manifests, each removed by the session once used
  std::atomic<uint64_t> tmp_counter_{0};
  const WriteSpanHooks hooks_;
};

}  // namespace

std::unique_ptr<ServedStore> ServeLocalStore(LocalStore& store) {
  return std::make_unique<LocalServed>(store);
}

absl::StatusOr<std::unique_ptr<ServedStore>> ServeAnyStore(Store& store,
                                                           const codec::ChunkHasher& hasher,
                                                           WriteSpanHooks hooks) {
  CF_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Make());
  return std::unique_ptr<ServedStore>(
      std::make_unique<AnyServed>(store, hasher, std::move(scratch), std::move(hooks)));
}

}  // namespace chunkferry::engine
