// A connection to a Ceph cluster and one pool (and namespace) in it, through librados, with the
// client settings every RADOS store takes (flags, registry fields and C ABI options alike), and
// the translation of librados's negative errno results into Status messages that name the object.
#ifndef CHUNKFERRY_ENGINE_RADOS_RADOS_CLUSTER_H_
#define CHUNKFERRY_ENGINE_RADOS_RADOS_CLUSTER_H_

#include <memory>
#include <rados/librados.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/rados/rados_layout.h"

namespace chunkferry::engine::rados {

class RadosPool {
 public:
  // Connects and opens the pool of `url` (NotFound naming it when the cluster has no such pool).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RadosPool>> Connect(
      const RadosUrl& url, const RadosClientOptions& options);
  ~RadosPool();
  RadosPool(const RadosPool&) = delete;
  RadosPool& operator=(const RadosPool&) = delete;

  librados::IoCtx& io() { return io_; }
  const RadosUrl& url() const { return url_; }
  const std::string& location() const { return location_; }
  // This client's address and instance, as the cluster sees it (lock owners, logs).
  std::string client_id();

 private:
  RadosPool() = default;
  librados::Rados cluster_;
  bool connected_ = false;
  librados::IoCtx io_;
  RadosUrl url_;
  std::string location_;
};

// Turns a librados result (a negative errno) into a Status: "<op> <object> in <where>: <why>".
// ENOENT → NotFound, EEXIST → AlreadyExists, ETIMEDOUT → DeadlineExceeded, EPERM/EACCES →
// PermissionDenied, ECANCELED/ERANGE (a failed compare) → Aborted, ENOSPC/EDQUOT →
// ResourceExhausted, else Unavailable (a cluster that went away).
absl::Status RadosError(int r, absl::string_view op, absl::string_view object,
                        absl::string_view where);

}  // namespace chunkferry::engine::rados

#endif  // CHUNKFERRY_ENGINE_RADOS_RADOS_CLUSTER_H_
