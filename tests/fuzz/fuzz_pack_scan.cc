// Fuzzes the pack scan (engine/format/pack.h): ScanPack over a pack file holding a valid pack
// header followed by the input, with both ScanCheck values, as crash recovery and index rebuilds
// run it over whatever a crash or a damaged disk left. Also CheckPackHeader over the input's
// first bytes.
//
// The file is a memfd (no disk). Each input is scanned as given and again with every record in
// it fixed up (lengths and checksums, tests/fuzz/fuzz_util.h). Checked: every visited record is
// intact by the scan's own rule and lies inside the file, records come in order without overlap,
// damaged regions lie between them, and a scan without a torn tail accounts for the whole file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/format/pack.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

constexpr uint32_t kPackId = 0x2a;
const std::string kStoreUuid = "0123456789abcdef0123456789abcdef";

int PackFd() {
  static const int fd = [] {
    const int f = ::memfd_create("fuzz-pack", MFD_CLOEXEC);
    if (f < 0) {
      perror("memfd_create");
      abort();
    }
    return f;
  }();
  return fd;
}

void Scan(const std::vector<uint8_t>& file, engine::ScanCheck check) {
  const uint64_t start = engine::kPackHeaderSize;
  uint64_t last_end = start;
  auto scan = engine::ScanPack(
      PackFd(), kPackId, start, file.size(), check,
      [&](const engine::RecordLocation& loc, const codec::RecordView& view,
          absl::Span<const uint8_t> bytes) {
        FUZZ_CHECK(loc.pack == kPackId);
        FUZZ_CHECK(loc.offset >= last_end);
        FUZZ_CHECK(loc.size == view.size && bytes.size() == view.size);
        FUZZ_CHECK(loc.offset + loc.size <= file.size());
        FUZZ_CHECK(std::memcmp(bytes.data(), file.data() + loc.offset, bytes.size()) == 0);
        auto again = codec::ParseRecord(bytes);
        FUZZ_CHECK(again.ok() && again->size == view.size);
        if (check == engine::ScanCheck::kPayload) FUZZ_CHECK(codec::CheckPayload(view).ok());
        last_end = loc.offset + loc.size;
      });
  FUZZ_CHECK(scan.ok());  // a memfd read does not fail
  FUZZ_CHECK(scan->valid_end >= start && scan->valid_end <= file.size());
  FUZZ_CHECK(scan->valid_end == last_end);
  uint64_t prev = start;
  for (const auto& [begin, end] : scan->damaged) {
    FUZZ_CHECK(begin >= prev && begin < end && end <= file.size());
    prev = end;
  }
  if (!scan->torn_tail) FUZZ_CHECK(scan->valid_end == file.size());
}

void ScanBoth(const std::vector<uint8_t>& body) {
  const std::string header = engine::EncodePackHeader(kPackId, kStoreUuid);
  std::vector<uint8_t> file(header.begin(), header.end());
  file.insert(file.end(), body.begin(), body.end());
  const int fd = PackFd();
  FUZZ_CHECK(::ftruncate(fd, 0) == 0);
  FUZZ_CHECK(::pwrite(fd, file.data(), file.size(), 0) == static_cast<ssize_t>(file.size()));
  FUZZ_CHECK(engine::CheckPackHeader(absl::MakeConstSpan(file).first(engine::kPackHeaderSize),
                                     kPackId, kStoreUuid, "fuzz")
                 .ok());
  Scan(file, engine::ScanCheck::kHeader);
  Scan(file, engine::ScanCheck::kPayload);
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  // The input's own first bytes as a pack header: must never be taken for another pack's.
  if (size >= chunkferry::engine::kPackHeaderSize) {
    (void)chunkferry::engine::CheckPackHeader(absl::MakeConstSpan(data, size), kPackId, kStoreUuid,
                                              "fuzz");
  }
  std::vector<uint8_t> body = Bytes(data, size);
  ScanBoth(body);
  FixRecords(absl::MakeSpan(body));
  if (size != 0 && std::memcmp(body.data(), data, size) != 0) ScanBoth(body);
  return 0;
}
