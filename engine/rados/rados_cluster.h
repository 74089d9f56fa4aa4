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
  // Opens `pool` (same namespace) as the one packs live in: an erasure-coded pool, say, beside the
  // replicated one that holds the omap objects (EC pools hold no omap). NotFound naming it.
  [[nodiscard]] absl::Status OpenDataPool(const std::string& pool);
  // Where packs live: the data pool when one is open, else io().
  librados::IoCtx& data_io() { return data_pool_.empty() ? io_ : data_io_; }
  const std::string& data_pool() const { return data_pool_; }
  const RadosUrl& url() const { return url_; }
  const std::string& location() const { return location_; }
  // This client's address and instance, as the cluster sees it (lock owners, logs).
  std::string client_id();

 private:
  RadosPool() = default;
  // Opens `pool` into *io, in the URL's namespace.
  absl::Status OpenPool(const std::string& pool, librados::IoCtx* io);
  librados::Rados cluster_;
  bool connected_ = false;
  librados::IoCtx io_;
  librados::IoCtx data_io_;  // open when data_pool_ is not empty
  std::string data_pool_;
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
