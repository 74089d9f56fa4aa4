// Fuzzes the chunk record (codec/record.h), the one format chunks have at rest and on the wire:
// PeekRecordSize, ParseRecord, CheckPayload, DecodeRecord (with and without a ChunkHasher) and
// CheckReceivedRecord.
//
// Input: one record's bytes (and maybe bytes after it). Runs them as given, then with the record's
// lengths, payload checksum and header checksum fixed up (tests/fuzz/fuzz_util.h), so that zstd
// frames and chunk tables behind the checksums are reached. When a payload decodes, the chunk
// ids are recomputed into the table: that record must then pass the full verification, and the
// chunks encoded again (raw and zstd) must decode to the same bytes and ids.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "codec/chunk_id.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

codec::Decompressor& Dec() {
  static codec::Decompressor d;
  return d;
}
codec::Compressor& Comp() {
  static codec::Compressor c(1);
  return c;
}
const codec::ChunkHasher& Hasher() {
  static const codec::ChunkHasher h;
  return h;
}

// Encodes `chunks` (named by `refs`) again, raw and with zstd, and checks that each record
// parses, passes the full verification and decodes to `raw`.
void CheckReencode(const std::vector<codec::ChunkRef>& refs, const std::vector<uint8_t>& raw) {
  std::vector<absl::Span<const uint8_t>> chunks;
  size_t off = 0;
  for (const auto& r : refs) {
    chunks.push_back(absl::MakeConstSpan(raw).subspan(off, r.raw_length));
    off += r.raw_length;
  }
  for (codec::Compressor* comp : {static_cast<codec::Compressor*>(nullptr), &Comp()}) {
    std::vector<uint8_t> out(codec::MaxRecordSize(refs.size(), raw.size()));
    auto n = codec::EncodeRecord(refs, chunks, comp, absl::MakeSpan(out));
    FUZZ_CHECK(n.ok());
    out.resize(*n);
    std::vector<uint8_t> scratch;
    auto view = codec::CheckReceivedRecord(out, /*full=*/true, Dec(), &Hasher(), &scratch);
    FUZZ_CHECK(view.ok());
    FUZZ_CHECK(view->chunk_count == refs.size() && view->raw_length == raw.size());
    FUZZ_CHECK(scratch == raw);
    for (size_t i = 0; i < refs.size(); ++i) {
      FUZZ_CHECK(view->chunk(i).id == refs[i].id);
      FUZZ_CHECK(view->chunk(i).raw_length == refs[i].raw_length);
    }
  }
}

// Runs the record API over `bytes` and checks that its answers agree with each other; with
// `deep`, a record whose payload decodes is also renamed by its real chunk ids and re-encoded.
void Exercise(absl::Span<const uint8_t> bytes, bool deep) {
  auto peek = codec::PeekRecordSize(bytes);
  auto view = codec::ParseRecord(bytes);
  Note("ParseRecord", view.status());
  if (!view.ok()) return;
  FUZZ_CHECK(peek.ok() && *peek == view->size);
  FUZZ_CHECK(view->size <= bytes.size());
  FUZZ_CHECK(view->size == codec::RecordHeaderSize(view->chunk_count) + view->stored_length);
  FUZZ_CHECK(view->payload.size() == view->stored_length);
  FUZZ_CHECK(view->chunk_count >= 1 && view->chunk_count <= codec::kMaxRecordChunks);
  FUZZ_CHECK(view->raw_length <= codec::kMaxRecordRawLength);
  uint64_t sum = 0;
  std::vector<codec::ChunkRef> refs;
  for (size_t i = 0; i < view->chunk_count; ++i) {
    const codec::ChunkRef ref = view->chunk(i);
    FUZZ_CHECK(ref.raw_length > 0);
    FUZZ_CHECK(view->raw_offset(i) == sum);
    sum += ref.raw_length;
    refs.push_back(ref);
  }
  FUZZ_CHECK(sum == view->raw_length);

  const auto record = bytes.first(view->size);
  const bool payload_ok = codec::CheckPayload(*view).ok();
  std::vector<uint8_t> raw(view->raw_length);
  const absl::Status plain = codec::DecodeRecord(*view, Dec(), nullptr, absl::MakeSpan(raw));
  const absl::Status full = codec::DecodeRecord(*view, Dec(), &Hasher(), absl::MakeSpan(raw));
  Note("DecodeRecord", plain);
  Note("DecodeRecord with hasher", full);
  FUZZ_CHECK(!plain.ok() || payload_ok);
  FUZZ_CHECK(!full.ok() || plain.ok());
  std::vector<uint8_t> wrong(view->raw_length + 1);
  FUZZ_CHECK(
      absl::IsInvalidArgument(codec::DecodeRecord(*view, Dec(), nullptr, absl::MakeSpan(wrong))));

  std::vector<uint8_t> scratch;
  auto quick = codec::CheckReceivedRecord(record, /*full=*/false, Dec(), nullptr, &scratch);
  FUZZ_CHECK(quick.ok() == payload_ok);
  auto thorough = codec::CheckReceivedRecord(record, /*full=*/true, Dec(), &Hasher(), &scratch);
  FUZZ_CHECK(thorough.ok() == full.ok());
  if (thorough.ok()) FUZZ_CHECK(scratch == raw);
  FUZZ_CHECK(!codec::CheckReceivedRecord(record, true, Dec(), nullptr, &scratch).ok());
  if (bytes.size() > view->size) {
    FUZZ_CHECK(!codec::CheckReceivedRecord(bytes, false, Dec(), nullptr, &scratch).ok());
  }
  if (!deep || !plain.ok()) return;

  // The payload decodes: name its chunks by their real ids, and the record must verify.
  std::vector<uint8_t> named(record.begin(), record.end());
  size_t off = 0;
  for (size_t i = 0; i < refs.size(); ++i) {
    refs[i].id = Hasher().Hash(absl::MakeConstSpan(raw).subspan(off, refs[i].raw_length));
    refs[i].id.EncodeTo(named.data() + codec::kRecordFixedHeaderSize +
                        i * codec::kRecordChunkEntrySize);
    off += refs[i].raw_length;
  }
  engine::StoreU64(named.data() + 24, RecordHeaderChecksum(named.data(), refs.size()));
  auto verified = codec::CheckReceivedRecord(named, /*full=*/true, Dec(), &Hasher(), &scratch);
  FUZZ_CHECK(verified.ok());
  FUZZ_CHECK(scratch == raw);
  CheckReencode(refs, raw);
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  Exercise(absl::MakeConstSpan(data, size), /*deep=*/false);
  std::vector<uint8_t> fixed = Bytes(data, size);
  if (FixRecordAt(fixed.data(), fixed.size()) != 0) Exercise(fixed, /*deep=*/true);
  return 0;
}
