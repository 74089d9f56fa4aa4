// Fuzzes the backup-storage registry parser (control/registry.h): ParseRegistry over the input as
// the JSON text of a registry config, with relative paths resolved against a scratch folder that
// holds two local stores (store-a, store-b: a STORE file each), a valid key file (node.key, mode
// 0600) and one others may read (open.key, mode 0644), so configs can get all the way through.
//
// Checked on success: what the header promises of a validated registry (at least one storage,
// uuids valid and unique, local stores resolved to absolute folders holding a STORE file, daemons
// with a key file, RADOS pools with a pool name and absolute ceph paths, option ranges, sessions of
// printable ASCII that HasSession accepts).
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "control/registry.h"
#include "engine/format/volume_backup.h"
#include "tests/fuzz/fuzz_util.h"

namespace chunkferry::fuzz {
namespace {

const std::string& RegistryDir() {
  static const std::string dir = [] {
    const std::string d = ScratchDir() + "/reg";
    FUZZ_CHECK(::mkdir(d.c_str(), 0755) == 0);
    for (const char* store : {"store-a", "store-b"}) {
      const std::string s = d + "/" + store;
      FUZZ_CHECK(::mkdir(s.c_str(), 0755) == 0);
      WriteFile(s + "/STORE", std::string("fuzz\n"));
    }
    const std::string key(64, 'a');
    WriteFile(d + "/node.key", key + "\n", 0600);
    FUZZ_CHECK(::chmod((d + "/node.key").c_str(), 0600) == 0);
    WriteFile(d + "/open.key", key + "\n", 0644);
    FUZZ_CHECK(::chmod((d + "/open.key").c_str(), 0644) == 0);
    return d;
  }();
  return dir;
}

}  // namespace
}  // namespace chunkferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::fuzz;
  using chunkferry::control::Registry;
  if (size > (1u << 20)) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = chunkferry::control::ParseRegistry(text, "fuzz.json", RegistryDir());
  Note("ParseRegistry", parsed.status());
  if (!parsed.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(parsed.status()));
    return 0;
  }
  const Registry& r = *parsed;
  FUZZ_CHECK(!r.storages.empty());
  std::set<std::string> uuids;
  for (const auto& s : r.storages) {
    FUZZ_CHECK(chunkferry::engine::IsValidUuid(s.uuid));
    FUZZ_CHECK(uuids.insert(s.uuid).second);
    FUZZ_CHECK(r.Find(s.uuid) == &s);
    FUZZ_CHECK(!s.name.empty());
    FUZZ_CHECK(!(s.remote && s.rados));
    if (s.remote) {
      FUZZ_CHECK(!s.key_file.empty() && s.key_file[0] == '/');
      FUZZ_CHECK(s.path.empty());
    } else if (s.rados) {
      // A pool: named by its URL, reached with its own client settings, never by a daemon's key.
      FUZZ_CHECK(!s.rados_url.pool.empty());
      FUZZ_CHECK(s.path.empty() && s.key_file.empty());
      FUZZ_CHECK(s.ceph.conf_path.empty() || s.ceph.conf_path[0] == '/');
      FUZZ_CHECK(s.ceph.keyring.empty() || s.ceph.keyring[0] == '/');
      FUZZ_CHECK(s.ceph.timeout_ms >= 1'000 && s.ceph.timeout_ms <= 3'600'000);
    } else {
      FUZZ_CHECK(!s.path.empty() && s.path[0] == '/' && s.key_file.empty());
      FUZZ_CHECK(::access((s.path + "/STORE").c_str(), R_OK) == 0);
    }
    FUZZ_CHECK(s.connections >= 1 && s.connections <= 64);
    FUZZ_CHECK(s.connect_timeout_ms >= 1 && s.connect_timeout_ms <= 3'600'000);
  }
  for (const auto& session : r.sessions) {
    FUZZ_CHECK(!session.empty());
    for (char c : session) FUZZ_CHECK(c > ' ' && c <= '~');
    FUZZ_CHECK(r.HasSession(session));
  }
  FUZZ_CHECK(!r.HasSession(""));
  FUZZ_CHECK(r.Find("") == nullptr);
  return 0;
}
