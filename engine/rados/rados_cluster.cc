#include "engine/rados/rados_cluster.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/status_macros.h"

namespace chunkferry::engine::rados {

absl::Status RadosError(int r, absl::string_view op, absl::string_view object,
                        absl::string_view where) {
  const int err = r < 0 ? -r : r;
  const std::string msg =
      absl::StrCat(op, object.empty() ? "" : " ", object, " in ", where, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case ETIMEDOUT:
      return absl::DeadlineExceededError(msg);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case ECANCELED:
    case ERANGE:
    case EOVERFLOW:
    case EBUSY:
      return absl::AbortedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

absl::StatusOr<std::unique_ptr<RadosPool>> RadosPool::Connect(const RadosUrl& url,
                                                              const RadosClientOptions& options) {
  std::unique_ptr<RadosPool> p(new RadosPool());
  p->url_ = url;
  p->location_ = url.ToString();
  const std::string where = absl::StrCat("the Ceph cluster of ", p->location_);
  std::string name = options.client_name.empty() ? "client.admin" : options.client_name;
  if (!absl::StartsWith(name, "client.")) name = absl::StrCat("client.", name);
  int r = p->cluster_.init2(name.c_str(), "ceph", 0);
  if (r < 0) return RadosError(r, "set up client", name, where);
  r = p->cluster_.conf_read_file(options.conf_path.empty() ? nullptr : options.conf_path.c_str());
  if (r < 0) {
    return RadosError(r, "read ceph.conf",
                      options.conf_path.empty() ? "(the default search)" : options.conf_path,
                      where);
  }
  (void)p->cluster_.conf_parse_env(nullptr);
  if (!options.keyring.empty()) {
    r = p->cluster_.conf_set("keyring", options.keyring.c_str());
    if (r < 0) return RadosError(r, "set keyring", options.keyring, where);
  }
  if (options.timeout_ms > 0) {
    const std::string secs = absl::StrCat((options.timeout_ms + 999) / 1000);
    for (const char* key :
         {"client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"}) {
      r = p->cluster_.conf_set(key, secs.c_str());
      if (r < 0) return RadosError(r, "set", key, where);
    }
  }
  // librados would log to stderr; the caller reports errors itself.
  (void)p->cluster_.conf_set("log_to_stderr", "false");
  (void)p->cluster_.conf_set("err_to_stderr", "false");
  r = p->cluster_.connect();
  if (r < 0) return RadosError(r, "connect as", name, where);
  p->connected_ = true;
  CF_RETURN_IF_ERROR(p->OpenPool(url.pool, &p->io_));
  return p;
}

absl::Status RadosPool::OpenPool(const std::string& pool, librados::IoCtx* io) {
  const int r = cluster_.ioctx_create(pool.c_str(), *io);
  if (r == -ENOENT) {
    return absl::NotFoundError(
        absl::StrCat("the Ceph cluster has no pool '", pool, "' (create it: docs/OPERATORS.md)"));
  }
  if (r < 0)
    return RadosError(r, "open pool", pool, absl::StrCat("the Ceph cluster of ", location_));
  io->set_namespace(url_.ns);
  return absl::OkStatus();
}

absl::Status RadosPool::OpenDataPool(const std::string& pool) {
  if (pool.empty() || pool == url_.pool) return absl::OkStatus();
  CF_RETURN_IF_ERROR(OpenPool(pool, &data_io_));
  data_pool_ = pool;
  return absl::OkStatus();
}

RadosPool::~RadosPool() {
  if (connected_) {
    if (!data_pool_.empty()) data_io_.close();
    io_.close();
    cluster_.shutdown();
  }
}

std::string RadosPool::client_id() { return absl::StrCat("client.", cluster_.get_instance_id()); }

}  // namespace chunkferry::engine::rados
