// An ordered list of string key/value pairs in a length-prefixed binary block: the metadata part
// of manifests and group records. Keys may repeat (a group lists its volumes that way); readers
// keep unknown keys, so later versions can add fields.
//
//   u32 count, then count × (u16 key length, key bytes, u32 value length, value bytes)
#ifndef CHUNKFERRY_ENGINE_FORMAT_KV_BLOCK_H_
#define CHUNKFERRY_ENGINE_FORMAT_KV_BLOCK_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/format/byte_io.h"

namespace chunkferry::engine {

using KvPairs = std::vector<std::pair<std::string, std::string>>;

inline constexpr size_t kMaxKvPairs = 65536;
inline constexpr size_t kMaxKvValue = 1 << 20;

// InvalidArgument when a block could not be read back: too many pairs, a key longer than
// 65535 bytes or a value longer than kMaxKvValue.
[[nodiscard]] absl::Status CheckKv(const KvPairs& pairs);
// Appends the block; `pairs` must pass CheckKv.
void EncodeKv(const KvPairs& pairs, std::string* out);
// Reads one block from `reader`; `what` names the file in errors (DataLoss).
[[nodiscard]] absl::StatusOr<KvPairs> DecodeKv(ByteReader& reader, absl::string_view what);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_FORMAT_KV_BLOCK_H_
