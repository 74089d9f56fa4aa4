// QueryVolumeBackup (`GET /zstack/v1/volume-backups[/{uuid}]`), as the platform's REST layer
// reads it: `q` conditions (repeated; operators tried in the platform's order, the first found
// anywhere in the condition wins: != >= <= !?= !~= ~= ?= = > < "is null" "not null"; `?=` lists
// comma-separated; conditions ANDed), `limit` (default 1000), `start`, `count`, `replyWithCount`,
// `sort` (`+f`, `-f` or `f`) and `fields` (comma-separated). Conditions are evaluated on the
// VolumeBackupInventory JSON itself: top-level fields, and the refs through the platform's
// expanded names `backupStorageRef.<field>` (any ref matches) and `backupStorage.uuid`.
#ifndef CHUNKFERRY_CONTROL_VOLUME_BACKUP_QUERY_H_
#define CHUNKFERRY_CONTROL_VOLUME_BACKUP_QUERY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control/api_error.h"
#include "control/inventory.h"

namespace chunkferry::control {

struct QueryCondition {
  std::string field;  // e.g. "uuid", "backupStorageRef.backupStorageUuid"
  std::string op;     // one of the operators above
  std::string value;  // as sent (not trimmed, as on the platform); empty for the null tests
};

struct VolumeBackupQuery {
  std::vector<QueryCondition> conditions;
  int64_t limit = 1000;
  int64_t start = 0;
  bool count = false;             // only {"total": N}
  bool reply_with_count = false;  // the inventories and "total"
  std::string sort_field;         // empty: by uuid
  bool sort_descending = false;
  std::vector<std::string> fields;  // empty: every field
};

// What a request asks. `bad_request`: a plain-text 400 in the platform's words (a condition
// without an operator, a limit that is not an integer); else `query`. `path_uuid` (the
// /volume-backups/{uuid} form): the one condition uuid=<it>, every parameter ignored, as the
// platform does.
struct ParsedQuery {
  std::string bad_request;
  VolumeBackupQuery query;
};
ParsedQuery ParseVolumeBackupQuery(const std::multimap<std::string, std::string>& params,
                                   const std::optional<std::string>& path_uuid);

// The backup storages the conditions confine the answer to (conditions on
// backupStorageRef.backupStorageUuid or backupStorage.uuid with = or ?=); empty: no such
// condition, every storage may hold an answer.
std::vector<std::string> QueriedStorages(const VolumeBackupQuery& query);

// Runs `query` over `inventories` (every volume backup the registry's storages hold): the 200
// body, always with its schema (the platform adds it to every query's answer), or SYS.1000 for a
// field the inventory does not have (the platform's text) and SYS.1007 for a value that an
// operator cannot take.
struct QueryAnswer {
  std::optional<ApiError> error;
  Json body;
};
QueryAnswer RunVolumeBackupQuery(const VolumeBackupQuery& query, std::vector<Json> inventories);

}  // namespace chunkferry::control

#endif  // CHUNKFERRY_CONTROL_VOLUME_BACKUP_QUERY_H_
