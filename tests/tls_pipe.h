// Two TlsChannels joined in memory, for tests and benchmarks of the record layer: what a socket
// between them would carry, by one copy from one's output ring into the other's input ring.
#ifndef CHUNKFERRY_TESTS_TLS_PIPE_H_
#define CHUNKFERRY_TESTS_TLS_PIPE_H_

#include <algorithm>
#include <cstring>

#include "engine/wire/tls.h"

namespace chunkferry::testing {

// Moves ciphertext from `from`'s output ring into `to`'s input ring, as far as there is room.
inline void CarryCiphertext(engine::TlsChannel& from, engine::TlsChannel& to) {
  for (;;) {
    const absl::Span<const uint8_t> run = from.Output();
    const absl::Span<uint8_t> room = to.InputSpace();
    const size_t n = std::min(run.size(), room.size());
    if (n == 0) return;
    std::memcpy(room.data(), run.data(), n);
    to.CommitInput(n);
    from.ConsumeOutput(n);
  }
}

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_TESTS_TLS_PIPE_H_
