// Byte sizes as people write them in flags and configuration files.
#ifndef CHUNKFERRY_IO_SIZE_H_
#define CHUNKFERRY_IO_SIZE_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace chunkferry::io {

// Parses "123", "64k", "4M", "1g", "2t" (binary multiples, either case), also written "64KiB",
// "4MB" or "4mib". InvalidArgument for anything else, or a value past 2^64 - 1.
[[nodiscard]] absl::StatusOr<uint64_t> ParseSize(std::string_view text);

}  // namespace chunkferry::io

#endif  // CHUNKFERRY_IO_SIZE_H_
