#include "control/volume_backup_query.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "control/sync_service.h"

namespace chunkferry::control {
namespace {

// The platform's order (RestServer QUERY_OP_MAPPING): the first found anywhere wins, so "!="
// is found before "=", and "a=b!=c" is a "!=" condition, as there.
constexpr std::array<const char*, 12> kOperators = {
    "!=", ">=", "<=", "!?=", "!~=", "~=", "?=", "=", ">", "<", "is null", "not null"};

constexpr char kOperatorList[] = "[!=, >=, <=, !?=, !~=, ~=, ?=, =, >, <, is null, not null]";

constexpr std::array<const char*, 14> kFields = {
    "uuid", "volumeUuid", "name",      "description", "type",           "state",      "status",
    "size", "metadata",   "groupUuid", "mode",        "vmInstanceUuid", "createDate", "lastOpDate"};
constexpr std::array<const char*, 6> kRefFields = {
    "volumeBackupUuid", "backupStorageUuid", "installPath", "status", "createDate", "lastOpDate"};
constexpr char kRefPrefix[] = "backupStorageRef.";

bool IsField(absl::string_view name) {
  return std::find(kFields.begin(), kFields.end(), name) != kFields.end();
}
bool IsRefField(absl::string_view name) {
  return std::find(kRefFields.begin(), kRefFields.end(), name) != kRefFields.end();
}

// A condition's field, resolved: a top-level field, or a ref field (`ref` true).
struct FieldPath {
  bool ref = false;
  std::string name;
};

std::optional<FieldPath> Resolve(absl::string_view field) {
  if (field == "backupStorage.uuid") return FieldPath{true, "backupStorageUuid"};
  if (absl::StartsWith(field, kRefPrefix)) {
    const absl::string_view rest = field.substr(sizeof(kRefPrefix) - 1);
    if (IsRefField(rest)) return FieldPath{true, std::string(rest)};
    return std::nullopt;
  }
  if (IsField(field)) return FieldPath{false, std::string(field)};
  return std::nullopt;
}

ApiError NoSuchField(absl::string_view field) {
  // The platform's words (ZQL metadata, surfaced as an internal error).
  return MakeError(kSysInternal,
                   absl::StrCat("org.zstack.header.exception.CloudRuntimeException: inventory "
                                "class[class org.zstack.header.storage.backup."
                                "VolumeBackupInventory] not having field[",
                                field, "]"));
}

// SQL LIKE: '%' any run, '_' any one character.
bool Like(absl::string_view text, absl::string_view pattern) {
  size_t t = 0, p = 0, star_p = absl::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '_' || pattern[p] == text[t])) {
      ++t;
      ++p;
    } else if (p < pattern.size() && pattern[p] == '%') {
      star_p = p++;
      star_t = t;
    } else if (star_p != absl::string_view::npos) {
      p = star_p + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '%') ++p;
  return p == pattern.size();
}

// -1, 0, 1: `v` against `text`, numerically for numbers. nullopt: a number against text that
// is not one.
std::optional<int> Compare(const Json& v, absl::string_view text) {
  if (v.is_number()) {
    double want = 0;
    if (!absl::SimpleAtod(text, &want)) return std::nullopt;
    const double have = v.get<double>();
    return have < want ? -1 : have > want ? 1 : 0;
  }
  const std::string have = v.is_string() ? v.get<std::string>() : v.dump();
  const int c = absl::string_view(have).compare(text);
  return c < 0 ? -1 : c > 0 ? 1 : 0;
}

