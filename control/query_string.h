// A request's query string as the platform's servlet container reads it, for the HTTP API and the
// C ABI alike: pairs split at '&', each at its FIRST '=' (so `q=uuid=abc`, as curl users write it,
// is q → "uuid=abc"), URL-decoded ('+' is a space), repeats kept in order.
#ifndef CHUNKFERRY_CONTROL_QUERY_STRING_H_
#define CHUNKFERRY_CONTROL_QUERY_STRING_H_

#include <map>
#include <string>

#include "absl/strings/string_view.h"

namespace chunkferry::control {

// `query` is what follows '?' (without it).
std::multimap<std::string, std::string> ParseQueryString(absl::string_view query);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_QUERY_STRING_H_
