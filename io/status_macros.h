// Status propagation macros for the whole project. Abseil 20220623 ships none, so they are
// defined here, once; every layer above io/ uses them.
#ifndef CHUNKFERRY_IO_STATUS_MACROS_H_
#define CHUNKFERRY_IO_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CF_CONCAT_INNER_(a, b) a##b
#define CF_CONCAT_(a, b) CF_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function when not OK.
#define CF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status cf_status_ = (expr);      \
    if (!cf_status_.ok()) return cf_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else moves the value
// into `lhs` (a declaration such as `auto x` or an existing variable).
#define CF_ASSIGN_OR_RETURN(lhs, rexpr) \
  CF_ASSIGN_OR_RETURN_IMPL_(CF_CONCAT_(cf_statusor_, __LINE__), lhs, rexpr)
#define CF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                              \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#endif  // CHUNKFERRY_IO_STATUS_MACROS_H_