// Whether `v` (null when the inventory lacks the field) satisfies `c`. Sets `error` for an
// ordering of a number against text that is not one.
bool Test(const Json* v, const QueryCondition& c, std::optional<ApiError>& error) {
  const bool null = v == nullptr || v->is_null();
  if (c.op == "is null") return null;
  if (c.op == "not null") return !null;
  if (c.op == "?=" || c.op == "!?=") {
    bool in = false;
    if (!null) {
      for (absl::string_view item : absl::StrSplit(c.value, ',')) {
        in = in || Compare(*v, item) == 0;
      }
    }
    return c.op == "?=" ? in : !null && !in;
  }
  if (null) return false;  // SQL: a comparison with NULL holds for no row
  if (c.op == "~=" || c.op == "!~=") {
    const std::string text = v->is_string() ? v->get<std::string>() : v->dump();
    return Like(text, c.value) == (c.op == "~=");
  }
  const std::optional<int> cmp = Compare(*v, c.value);
  if (c.op == "=") return cmp == 0;
  if (c.op == "!=") return cmp != 0;
  if (!cmp.has_value()) {
    error = MakeError(kSysInvalidArgument, absl::StrCat("the value '", c.value, "' of field[",
                                                        c.field, "] is not a number"));
    return false;
  }
  if (c.op == ">") return *cmp > 0;
  if (c.op == "<") return *cmp < 0;
  if (c.op == ">=") return *cmp >= 0;
  return *cmp <= 0;  // "<="
}

bool Matches(const Json& inventory, const QueryCondition& c, const FieldPath& path,
             std::optional<ApiError>& error) {
  if (!path.ref) {
    const auto it = inventory.find(path.name);
    return Test(it == inventory.end() ? nullptr : &*it, c, error);
  }
  // Expanded query: the volume backup matches when one of its refs does.
  const auto refs = inventory.find("backupStorageRefs");
  if (refs == inventory.end() || !refs->is_array()) return false;
  for (const Json& ref : *refs) {
    const auto it = ref.find(path.name);
    if (Test(it == ref.end() ? nullptr : &*it, c, error)) return true;
  }
  return false;
}

}  // namespace

ParsedQuery ParseVolumeBackupQuery(const std::multimap<std::string, std::string>& params,
                                   const std::optional<std::string>& path_uuid) {
  ParsedQuery parsed;
  VolumeBackupQuery& q = parsed.query;
  if (path_uuid.has_value()) {
    q.conditions.push_back({"uuid", "=", *path_uuid});
    return parsed;
  }
  for (const auto& [key, value] : params) {
    if (key == "q") {
      const std::string cond = value;
      const char* op = nullptr;
      for (const char* o : kOperators) {
        if (absl::StrContains(cond, o)) {
          op = o;
          break;
        }
      }
      if (op == nullptr) {
        parsed.bad_request = absl::StrCat(
            "Invalid query parameter. The '", cond,
            "' in the parameter[q] doesn't contain any query operator. Valid query operators "
            "are ",
            kOperatorList);
        return parsed;
      }
      const size_t at = cond.find(op);
      QueryCondition c;
      c.field = std::string(absl::StripAsciiWhitespace(cond.substr(0, at)));
      c.op = op;
      c.value = cond.substr(at + std::string_view(op).size());
      const bool null_test = c.op == "is null" || c.op == "not null";
      if (c.field.empty() || (!null_test && c.value.empty() && c.op != "?=" && c.op != "!?=")) {
        parsed.bad_request =
            absl::StrCat("Invalid query parameter. The '", cond,
                         "' in parameter[q] is not a key-value pair split by ", op);
        return parsed;
      }
      if (null_test) c.value.clear();
      q.conditions.push_back(std::move(c));
    } else if (key == "limit" || key == "start") {
      int64_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 0) {
        parsed.bad_request =
            absl::StrCat("Invalid query parameter. '", key, "' must be an integer");
        return parsed;
      }
      (key == "limit" ? q.limit : q.start) = n;
    } else if (key == "count") {
      q.count = absl::EqualsIgnoreCase(value, "true");
    } else if (key == "replyWithCount") {
      q.reply_with_count = absl::EqualsIgnoreCase(value, "true");
    } else if (key == "sort") {
      // "+f" arrives as " f" when the client did not encode the '+': ascending either way.
      absl::string_view s = absl::StripAsciiWhitespace(value);
      if (absl::ConsumePrefix(&s, "-")) {
        q.sort_descending = true;
      } else {
        absl::ConsumePrefix(&s, "+");
      }
      q.sort_field = std::string(s);
    } else if (key == "fields") {
      for (absl::string_view f : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        q.fields.emplace_back(absl::StripAsciiWhitespace(f));
      }
    }
    // Others (groupBy, filterName, ...) are ignored, as the platform ignores unknown names.
  }
  return parsed;
}

