// Fuzzes the small text parsers that take strings from configs, flags and peers:
// codec::ChunkerSpec::Parse (a store's chunker, also in WELCOME and manifests), io::ParseEndpoint
// (registry daemons, --listen), codec::ChunkId::FromHex and the uuid checks, io::ParseSize
// (flags, keys files), engine::KeyRing::Parse (the store daemon's keys file), and the API's
// access-key inputs: control::ParseRequestDate (the Date header), control::ZoneById and
// control::ParseAccessKeyFile; and the webhook checks (control::CheckWebhookUrl, whose
// prefix rule must not be escaped).
//
// Input: byte 0 picks the parser; the text runs to the first newline (a keys file, either kind:
// to the end).
// For a chunker spec, the bytes after the newline are cut with the chunker it names. Checked:
// every parse that succeeds survives formatting and parsing again, and chunk boundaries stay
// within the spec.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "codec/chunk_id.h"
#include "codec/chunker.h"
#include "control/access_key.h"
#include "control/platform_time.h"
#include "control/webhook.h"
#include "engine/format/volume_backup.h"
#include "engine/wire/key_ring.h"
#include "io/net.h"
#include "io/size.h"
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

void Size(std::string_view text) {
  auto size = io::ParseSize(text);
  if (!size.ok()) return;
  // What it formats to (plain digits) reads back the same.
  auto again = io::ParseSize(absl::StrCat(*size));
  FUZZ_CHECK(again.ok() && *again == *size);
}

void Keys(std::string_view text) {
  auto ring = engine::KeyRing::Parse(absl::string_view(text.data(), text.size()));
  if (!ring.ok()) return;
  FUZZ_CHECK(!ring->keys().empty());
  std::string lines;
  for (const engine::ClientKey& k : ring->keys()) {
    FUZZ_CHECK(engine::CheckKeyName(k.name).ok());
    FUZZ_CHECK(k.rights != 0 && (k.rights & ~engine::kAllRights) == 0);
    FUZZ_CHECK(ring->Find(k.name) == &k);
    std::string hex = engine::FormatKeyFile(engine::AuthKey{k.key.bytes, ""});
    hex.pop_back();
    absl::StrAppend(&lines, k.name, " ", engine::FormatRights(k.rights), " ", hex);
    if (k.max_connections != 0) absl::StrAppend(&lines, " connections=", k.max_connections);
    if (k.max_inflight != 0) absl::StrAppend(&lines, " inflight=", k.max_inflight);
    if (k.quota_bytes != 0) absl::StrAppend(&lines, " quota=", k.quota_bytes);
    lines += "\n";
  }
  auto again = engine::KeyRing::Parse(lines);
  FUZZ_CHECK(again.ok() && again->keys().size() == ring->keys().size());
  for (size_t i = 0; i < ring->keys().size(); ++i) {
    const engine::ClientKey& a = ring->keys()[i];
    const engine::ClientKey& b = again->keys()[i];
    FUZZ_CHECK(a.name == b.name && a.rights == b.rights && a.key.bytes == b.key.bytes &&
               a.max_connections == b.max_connections && a.max_inflight == b.max_inflight &&
               a.quota_bytes == b.quota_bytes);
  }
}

// A Date that parses names a real civil time and a zone, and says the same written again.
void Date(std::string_view text) {
  auto d = control::ParseRequestDate(absl::string_view(text.data(), text.size()));
  if (!d.ok()) return;
  FUZZ_CHECK(d->wall.hour() < 24 && d->wall.minute() < 60 && d->wall.second() < 60);
  const std::string zone(text.substr(text.rfind(' ') + 1));
  FUZZ_CHECK(control::ZoneById(zone).ok());
  const std::string again = absl::StrCat(
      absl::FormatTime("%a, %d %b %Y %H:%M:%S ", absl::FromCivil(d->wall, absl::UTCTimeZone()),
                       absl::UTCTimeZone()),
      zone);
  auto reparsed = control::ParseRequestDate(again);
  FUZZ_CHECK(reparsed.ok() && reparsed->wall == d->wall);
}

void AccessKeys(std::string_view text) {
  auto keys = control::ParseAccessKeyFile(absl::string_view(text.data(), text.size()), "fuzz");
  if (!keys.ok()) return;
  std::string lines;
  for (const control::AccessKey& k : *keys) {
    FUZZ_CHECK(!k.id.empty() && !k.secret.empty());
    absl::StrAppend(&lines, k.id, " ", k.secret, k.enabled ? " enabled" : " disabled", "\n");
  }
  auto again = control::ParseAccessKeyFile(lines, "fuzz");
  FUZZ_CHECK(again.ok() && again->size() == keys->size());
  for (size_t i = 0; i < keys->size(); ++i) {
    FUZZ_CHECK((*again)[i].id == (*keys)[i].id && (*again)[i].secret == (*keys)[i].secret &&
               (*again)[i].enabled == (*keys)[i].enabled);
  }
}

// A webhook URL taken under a prefix cannot reach another host or leave the prefix's path.
void WebhookUrl(std::string_view text) {
  const absl::string_view url(text.data(), text.size());
  control::WebhookPolicy policy;
  policy.allow = {"http://10.0.0.5:9000/hooks/"};
  if (control::CheckWebhookPrefix(url).ok()) {
    FUZZ_CHECK(url.find_first_of("@#?\\ ") == absl::string_view::npos);
  }
  if (!control::CheckWebhookUrl(policy, url).ok()) return;
  FUZZ_CHECK(absl::StartsWith(url, policy.allow[0]));
  FUZZ_CHECK(control::WebhookOrigin(url) == "http://10.0.0.5:9000");
  FUZZ_CHECK(url.find_first_of("@#\\") == absl::string_view::npos);
  const std::string lower = absl::AsciiStrToLower(url.substr(0, url.find('?')));
  FUZZ_CHECK(lower.find("/../") == std::string::npos &&
             lower.find("/%2e%2e/") == std::string::npos);
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
  switch (data[0] % 8) {
    case 0:
      Chunker(text, after);
      break;
    case 1:
      Endpoint(text);
      break;
    case 2:
      Hex(text);
      break;
    case 3:
      Size(text);
      break;
    case 4:
      Date(text);
      break;
    case 5:
      AccessKeys(input);
      break;
    case 6:
      WebhookUrl(text);
      break;
    default:
      Keys(input);
      break;
  }
  return 0;
}
