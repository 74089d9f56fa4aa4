// Fuzzes the chunk index's record table (engine/local/record_table.h): RecordTable::Open on a
// file holding the input, read-only, then every slot read back with Get.
//
// Each input is read as given and with every slot's check recomputed (FixSlots,
// tests/fuzz/fuzz_util.h). Get must answer exactly the slot's fields when its check holds and
// pack 0 (no store has it) when it does not; a table asked for more slots than the file holds is
// DataLoss.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/local/record_table.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

void Exercise(const std::vector<uint8_t>& file) {
  const std::string path = ScratchDir() + "/records";
  WriteFile(path, file);
  const uint64_t slots = file.size() / 16;
  FUZZ_CHECK(absl::IsDataLoss(engine::RecordTable::Open(path, slots + 1, false).status()));
  // A saved state may name fewer records than the file holds (a save that did not finish).
  const uint64_t count = file.empty() ? 0 : slots - file[0] % (slots + 1) / 2;
  auto table = engine::RecordTable::Open(path, count, /*writable=*/false);
  FUZZ_CHECK(table.ok());
  FUZZ_CHECK(table->size() == count && table->persisted() == count && !table->dirty());
  for (uint64_t n = 0; n < count && n < 4096; ++n) {
    const uint8_t* slot = file.data() + n * 16;
    std::vector<uint8_t> fixed(slot, slot + 16);
    FixSlots(absl::MakeSpan(fixed));
    const bool intact = std::memcmp(fixed.data(), slot, 16) == 0;
    const engine::RecordLocation loc = table->Get(n);
    if (intact) {
      FUZZ_CHECK(loc.pack == engine::LoadU32(slot) && loc.size == engine::LoadU32(slot + 4));
      uint64_t offset = 0;
      for (int i = 0; i < 6; ++i) offset |= uint64_t{slot[8 + i]} << (8 * i);
      FUZZ_CHECK(loc.offset == offset);
    } else {
      FUZZ_CHECK(loc.pack == 0 && loc.size == 0 && loc.offset == 0);
    }
  }
  // Moves and new records answer from memory, over whatever the file says.
  if (count > 0) {
    const engine::RecordLocation moved{7, 99, 4096};
    table->Set(count - 1, moved);
    const engine::RecordLocation got = table->Get(count - 1);
    FUZZ_CHECK(got == moved && got.size == 99);
  }
  table->Append(engine::RecordLocation{8, 1, 32});
  FUZZ_CHECK(table->size() == count + 1 && table->Get(count).pack == 8);
  table->Truncate(count);
  FUZZ_CHECK(table->size() == count);
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  if (size > (1u << 20)) return 0;
  std::vector<uint8_t> file = Bytes(data, size);
  Exercise(file);
  FixSlots(absl::MakeSpan(file));
  if (size >= 16 && std::memcmp(file.data(), data, size) != 0) Exercise(file);
  return 0;
}
