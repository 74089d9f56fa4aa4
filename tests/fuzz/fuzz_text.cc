// Fuzzes the small text parsers that take strings from configs, flags and peers:
// codec::ChunkerSpec::Parse (a store's chunker, also in WELCOME and manifests), io::ParseEndpoint
// (registry daemons, --listen), codec::ChunkId::FromHex, and the uuid checks.
//
// Input: byte 0 picks the parser; the text runs to the first newline. For a chunker spec, the
// bytes after the newline are cut with the chunker it names. Checked: every parse that succeeds
// survives formatting and parsing again, and chunk boundaries stay within the spec.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "codec/chunk_id.h"
#include "codec/chunker.h"
#include "engine/format/volume_backup.h"
#include "io/net.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

void Chunker(std::string_view text, absl::Span<const uint8_t> data) {
  auto spec = codec::ChunkerSpec::Parse(text);
  if (!spec.ok()) return;
  FUZZ_CHECK(spec->Validate().ok());
  FUZZ_CHECK(spec->min_size <= spec->avg_size && spec->avg_size <= spec->max_size);
  auto again = codec::ChunkerSpec::Parse(spec->ToString());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->kind == spec->kind && again->min_size == spec->min_size &&
             again->avg_size == spec->avg_size && again->max_size == spec->max_size);
  auto chunker = codec::MakeChunker(*spec);
  FUZZ_CHECK(chunker != nullptr && chunker->max_size() == spec->max_size);
  size_t pos = 0;
  while (pos < data.size()) {
    const auto rest = data.subspan(pos);
    const size_t more = chunker->FindBoundary(rest, /*last=*/false);
    FUZZ_CHECK(more <= rest.size() && more <= spec->max_size);
    if (rest.size() >= spec->max_size) FUZZ_CHECK(more > 0);
    const size_t cut = chunker->FindBoundary(rest, /*last=*/true);
    FUZZ_CHECK(cut > 0 && cut <= rest.size() && cut <= spec->max_size);
    if (more != 0) FUZZ_CHECK(cut == more);
    pos += cut;
  }
}

void Endpoint(std::string_view text) {
  auto ep = io::ParseEndpoint(text);
  if (!ep.ok()) return;
  FUZZ_CHECK(!ep->host.empty());
  const std::string formatted = io::FormatEndpoint(*ep);
  auto again = io::ParseEndpoint(formatted);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *ep);
}

void Hex(std::string_view text) {
  auto id = codec::ChunkId::FromHex(text);
  const bool uuid = engine::IsValidUuid(absl::string_view(text.data(), text.size()));
  // Every uuid is the hex form of some id (uuids are lowercase hex, ids read either case).
  if (uuid) FUZZ_CHECK(id.ok());
  if (!id.ok()) return;
  FUZZ_CHECK(text.size() == 32);
  const std::string hex = id->ToHex();
  FUZZ_CHECK(hex == absl::AsciiStrToLower(absl::string_view(text.data(), text.size())));
  FUZZ_CHECK(engine::IsValidUuid(hex));
  uint8_t b[16];
  id->EncodeTo(b);
  FUZZ_CHECK(codec::ChunkId::DecodeFrom(b) == *id);
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size == 0 || size > (1u << 20)) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nl = input.find('\n');
  const std::string_view text = input.substr(0, nl);
  const auto after = nl == std::string_view::npos
                         ? absl::Span<const uint8_t>()
                         : absl::MakeConstSpan(data + 2 + nl, size - 2 - nl);
  switch (data[0] % 3) {
    case 0:
      Chunker(text, after);
      break;
    case 1:
      Endpoint(text);
      break;
    default:
      Hex(text);
      break;
  }
  return 0;
}
