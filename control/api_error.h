// The platform's ErrorCode: what a failed sync answers ({"error": {...}}), and how the engine's
// statuses map onto the contract's global codes
// (shared/api/SyncVmBackupFromImageStoreBackupStorage.md).
#ifndef CHUNKFERRY_CONTROL_API_ERROR_H_
#define CHUNKFERRY_CONTROL_API_ERROR_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace chunkferry::control {

using Json = nlohmann::ordered_json;

// The contract's global codes.
inline constexpr std::string_view kSysInternal = "SYS.1000";
inline constexpr std::string_view kSysTimeout = "SYS.1001";
inline constexpr std::string_view kSysNotFound = "SYS.1003";
inline constexpr std::string_view kSysOperationFailed = "SYS.1006";
inline constexpr std::string_view kSysInvalidArgument = "SYS.1007";
// The platform's identity code for a session it does not know (org.zstack.header.identity).
inline constexpr std::string_view kIdInvalidSession = "ID.1001";

struct ApiError {
  std::string code;                       // one of the codes above
  std::string details;                    // what went wrong, in words
  std::shared_ptr<const ApiError> cause;  // the root error, when there is one
};

// The fixed, brief description of `code` ("An internal error happened in system", ...).
std::string_view ErrorDescription(std::string_view code);

ApiError MakeError(std::string_view code, std::string details);

// Maps an engine status: InvalidArgument → SYS.1007, NotFound → SYS.1003, DeadlineExceeded →
// SYS.1001, DataLoss/Internal/Unknown → SYS.1000, anything else → SYS.1006. The status message
// becomes the details.
ApiError ErrorFromStatus(const absl::Status& status);

// {"code": ..., "description": ..., "details": ..., "cause": {...}}: null fields omitted.
Json ErrorCodeJson(const ApiError& error);
// {"error": ErrorCodeJson(error)}: the body of a failed call.
Json ErrorBody(const ApiError& error);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_API_ERROR_H_
