#include "control/api_error.h"

#include <memory>

#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

TEST(ApiErrorTest, MapsEngineStatusesOntoTheContractsCodes) {
  EXPECT_EQ(ErrorFromStatus(absl::InvalidArgumentError("x")).code, "SYS.1007");
  EXPECT_EQ(ErrorFromStatus(absl::NotFoundError("x")).code, "SYS.1003");
  EXPECT_EQ(ErrorFromStatus(absl::DeadlineExceededError("x")).code, "SYS.1001");
  EXPECT_EQ(ErrorFromStatus(absl::DataLossError("x")).code, "SYS.1000");
  EXPECT_EQ(ErrorFromStatus(absl::InternalError("x")).code, "SYS.1000");
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("x")).code, "SYS.1006");
  EXPECT_EQ(ErrorFromStatus(absl::ResourceExhaustedError("disk full")).details, "disk full");
}

TEST(ApiErrorTest, WritesTheErrorCodeWithItsFixedDescription) {
  ApiError e = MakeError(kSysOperationFailed, "sync failed");
  e.cause = std::make_shared<ApiError>(MakeError(kSysInternal, "record 3 damaged"));
  EXPECT_EQ(ErrorBody(e).dump(),
            R"({"error":{"code":"SYS.1006","description":"An operation failed","details":)"
            R"("sync failed","cause":{"code":"SYS.1000","description":"An internal error )"
            R"(happened in system","details":"record 3 damaged"}}})");
  EXPECT_EQ(ErrorDescription("SYS.1003"), "A resource can not be found");
  EXPECT_EQ(ErrorDescription("SYS.1007"), "One or more API argument is invalid");
  EXPECT_EQ(ErrorDescription("ID.1001"),
            "The session is invalid, either wrong session id or the session has been expired");
}

}  // namespace
}  // namespace chunkferry::control
