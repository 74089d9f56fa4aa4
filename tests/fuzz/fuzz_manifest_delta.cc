// Fuzzes the manifest delta decoder (engine/format/manifest_delta.h): ManifestDeltaSource over a
// file holding the input, against a small fixed base manifest, as a daemon decodes the
// PUT_MANIFEST_DELTA a peer sends.
//
// Each input is decoded as given and with its checksum recomputed (the END op's count and entry
// hash are plain 64-bit compares, which libFuzzer's comparison tracing solves). A delta that
// decodes must decode the same after Rewind, and the delta EncodeManifestDelta makes of its
// entries against the same base must decode to the same entries and metadata.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/format/manifest.h"
#include "engine/format/manifest_delta.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

using engine::ManifestEntry;

// Entries held in memory, as a ManifestSource.
class VectorSource final : public engine::ManifestSource {
 public:
  VectorSource(engine::VolumeBackupMeta meta, std::vector<ManifestEntry> entries)
      : meta_(std::move(meta)), entries_(std::move(entries)) {}
  const engine::VolumeBackupMeta& meta() const override { return meta_; }
  absl::StatusOr<size_t> Next(std::vector<ManifestEntry>* out, size_t max) override {
    out->clear();
    while (out->size() < max && pos_ < entries_.size()) out->push_back(entries_[pos_++]);
    return out->size();
  }
  void Rewind() override { pos_ = 0; }

 private:
  engine::VolumeBackupMeta meta_;
  std::vector<ManifestEntry> entries_;
  size_t pos_ = 0;
};

// The base every delta is decoded against (WriteDeltaBase, shared with make_seeds.cc).
engine::ManifestSource& Base() {
  static std::unique_ptr<engine::ManifestReader> base = [] {
    const std::string path = ScratchDir() + "/base.manifest";
    WriteDeltaBase(path);
    auto r = engine::ManifestReader::Open(path);
    FUZZ_CHECK(r.ok());
    return *std::move(r);
  }();
  return *base;
}

// Reads every entry in batches of `batch`; the status of the first failure.
absl::Status ReadAll(engine::ManifestSource& s, size_t batch, std::vector<ManifestEntry>* all) {
  all->clear();
  std::vector<ManifestEntry> out;
  for (;;) {
    auto n = s.Next(&out, batch);
    if (!n.ok()) return n.status();
    FUZZ_CHECK(*n == out.size() && *n <= batch);
    if (*n == 0) return absl::OkStatus();
    all->insert(all->end(), out.begin(), out.end());
  }
}

bool SameEntries(const std::vector<ManifestEntry>& a, const std::vector<ManifestEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!engine::SameEntry(a[i], b[i])) return false;
  }
  return true;
}

void Decode(const std::vector<uint8_t>& bytes, size_t batch) {
  const std::string path = ScratchDir() + "/input.delta";
  WriteFile(path, bytes);
  auto d = engine::ManifestDeltaSource::Open(path, &Base(), "fuzz");
  Note("ManifestDeltaSource::Open", d.status());
  if (!d.ok()) return;
  std::vector<ManifestEntry> entries;
  const absl::Status read = ReadAll(**d, batch, &entries);
  Note("ManifestDeltaSource::Next", read);
  if (!read.ok()) return;
  uint64_t covered = 0;
  for (const auto& e : entries) {
    FUZZ_CHECK(e.length > 0 && e.length <= ~uint64_t{0} - covered);
    FUZZ_CHECK(e.zero || e.length <= engine::kMaxManifestChunk);
    covered += e.length;
  }
  (*d)->Rewind();
  std::vector<ManifestEntry> again;
  FUZZ_CHECK(ReadAll(**d, batch == 1 ? 7 : 1, &again).ok());
  FUZZ_CHECK(SameEntries(entries, again));

  // Encode the entries again against the same base; they must decode to the same.
  const engine::VolumeBackupMeta meta = (*d)->meta();
  VectorSource source(meta, entries);
  std::string delta;
  engine::DeltaStats stats;
  const absl::Status enc = engine::EncodeManifestDelta(
      meta, source, Base(),
      [&](absl::string_view piece) {
        delta.append(piece.data(), piece.size());
        return absl::OkStatus();
      },
      &stats);
  if (!enc.ok()) {
    FUZZ_CHECK(!engine::CheckKv(engine::MetaToKv(meta)).ok());
    return;
  }
  FUZZ_CHECK(stats.entries == entries.size() && stats.copied + stats.literal == stats.entries);
  FUZZ_CHECK(stats.bytes == delta.size());
  const std::string path2 = ScratchDir() + "/again.delta";
  WriteFile(path2, delta);
  auto d2 = engine::ManifestDeltaSource::Open(path2, &Base(), "again");
  FUZZ_CHECK(d2.ok());
  std::vector<ManifestEntry> back;
  FUZZ_CHECK(ReadAll(**d2, 4096, &back).ok());
  FUZZ_CHECK(SameEntries(entries, back));
  FUZZ_CHECK(engine::MetaToKv((*d2)->meta()) == engine::MetaToKv(meta));
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size > (4u << 20)) return 0;
  Base();
  const size_t batch = 1 + size % 7;
  std::vector<uint8_t> bytes = Bytes(data, size);
  Decode(bytes, batch);
  if (FixTailChecksum(absl::MakeSpan(bytes)) && std::memcmp(bytes.data(), data, size) != 0) {
    Decode(bytes, batch);
  }
  return 0;
}
