#include "io/size.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace chunkferry::io {

absl::StatusOr<uint64_t> ParseSize(std::string_view text) {
  std::string t = absl::AsciiStrToLower(std::string(text));
  // "64kib" and "64kb" mean what "64k" means.
  if (absl::EndsWith(t, "ib") && t.size() > 2) {
    t.resize(t.size() - 2);
  } else if (absl::EndsWith(t, "b") && t.size() > 1) {
    t.resize(t.size() - 1);
  }
  uint64_t mult = 1;
  if (!t.empty()) {
    switch (t.back()) {
      case 'k':
        mult = 1ull << 10;
        break;
      case 'm':
        mult = 1ull << 20;
        break;
      case 'g':
        mult = 1ull << 30;
        break;
      case 't':
        mult = 1ull << 40;
        break;
      default:
        break;
    }
    if (mult != 1) t.pop_back();
  }
  uint64_t v = 0;
  // Digits only: SimpleAtoi alone would take "4 k" or "+4".
  const bool digits = !t.empty() && t.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || !absl::SimpleAtoi(t, &v) || v > UINT64_MAX / mult) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(text), "' is not a size (e.g. 4096, 64k, 1G, 2TiB)"));
  }
  return v * mult;
}

}  // namespace chunkferry::io
