// Fuzzes the manifest reader (engine/format/manifest.h): ManifestReader::Open on a file holding
// the input, then every entry read back, as a store opens the manifests it holds or receives.
//
// Each input is opened three ways: as given; with its trailer checksum recomputed; and with the
// trailer made to agree with the entries (counts, logical size, the meta block's "size" rewritten
// to match) before the checksum, so that mutations of entries and metadata get past the checks
// that the whole file adds up. A manifest that opens must read back entries that add up to what
// Open promised, the same again after Rewind, and survive a rewrite by ManifestWriter with the
// same entries (holes merged) and the same metadata.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/format/kv_block.h"
#include "engine/format/manifest.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

using engine::ManifestEntry;

constexpr size_t kHeaderSize = 16;
constexpr size_t kTrailerSize = 48;

// Reads every entry in batches of `batch`; false when Next fails.
bool ReadAll(engine::ManifestReader& r, size_t batch, std::vector<ManifestEntry>* all) {
  all->clear();
  std::vector<ManifestEntry> out;
  for (;;) {
    auto n = r.Next(&out, batch);
    if (!n.ok()) return false;
    FUZZ_CHECK(*n == out.size() && *n <= batch);
    if (*n == 0) return true;
    all->insert(all->end(), out.begin(), out.end());
  }
}

bool SameEntries(const std::vector<ManifestEntry>& a, const std::vector<ManifestEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].zero != b[i].zero || a[i].length != b[i].length) return false;
    if (!a[i].zero && a[i].id != b[i].id) return false;
  }
  return true;
}

