// Where a RADOS store keeps what in its pool (docs/FORMATS.md, "RADOS store"), as pure encoders
// and decoders, so that the layout is tested without a cluster:
// clang-format off
//   chunkferry.store         the store descriptor (store_descriptor.h), plus rados_index_shards
//                            and, with a data pool, rados_data_pool
//   chunkferry.id_key        optional: the secret that keys chunk ids (hex)
//   chunkferry.catalog       omap: g/<uuid> → group record, b/<uuid> → published manifest,
//                            d/<uuid> → a delete being finished; every change is a
//                            compare-and-write on the object's version
//   chunkferry.lock          lock-class locks: writers share "write", a collection holds it alone
//   index.<nn>               omap: 16-byte chunk id → record location (16 bytes), sharded by id
//   pack.<8 hex>             a pack: the local pack format byte for byte, written once, whole
//                            (in the data pool, same namespace, when the store has one)
//   manifest.<uuid>.<tag>.<n>  part n of a manifest file (the local format), written once
// clang-format on
#ifndef CHUNKFERRY_ENGINE_RADOS_RADOS_LAYOUT_H_
#define CHUNKFERRY_ENGINE_RADOS_RADOS_LAYOUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codec/chunk_id.h"
#include "engine/format/pack.h"
#include "engine/format/volume_backup.h"

namespace chunkferry::engine::rados {

inline constexpr char kDescriptorObject[] = "chunkferry.store";
inline constexpr char kIdKeyObject[] = "chunkferry.id_key";
inline constexpr char kCatalogObject[] = "chunkferry.catalog";
inline constexpr char kLockObject[] = "chunkferry.lock";
inline constexpr char kWriteLockName[] = "write";
// The descriptor key that fixes the number of index shards for the store's life.
inline constexpr char kIndexShardsKey[] = "rados_index_shards";
inline constexpr uint32_t kDefaultIndexShards = 64;
// The optional descriptor key naming the pool that holds the packs (an erasure-coded pool beside
// the replicated one of the store's URL), fixed for the store's life.
inline constexpr char kDataPoolKey[] = "rados_data_pool";
inline constexpr uint32_t kMaxIndexShards = 4096;
// Bytes of each manifest part object (the last may be shorter): well under the OSDs' object size
// limit (osd_max_object_size, 128 MiB by default).
inline constexpr uint64_t kManifestPartBytes = 16u << 20;
// Largest manifest a catalog entry may name (as a daemon takes: a volume of about 12 TiB).
inline constexpr uint64_t kMaxManifestBytes = uint64_t{64} << 30;

// How a client reaches the cluster (flags, registry fields and C ABI options alike).
struct RadosClientOptions {
  // ceph.conf to read; empty: librados's search ($CEPH_CONF, /etc/ceph/ceph.conf, ...).
  std::string conf_path;
  // The cephx user, as "client.NAME" or "NAME"; empty: client.admin.
  std::string client_name;
  // Its keyring; empty: what the conf names.
  std::string keyring;
  // Bounds connecting, and every operation once connected: a cluster that stops answering fails
  // the operation (TimedOut → DeadlineExceeded) instead of hanging it. 0: librados's defaults (no
  // limit on operations).
  int64_t timeout_ms = 30'000;
};

// Where a store is: "rados:POOL" or "rados:POOL/NAMESPACE".
struct RadosUrl {
  std::string pool;
  std::string ns;  // empty: the pool's default namespace
  std::string ToString() const;
};
bool IsRadosUrl(absl::string_view text);
// InvalidArgument naming what is wrong (empty pool, a second '/', characters outside
// [A-Za-z0-9._-]).
[[nodiscard]] absl::StatusOr<RadosUrl> ParseRadosUrl(absl::string_view text);
// InvalidArgument unless `pool` is a pool name as a URL takes it (non-empty, [A-Za-z0-9._-]).
[[nodiscard]] absl::Status CheckPoolName(absl::string_view pool);

std::string PackObject(uint32_t pack_id);
std::string IndexObject(uint32_t shard);
// Which of `shards` index objects holds `id`: ids are uniform hashes, so their first byte pair
// spreads them evenly.
uint32_t IndexShard(const codec::ChunkId& id, uint32_t shards);
std::string ManifestPartObject(absl::string_view backup_uuid, uint64_t tag, uint32_t part);

// Index entries: key the id's 16 bytes, value the record's location (kIndexValueSize bytes).
inline constexpr size_t kIndexValueSize = 16;
std::string IndexKey(const codec::ChunkId& id);
[[nodiscard]] absl::StatusOr<codec::ChunkId> ParseIndexKey(absl::string_view key);
std::string EncodeIndexValue(const RecordLocation& loc);
// DataLoss for a value of the wrong size or a record outside any pack's reach.
[[nodiscard]] absl::StatusOr<RecordLocation> DecodeIndexValue(absl::string_view value);

// Catalog keys.
inline constexpr char kGroupPrefix[] = "g/";
inline constexpr char kBackupPrefix[] = "b/";
inline constexpr char kDeletingPrefix[] = "d/";
std::string GroupKey(absl::string_view uuid);
std::string BackupKey(absl::string_view uuid);
std::string DeletingKey(absl::string_view uuid);

// A published manifest, as the catalog names it: its parts, its size and checksum (so that a
// second publication of the same bytes is recognised), and its meta (so that listings and
// queries read no manifest).
struct ManifestRef {
  uint64_t tag = 0;  // names its part objects
  uint64_t length = 0;
  uint64_t checksum = 0;  // XXH3-64 of the whole manifest file
  VolumeBackupMeta meta;
  uint32_t parts() const;
};
std::string EncodeManifestRef(const ManifestRef& ref);
[[nodiscard]] absl::StatusOr<ManifestRef> DecodeManifestRef(absl::string_view bytes,
                                                            absl::string_view what);

// What a delete still has to remove once the catalog no longer names it: manifests' parts.
struct PendingDelete {
  std::vector<std::pair<std::string, ManifestRef>> manifests;  // backup uuid, its manifest
};
std::string EncodePendingDelete(const PendingDelete& pending);
[[nodiscard]] absl::StatusOr<PendingDelete> DecodePendingDelete(absl::string_view bytes,
                                                                absl::string_view what);

}  // namespace chunkferry::engine::rados

#endif  // CHUNKFERRY_ENGINE_RADOS_RADOS_LAYOUT_H_
