// Bridges std::string_view (the project's API type) and absl::string_view. Not API.
//
// Debian's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW 0, so absl::string_view is a
// distinct type with no conversion to or from std::string_view: absl::StrCat, absl::StrSplit
// and absl::Status::message() need these explicit bridges.
#ifndef CHUNKFERRY_CODEC_INTERNAL_STRINGS_H_
#define CHUNKFERRY_CODEC_INTERNAL_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace chunkferry::codec::internal {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace chunkferry::codec::internal

#endif  // CHUNKFERRY_CODEC_INTERNAL_STRINGS_H_
