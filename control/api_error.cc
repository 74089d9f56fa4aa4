#include "control/api_error.h"

#include <utility>

namespace chunkferry::control {

std::string_view ErrorDescription(std::string_view code) {
  if (code == kSysInternal) return "An internal error happened in system";
  if (code == kSysTimeout) return "An operation timeout happened";
  if (code == kSysNotFound) return "A resource can not be found";
  if (code == kSysOperationFailed) return "An operation failed";
  if (code == kSysInvalidArgument) return "One or more API argument is invalid";
  if (code == kIdInvalidSession) {
    return "The session is invalid, either wrong session id or the session has been expired";
  }
  return "An internal error happened in system";
}

ApiError MakeError(std::string_view code, std::string details) {
  return ApiError{std::string(code), std::move(details), nullptr};
}

ApiError ErrorFromStatus(const absl::Status& status) {
  std::string_view code = kSysOperationFailed;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      code = kSysInvalidArgument;
      break;
    case absl::StatusCode::kNotFound:
      code = kSysNotFound;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      code = kSysTimeout;
      break;
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
      code = kSysInternal;
      break;
    default:
      break;
  }
  return MakeError(code, std::string(status.message()));
}

Json ErrorCodeJson(const ApiError& error) {
  Json j;
  j["code"] = error.code;
  j["description"] = std::string(ErrorDescription(error.code));
  j["details"] = error.details;
  if (error.cause != nullptr) j["cause"] = ErrorCodeJson(*error.cause);
  return j;
}

Json ErrorBody(const ApiError& error) {
  Json j;
  j["error"] = ErrorCodeJson(error);
  return j;
}

}  // namespace chunkferry::control
