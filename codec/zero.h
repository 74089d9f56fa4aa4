// Detection of all-zero chunks, which are never stored or sent (restore writes them as holes).
#ifndef CHUNKFERRY_CODEC_ZERO_H_
#define CHUNKFERRY_CODEC_ZERO_H_

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"

namespace chunkferry::codec {

// Returns true when every byte of `data` is zero (true for an empty span). Compares against a
// static zero page with libc's vectorised memcmp, which stops at the first non-zero vector, so
// non-zero data usually costs a few loads. Any length and alignment.
bool IsAllZero(absl::Span<const uint8_t> data);

}  // namespace chunkferry::codec

#endif  // CHUNKFERRY_CODEC_ZERO_H_
