// Fuzzes the key/value metadata block and what is read from it (engine/format/kv_block.h,
// engine/format/volume_backup.h): DecodeKv, MetaFromKv (volume backup metadata), the store info
// a daemon's WELCOME carries (StoreInfoFromKv, engine/wire/wire_messages.h), and DecodeGroup
// (group files and PUT_GROUP payloads).
//
// The input is decoded as a KV block, and as a group record both as given and with its trailing
// checksum recomputed. Checked: a decoded block encodes back to exactly the bytes it was read
// from; metadata, store info and groups survive a trip through their encoders.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/format/kv_block.h"
#include "engine/format/volume_backup.h"
#include "engine/wire/wire_messages.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

void CheckKvBlock(absl::Span<const uint8_t> bytes) {
  engine::ByteReader r(bytes);
  auto kv = engine::DecodeKv(r, "fuzz");
  Note("DecodeKv", kv.status());
  if (!kv.ok()) return;
  FUZZ_CHECK(r.ok());
  FUZZ_CHECK(engine::CheckKv(*kv).ok());
  std::string again;
  engine::EncodeKv(*kv, &again);
  FUZZ_CHECK(again == Chars(bytes.first(r.position())));

  auto meta = engine::MetaFromKv(*kv, "fuzz");
  Note("MetaFromKv", meta.status());
  if (meta.ok()) {
    (void)engine::ValidateMeta(*meta);
    const engine::KvPairs once = engine::MetaToKv(*meta);
    auto meta2 = engine::MetaFromKv(once, "again");
    FUZZ_CHECK(meta2.ok());
    FUZZ_CHECK(engine::MetaToKv(*meta2) == once);
    FUZZ_CHECK(meta2->size == meta->size && meta2->create_date == meta->create_date);
  }
  auto info = engine::StoreInfoFromKv(*kv, "fuzz");
  Note("StoreInfoFromKv", info.status());
  if (info.ok()) {
    FUZZ_CHECK(engine::IsValidUuid(info->uuid) && info->chunker.Validate().ok());
    auto info2 = engine::StoreInfoFromKv(engine::StoreInfoToKv(*info), "again");
    FUZZ_CHECK(info2.ok());
    FUZZ_CHECK(info2->uuid == info->uuid && info2->chunker.ToString() == info->chunker.ToString() &&
               info2->zstd_level == info->zstd_level &&
               info2->record_target == info->record_target &&
               info2->key_fingerprint == info->key_fingerprint);
  }
}

void CheckGroup(absl::Span<const uint8_t> bytes) {
  auto g = engine::DecodeGroup(Chars(bytes), "fuzz");
  Note("DecodeGroup", g.status());
  if (!g.ok()) return;
  FUZZ_CHECK(engine::IsValidUuid(g->group_uuid));
  for (const auto& v : g->volume_uuids) FUZZ_CHECK(engine::IsValidUuid(v));
  const std::string again = engine::EncodeGroup(*g);
  auto g2 = engine::DecodeGroup(again, "again");
  FUZZ_CHECK(g2.ok());
  FUZZ_CHECK(g2->group_uuid == g->group_uuid && g2->vm_instance_uuid == g->vm_instance_uuid &&
             g2->volume_uuids == g->volume_uuids && g2->create_date == g->create_date);
  FUZZ_CHECK(engine::EncodeGroup(*g2) == again);
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size > (4u << 20)) return 0;
  const auto input = absl::MakeConstSpan(data, size);
  CheckKvBlock(input);
  CheckGroup(input);
  // A group record: "CFGR", u16 version, u16 reserved, then a KV block, so the block at offset 8.
  if (size > 8) CheckKvBlock(input.subspan(8));
  std::vector<uint8_t> fixed = Bytes(data, size);
  if (FixTailChecksum(absl::MakeSpan(fixed))) CheckGroup(fixed);
  return 0;
}
