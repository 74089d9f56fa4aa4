// The one-node Ceph cluster of the RADOS tests: CTest starts it (tools/ceph_cluster.sh, fixture
// `ceph`) and names its ceph.conf in CHUNKFERRY_TEST_CEPH_CONF. Each test gets a namespace of its
// own in pool `chunkferry`, so tests never see each other's objects.
#ifndef CHUNKFERRY_TESTS_RADOS_TEST_ENV_H_
#define CHUNKFERRY_TESTS_RADOS_TEST_ENV_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/format/volume_backup.h"
#include "engine/rados/rados_store.h"

namespace chunkferry::testing {

// The cluster's ceph.conf; empty when the test runs outside CTest (no cluster).
inline std::string TestCephConf() {
  const char* conf = std::getenv("CHUNKFERRY_TEST_CEPH_CONF");
  return conf == nullptr ? "" : conf;
}

// Skips the test when no cluster was started for it (a test binary run by hand).
#define CF_SKIP_IF_NO_CEPH()                                                      \
  if (::chunkferry::testing::TestCephConf().empty()) {                            \
    GTEST_SKIP() << "no Ceph cluster: run through ctest (it starts one), or set " \
                    "CHUNKFERRY_TEST_CEPH_CONF to a cluster's ceph.conf";         \
  }

inline engine::rados::RadosClientOptions TestRadosClient() {
  engine::rados::RadosClientOptions o;
  o.conf_path = TestCephConf();
  o.timeout_ms = 30'000;
  return o;
}

// A namespace no other test uses.
inline engine::rados::RadosUrl FreshRadosUrl() {
  engine::rados::RadosUrl url;
  url.pool = "chunkferry";
  url.ns = absl::StrCat("t-", engine::NewUuid());
  return url;
}

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_TESTS_RADOS_TEST_ENV_H_