std::vector<std::string> QueriedStorages(const VolumeBackupQuery& query) {
  std::vector<std::string> out;
  bool confined = false;
  for (const QueryCondition& c : query.conditions) {
    if (c.field != "backupStorage.uuid" && c.field != "backupStorageRef.backupStorageUuid") {
      continue;
    }
    std::vector<std::string> these;
    if (c.op == "=") {
      these.push_back(c.value);
    } else if (c.op == "?=") {
      these = absl::StrSplit(c.value, ',');
    } else {
      continue;
    }
    if (!confined) {
      out = std::move(these);
      confined = true;
    } else {  // ANDed: only storages every such condition names
      std::vector<std::string> both;
      for (const std::string& s : out) {
        if (std::find(these.begin(), these.end(), s) != these.end()) both.push_back(s);
      }
      out = std::move(both);
    }
  }
  if (confined && out.empty()) out.push_back("");  // confined to nothing: no storage matches
  return out;
}

QueryAnswer RunVolumeBackupQuery(const VolumeBackupQuery& query, std::vector<Json> inventories) {
  QueryAnswer answer;
  std::vector<FieldPath> paths;
  for (const QueryCondition& c : query.conditions) {
    std::optional<FieldPath> path = Resolve(c.field);
    if (!path.has_value()) {
      answer.error = NoSuchField(c.field);
      return answer;
    }
    paths.push_back(*std::move(path));
  }
  for (const std::string& f : query.fields) {
    if (!IsField(f) && f != "backupStorageRefs") {
      answer.error = NoSuchField(f);
      return answer;
    }
  }
  if (!query.sort_field.empty() && !IsField(query.sort_field)) {
    answer.error = MakeError(
        kSysInternal, absl::StrCat("invalid order by clause, inventory[VolumeBackupInventory] "
                                   "doesn't have field[",
                                   query.sort_field, "]"));
    return answer;
  }
  std::vector<Json> hits;
  for (Json& inv : inventories) {
    bool all = true;
    for (size_t i = 0; i < query.conditions.size() && all; ++i) {
      all = Matches(inv, query.conditions[i], paths[i], answer.error);
      if (answer.error.has_value()) return answer;
    }
    if (all) hits.push_back(std::move(inv));
  }
  const std::string by = query.sort_field.empty() ? "uuid" : query.sort_field;
  std::stable_sort(hits.begin(), hits.end(), [&](const Json& a, const Json& b) {
    const auto x = a.find(by), y = b.find(by);
    const bool x_null = x == a.end() || x->is_null(), y_null = y == b.end() || y->is_null();
    if (x_null || y_null) return x_null && !y_null;  // nulls first, as SQL sorts them
    const bool less = *x < *y;
    const bool more = *y < *x;
    return query.sort_descending ? more : less;
  });
  const int64_t total = static_cast<int64_t>(hits.size());
  if (query.count) {
    answer.body = Json{{"total", total}, {"schema", Json::object()}};
    return answer;
  }
  const size_t from = static_cast<size_t>(std::min<int64_t>(query.start, total));
  const size_t to = static_cast<size_t>(std::min<int64_t>(from + query.limit, total));
  Json page = Json::array();
  for (size_t i = from; i < to; ++i) {
    if (query.fields.empty()) {
      page.push_back(std::move(hits[i]));
      continue;
    }
    Json picked = Json::object();
    for (const auto& [key, value] : hits[i].items()) {
      if (std::find(query.fields.begin(), query.fields.end(), key) != query.fields.end()) {
        picked[key] = value;
      }
    }
    page.push_back(std::move(picked));
  }
  answer.body = SuccessBody(page, /*with_schema=*/true);
  if (query.reply_with_count) {
    // {"inventories", "total", "schema"}, as the platform orders them.
    Json body;
    body["inventories"] = std::move(answer.body["inventories"]);
    body["total"] = total;
    body["schema"] = std::move(answer.body["schema"]);
    answer.body = std::move(body);
  }
  return answer;
}

}  // namespace chunkferry::control
