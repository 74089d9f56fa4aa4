// What each authenticated connection of the store daemon may do, decided at every request from
// the daemon's current keys (KeyRing), and how many bytes each key has added (its quota usage).
//
// Keys can be replaced while connections are open (SIGHUP): a connection whose key was removed
// or given another secret is refused at its next request and closed; one whose rights shrank is
// refused what it may no longer do. Usage survives restarts in a small text file (one line per
// key: `name bytes`), rewritten atomically after the commit steps that add bytes.
//
// Thread-safe.
#ifndef CHUNKFERRY_ENGINE_WIRE_KEY_AUTHORITY_H_
#define CHUNKFERRY_ENGINE_WIRE_KEY_AUTHORITY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/wire/key_ring.h"
#include "engine/wire/wire_messages.h"

namespace chunkferry::engine {

class KeyAuthority {
 public:
  // `usage_path` empty: usage is counted in memory only (lost at restart).
  KeyAuthority(KeyRing keys, std::string usage_path);

  // Reads the usage file, if there is one. InvalidArgument naming the line when it is malformed
  // (the daemon refuses to start rather than forget what keys have used).
  [[nodiscard]] absl::Status LoadUsage();

  // The keys now in force (a snapshot: a handshake keeps it while it runs).
  std::shared_ptr<const KeyRing> keys() const;
  // Puts `keys` in force for every request from now on, open connections included.
  void Replace(KeyRing keys);

  // May the connection authenticated as `name` with secret `proven` send `type`? OK;
  // Unauthenticated when that key is gone or has another secret now (the connection should
  // close); PermissionDenied naming the key, its rights and the request otherwise.
  [[nodiscard]] absl::Status Check(absl::string_view name, const AuthKey& proven,
                                   MsgType type) const;

  // May key `name` add `bytes` more? ResourceExhausted saying how much of its quota is used when
  // not. Connections of one key are checked one request at a time, so together they can pass the
  // quota by at most one request each.
  [[nodiscard]] absl::Status CheckQuota(absl::string_view name, uint64_t bytes) const;
  // Counts `bytes` that key `name` added.
  void Charge(absl::string_view name, uint64_t bytes);
  // Bytes key `name` has added (since the usage file was created).
  uint64_t used(absl::string_view name) const;
  // Writes the usage file when something was charged since it was last written.
  [[nodiscard]] absl::Status SaveUsage();

 private:
  const std::string usage_path_;
  mutable std::mutex mu_;
  std::shared_ptr<const KeyRing> keys_;   // guarded by mu_
  std::map<std::string, uint64_t> used_;  // guarded by mu_
  uint64_t charges_ = 0;                  // guarded by mu_: Charge calls so far
  std::mutex save_mu_;                    // one writer of the usage file at a time
  uint64_t saved_charges_ = 0;            // guarded by save_mu_: charges_ the file holds
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_KEY_AUTHORITY_H_
