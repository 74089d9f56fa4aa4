#include "engine/rados/rados_layout.h"

#include <gtest/gtest.h>

#include <set>

namespace chunkferry::engine::rados {
namespace {

TEST(RadosUrlTest, ParsesPoolAndNamespace) {
  auto a = ParseRadosUrl("rados:backups");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->pool, "backups");
  EXPECT_EQ(a->ns, "");
  EXPECT_EQ(a->ToString(), "rados:backups");
  auto b = ParseRadosUrl("rados:backups/site-a.1");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->pool, "backups");
  EXPECT_EQ(b->ns, "site-a.1");
  EXPECT_EQ(b->ToString(), "rados:backups/site-a.1");
}

TEST(RadosUrlTest, RefusesWhatNamesNoPool) {
  for (const char* bad : {"rados:", "rados:/ns", "rados:pool/", "rados:pool/a/b", "rados:po ol",
                          "rados:pool/n$", "pool", "tcp://host:1"}) {
    auto u = ParseRadosUrl(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(u.status())) << bad;
  }
  EXPECT_TRUE(IsRadosUrl("rados:x"));
  EXPECT_FALSE(IsRadosUrl("/srv/rados:x"));
}

TEST(RadosUrlTest, DataPoolNamesAreCheckedAsPoolsOfUrls) {
  EXPECT_TRUE(CheckPoolName("chunkferry-bs-a.data_1").ok());
  for (const char* bad : {"", "a b", "a/b", "pool$", "\xff"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(CheckPoolName(bad))) << bad;
  }
}

TEST(RadosLayoutTest, IndexKeysAndValuesRoundTrip) {
  codec::ChunkId id{0x0123456789abcdefull, 0xfedcba9876543210ull};
  auto back = ParseIndexKey(IndexKey(id));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, id);
  EXPECT_FALSE(ParseIndexKey("short").ok());

  RecordLocation loc{0xdeadbeef, 70000, 123456};
  auto l = DecodeIndexValue(EncodeIndexValue(loc));
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->pack, loc.pack);
  EXPECT_EQ(l->size, loc.size);
  EXPECT_EQ(l->offset, loc.offset);
  // Wrong sizes and impossible locations are damage.
  EXPECT_TRUE(absl::IsDataLoss(DecodeIndexValue("0123456789").status()));
  EXPECT_TRUE(absl::IsDataLoss(DecodeIndexValue(EncodeIndexValue({0, 100, 64})).status()));
  EXPECT_TRUE(absl::IsDataLoss(DecodeIndexValue(EncodeIndexValue({7, 100, 3})).status()));
}

TEST(RadosLayoutTest, ShardsSpreadIdsOverEveryShard) {
  std::set<uint32_t> seen;
  for (uint64_t i = 0; i < 4096; ++i) {
    codec::ChunkId id{i * 0x9e3779b97f4a7c15ull, i};
    const uint32_t s = IndexShard(id, 64);
    ASSERT_LT(s, 64u);
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_EQ(IndexObject(10), "index.000a");
  EXPECT_EQ(PackObject(0x2a), "pack.0000002a");
}

VolumeBackupMeta SomeMeta() {
  VolumeBackupMeta m;
  m.uuid = "0123456789abcdef0123456789abcdef";
  m.volume_uuid = "1123456789abcdef0123456789abcdef";
  m.group_uuid = "2123456789abcdef0123456789abcdef";
  m.size = 1 << 20;
  m.install_path = "/x";
  m.chunker = "fixed:4096";
  return m;
}

TEST(RadosLayoutTest, ManifestRefsAndPendingDeletesRoundTrip) {
  ManifestRef ref;
  ref.tag = 77;
  ref.length = 3 * kManifestPartBytes + 1;
  ref.checksum = 0x1234;
  ref.meta = SomeMeta();
  EXPECT_EQ(ref.parts(), 4u);
  auto back = DecodeManifestRef(EncodeManifestRef(ref), "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tag, 77u);
  EXPECT_EQ(back->length, ref.length);
  EXPECT_EQ(back->checksum, ref.checksum);
  EXPECT_EQ(back->meta.uuid, ref.meta.uuid);
  EXPECT_EQ(back->meta.size, ref.meta.size);

  PendingDelete pending;
  pending.manifests.emplace_back(ref.meta.uuid, ref);
  pending.manifests.emplace_back("3123456789abcdef0123456789abcdef", ref);
  auto p = DecodePendingDelete(EncodePendingDelete(pending), "test");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->manifests.size(), 2u);
  EXPECT_EQ(p->manifests[1].first, "3123456789abcdef0123456789abcdef");
  EXPECT_EQ(p->manifests[1].second.length, ref.length);
}

TEST(RadosLayoutTest, DamagedCatalogValuesAreRefused) {
  ManifestRef ref;
  ref.tag = 1;
  ref.length = 100;
  ref.meta = SomeMeta();
  const std::string good = EncodeManifestRef(ref);
  for (size_t cut = 0; cut < good.size(); ++cut) {
    EXPECT_FALSE(DecodeManifestRef(good.substr(0, cut), "t").ok()) << cut;
  }
  EXPECT_FALSE(DecodeManifestRef(good + "x", "t").ok());
  ref.length = 0;
  EXPECT_FALSE(DecodeManifestRef(EncodeManifestRef(ref), "t").ok());

  PendingDelete pending;
  ref.length = 100;
  pending.manifests.emplace_back(ref.meta.uuid, ref);
  const std::string p = EncodePendingDelete(pending);
  for (size_t cut = 0; cut < p.size(); ++cut) {
    EXPECT_FALSE(DecodePendingDelete(p.substr(0, cut), "t").ok()) << cut;
  }
  EXPECT_FALSE(DecodePendingDelete(p + "x", "t").ok());
}

}  // namespace
}  // namespace chunkferry::engine::rados