// What ManifestWriter makes of `entries`: consecutive holes merged into one.
std::vector<ManifestEntry> MergeHoles(const std::vector<ManifestEntry>& entries) {
  std::vector<ManifestEntry> out;
  for (const auto& e : entries) {
    if (e.zero && !out.empty() && out.back().zero) {
      out.back().length += e.length;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

// Writes `entries` and `meta` with ManifestWriter and checks that they read back.
void CheckRewrite(const std::vector<ManifestEntry>& entries, const engine::VolumeBackupMeta& meta) {
  const std::string tmp = ScratchDir() + "/rewrite.tmp";
  const std::string final_path = ScratchDir() + "/rewrite.manifest";
  ::unlink(tmp.c_str());
  ::unlink(final_path.c_str());
  absl::Status st;
  {
    auto w = engine::ManifestWriter::Create(tmp);
    FUZZ_CHECK(w.ok());
    for (const auto& e : entries) FUZZ_CHECK((*w)->Add(e).ok());
    st = (*w)->Finish(meta, final_path);
  }
  if (!st.ok()) {
    // The only way a manifest that was read cannot be written: its metadata grew past the KV
    // block's bounds when the known fields were added back.
    FUZZ_CHECK(!engine::CheckKv(engine::MetaToKv(meta)).ok());
    return;
  }
  auto r = engine::ManifestReader::Open(final_path);
  FUZZ_CHECK(r.ok());
  std::vector<ManifestEntry> back;
  FUZZ_CHECK(ReadAll(**r, 4096, &back));
  FUZZ_CHECK(SameEntries(back, MergeHoles(entries)));
  FUZZ_CHECK(engine::MetaToKv((*r)->meta()) == engine::MetaToKv(meta));
}

void OpenAndRead(const std::vector<uint8_t>& file, size_t batch, bool rewrite) {
  const std::string path = ScratchDir() + "/input.manifest";
  WriteFile(path, file);
  auto r = engine::ManifestReader::Open(path);
  Note("ManifestReader::Open", r.status());
  if (!r.ok()) return;
  engine::ManifestReader& reader = **r;
  std::vector<ManifestEntry> all;
  FUZZ_CHECK(ReadAll(reader, batch, &all));  // Open checked every entry; the file is unchanged
  uint64_t data = 0, zero = 0, covered = 0;
  for (const auto& e : all) {
    FUZZ_CHECK(e.length > 0);
    FUZZ_CHECK(e.zero || e.length <= engine::kMaxManifestChunk);
    (e.zero ? zero : data)++;
    FUZZ_CHECK(e.length <= engine::kMaxVolumeSize - covered);
    covered += e.length;
  }
  FUZZ_CHECK(data == reader.data_entries() && zero == reader.zero_entries());
  FUZZ_CHECK(covered == reader.meta().size);
  reader.Rewind();
  std::vector<ManifestEntry> again;
  FUZZ_CHECK(ReadAll(reader, batch == 1 ? 3 : 1, &again));
  FUZZ_CHECK(SameEntries(all, again));
  // Metadata survives a trip through its KV form.
  auto meta2 = engine::MetaFromKv(engine::MetaToKv(reader.meta()), "again");
  FUZZ_CHECK(meta2.ok());
  FUZZ_CHECK(engine::MetaToKv(*meta2) == engine::MetaToKv(reader.meta()));
  if (rewrite) CheckRewrite(all, reader.meta());
}

// Makes the trailer agree with the entries and the meta block with the logical size, then fixes
// the checksum. Returns false when the file is too short or its meta offset is out of range.
bool FixStructure(std::vector<uint8_t>* file) {
  if (file->size() < kHeaderSize + kTrailerSize + 4) return false;
  const size_t trailer_at = file->size() - kTrailerSize;
  const uint64_t meta_offset = engine::LoadU64(file->data() + trailer_at);
  if (meta_offset < kHeaderSize || meta_offset > trailer_at) return false;
  uint64_t data = 0, zero = 0, covered = 0;
  size_t p = kHeaderSize;
  while (p < meta_offset) {
    const uint8_t* e = file->data() + p;
    const size_t avail = meta_offset - p;
    if (e[0] == 1 && avail >= 21) {
      covered += engine::LoadU32(e + 1);
      ++data;
      p += 21;
    } else if (e[0] == 2 && avail >= 9) {
      covered += engine::LoadU64(e + 1);
      ++zero;
      p += 9;
    } else {
      break;
    }
  }
  std::vector<uint8_t> trailer(file->begin() + trailer_at, file->end());
  std::vector<uint8_t> meta_block(file->begin() + meta_offset, file->begin() + trailer_at);
  engine::ByteReader mr(absl::MakeConstSpan(meta_block));
  auto kv = engine::DecodeKv(mr, "fuzz");
  if (kv.ok()) {
    for (auto& [k, v] : *kv) {
      if (k == "size") v = absl::StrCat(covered);
    }
    std::string encoded;
    engine::EncodeKv(*kv, &encoded);
    meta_block.assign(encoded.begin(), encoded.end());
  }
  file->resize(meta_offset);
  file->insert(file->end(), meta_block.begin(), meta_block.end());
  engine::StoreU64(trailer.data(), meta_offset);
  engine::StoreU64(trailer.data() + 8, data);
  engine::StoreU64(trailer.data() + 16, zero);
  engine::StoreU64(trailer.data() + 24, covered);
  std::memcpy(trailer.data() + 32, "CFMT", 4);
  file->insert(file->end(), trailer.begin(), trailer.end());
  return FixTailChecksum(absl::MakeSpan(*file));
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size > (4u << 20)) return 0;
  const size_t batch = 1 + size % 7;
  // Each distinct variant once: opening a manifest costs a 1 MiB buffer.
  const std::vector<uint8_t> raw = Bytes(data, size);
  std::vector<uint8_t> summed = raw;
  const bool have_sum = FixTailChecksum(absl::MakeSpan(summed));
  std::vector<uint8_t> fixed = summed;
  const bool have_fixed = FixStructure(&fixed);
  OpenAndRead(raw, batch, /*rewrite=*/!have_fixed || fixed == raw);
  if (have_sum && summed != raw && summed != fixed) OpenAndRead(summed, batch, /*rewrite=*/false);
  if (have_fixed && fixed != raw) OpenAndRead(fixed, batch, /*rewrite=*/true);
  return 0;
}
