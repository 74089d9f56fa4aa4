#include "control/query_string.h"

#include <httplib.h>

#include "absl/strings/str_split.h"

namespace chunkferry::control {

std::multimap<std::string, std::string> ParseQueryString(absl::string_view query) {
  std::multimap<std::string, std::string> params;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    const std::string key(pair.substr(0, eq));
    if (key.empty()) continue;
    const std::string value(eq == absl::string_view::npos ? "" : pair.substr(eq + 1));
    params.emplace(httplib::detail::decode_url(key, true),
                   httplib::detail::decode_url(value, true));
  }
  return params;
}

}  // namespace chunkferry::control
