// Fuzzes the sync API's request parsing (control/sync_service.h): ParseSyncAction over a request
// path's group uuid and a PUT body, as the HTTP API (control/http_api.h) and the C ABI call it,
// then the answer built from it: the error body (ErrorBody, serialized as the HTTP API does), and
// the job uuid check of the X-Job-UUID header (control/job_table.h).
//
// Input: the group uuid of the path (ending in "+": a volume backup's, for the single-volume
// sync), a newline, then the body (no newline: all body, empty uuid).
// Checked: exactly one outcome (a 400 text, an ErrorCode, or a request), a request only with
// valid and distinct uuids and the path's group uuid, and every answer serializable.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control/api_error.h"
#include "control/job_table.h"
#include "control/sync_service.h"
#include "engine/format/volume_backup.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// As control/http_api.cc serializes bodies: bytes that are not UTF-8 become U+FFFD, never throw.
std::string Dump(const chunkferry::control::Json& json) {
  return json.dump(-1, ' ', false, chunkferry::control::Json::error_handler_t::replace);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chunkferry::control;
  if (size > (1u << 20)) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  std::string_view group = nl == std::string_view::npos ? "" : input.substr(0, nl);
  const std::string_view body = nl == std::string_view::npos ? input : input.substr(nl + 1);

  (void)IsJobUuid(group);
  // The first byte of the body picks the action: a group's sync or one volume backup's.
  const SyncScope scope = !body.empty() && (body[0] & 1) ? SyncScope::kBackup : SyncScope::kGroup;
  const ParsedAction parsed = ParseSyncAction(group, body, scope);
  const int outcomes = !parsed.bad_request.empty() + parsed.error.has_value() +
                       (parsed.bad_request.empty() && !parsed.error.has_value());
  FUZZ_CHECK(outcomes == 1);
  if (!parsed.bad_request.empty()) return 0;
  if (parsed.error.has_value()) {
    FUZZ_CHECK(!parsed.error->code.empty());
    const std::string text = Dump(ErrorBody(*parsed.error));
    FUZZ_CHECK(!text.empty());
    return 0;
  }
  const SyncRequest& r = parsed.request;
  FUZZ_CHECK(r.group_uuid == group);
  FUZZ_CHECK(chunkferry::engine::IsValidUuid(r.group_uuid));
  FUZZ_CHECK(chunkferry::engine::IsValidUuid(r.src_uuid));
  FUZZ_CHECK(chunkferry::engine::IsValidUuid(r.dst_uuid));
  FUZZ_CHECK(r.src_uuid != r.dst_uuid);
  FUZZ_CHECK(r.scope == scope);
  // Every shape of a result body, with and without the schema map.
  for (auto shape : {SyncResult::Shape::kInventories, SyncResult::Shape::kInventory,
                     SyncResult::Shape::kNothing}) {
    SyncResult result;
    result.shape = shape;
    result.inventories = Json::array({Json{{"backupStorageRefs", Json::array({Json::object()})}}});
    FUZZ_CHECK(!Dump(ResultBody(result, true)).empty());
    FUZZ_CHECK(!Dump(ResultBody(result, false)).empty());
  }
  // The answer a sync of nothing would give, with and without the schema map.
  (void)Dump(SuccessBody(Json::array(), false));
  (void)Dump(SuccessBody(Json::array({Json::object()}), true));
  return 0;
}
