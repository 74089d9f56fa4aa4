// RadosStore::ForgetDamagedChunks (rados_store.h): the pool's quarantine. A damaged record stays in
// its pack (packs are write-once; a collection reclaims it once nothing names it), but the index
// entries that point at it are removed, so that the chunks count as absent: the next sync, import
// or `chunkferry repair --from` that has them sends good copies, and their new entries point there.
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/record.h"
#include "engine/rados/rados_store.h"
#include "io/status_macros.h"

namespace chunkferry::engine::rados {

absl::StatusOr<RadosStore::RecordCheck> RadosStore::CheckStoredRecord(const RecordLocation& loc,
                                                                      const codec::ChunkId& id,
                                                                      VerifyMode mode) {
  librados::bufferlist bl;
  const int r = pool_->data_io().read(PackObject(loc.pack), bl, loc.size, loc.offset);
  if (r == -ENOENT) return RecordCheck::kDamaged;  // the pack is gone: nothing to read
  if (r < 0) return RadosError(r, "read", PackObject(loc.pack), location());
  if (bl.length() < loc.size) return RecordCheck::kDamaged;
  const auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bl.c_str()), bl.length());
  auto view = codec::CheckReceivedRecord(bytes, mode == VerifyMode::kFull, decompressors_[0],
                                         &hasher_, &scratch_[0]);
  if (!view.ok() || view->size != bytes.size()) return RecordCheck::kDamaged;
  for (uint32_t c = 0; c < view->chunk_count; ++c) {
    if (view->chunk(c).id == id) return RecordCheck::kIntact;
  }
  return RecordCheck::kDamaged;  // an intact record, but not the one the index names
}

absl::StatusOr<uint64_t> RadosStore::ForgetDamagedChunks(absl::Span<const codec::ChunkId> ids,
                                                         VerifyMode mode) {
  CF_RETURN_IF_ERROR(CheckWriting());
  CF_RETURN_IF_ERROR(FlushImpl());
  std::vector<std::optional<RecordLocation>> found;
  CF_RETURN_IF_ERROR(Lookup(ids, &found));
  // Checked again here, by this store, whatever the caller found: only an entry that names a
  // record failing its check is removed. Chunks of one record share its verdict.
  std::map<RecordLocation, RecordCheck> verdicts;
  std::vector<size_t> damaged;  // into ids
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!found[i]) continue;
    auto it = verdicts.find(*found[i]);
    if (it == verdicts.end()) {
      CF_ASSIGN_OR_RETURN(RecordCheck check, CheckStoredRecord(*found[i], ids[i], mode));
      it = verdicts.emplace(*found[i], check).first;
    }
    if (it->second == RecordCheck::kDamaged) damaged.push_back(i);
  }
  if (damaged.empty()) return 0;
  // Before changing the index: a writer whose lock lapsed must not go on, nor may this one.
  CF_RETURN_IF_ERROR(CheckLockHeld());
  std::set<RecordLocation> forgotten;  // records some of whose entries were removed
  for (size_t i : damaged) {
    // Removed only while it still names that record: a writer may have indexed a good copy of
    // the chunk since the lookup, and that entry stays.
    const std::string key = IndexKey(ids[i]);
    const std::string value = EncodeIndexValue(*found[i]);
    librados::bufferlist expected;
    expected.append(value.data(), value.size());
    std::map<std::string, std::pair<librados::bufferlist, int>> assertions;
    assertions[key] = {expected, LIBRADOS_CMPXATTR_OP_EQ};
    int cmp = 0;
    librados::ObjectWriteOperation op;
    op.omap_cmp(assertions, &cmp);
    op.omap_rm_keys(std::set<std::string>{key});
    const std::string shard = IndexObject(IndexShard(ids[i], index_shards_));
    const int r = pool_->io().operate(shard, &op);
    if (r == -ECANCELED) continue;  // changed meanwhile: no longer the damaged record's entry
    if (r < 0) return RadosError(r, "forget chunk in", shard, location());
    vouched_.erase(ids[i]);
    forgotten.insert(*found[i]);
  }
  return forgotten.size();
}

}  // namespace chunkferry::engine::rados
