// The C ABI of chunkferry.h over control::SyncService. Every entry point catches every exception:
// a C caller cannot unwind through C++ frames, so nothing may escape.
#include <httplib.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control/api_error.h"
#include "control/chunkferry.h"
#include "control/query_string.h"
#include "control/registry.h"
#include "control/sync_service.h"
#include "control/volume_backup_query.h"
#include "engine/store/progress.h"

#ifndef CHUNKFERRY_VERSION
#error "CHUNKFERRY_VERSION must be defined by the build"
#endif

struct chunkferry_handle {
  explicit chunkferry_handle(chunkferry::control::Registry registry)
      : service(std::move(registry), chunkferry::control::ServiceOptions{}) {}
  chunkferry::control::SyncService service;
};

namespace chunkferry::control {
namespace {

constexpr int kHttpOk = 200;
constexpr int kHttpBadRequest = 400;
constexpr int kHttpUnavailable = 503;

// Copies `text` into a malloc'd NUL-terminated string (released by chunkferry_free); nullptr
// when out of memory.
char* CopyOut(std::string_view text) noexcept {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return out;
}

void SetOut(char** out, std::string_view text) noexcept {
  if (out != nullptr) *out = CopyOut(text);
}

// Serializes without throwing on strings that are not UTF-8 (a group uuid from the caller can
// end up in an error's details): such bytes become U+FFFD.
std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The 503 body of an exception that escaped the service. Falls back to a fixed text when even
// building the JSON fails (out of memory).
void AnswerInternal(char** response, const char* what) noexcept {
  try {
    SetOut(response,
           Dump(ErrorBody(MakeError(kSysInternal,
                                    absl::StrCat("unexpected error in libchunkferry: ", what)))));
  } catch (...) {
    SetOut(response,
           R"({"error":{"code":"SYS.1000","description":"An internal error happened in system"}})");
  }
}

// Adapts the C callback to the engine's ProgressFn; `phase` points into the engine's state,
// which outlives the call.
engine::ProgressFn WrapProgress(chunkferry_progress_fn fn, void* user) {
  return [fn, user](const engine::ProgressState& s) {
    chunkferry_progress p;
    p.phase = s.phase.c_str();
    p.bytes_done = s.bytes_done;
    p.bytes_total = s.bytes_total;
    p.chunks_done = s.chunks_done;
    p.chunks_total = s.chunks_total;
    p.seconds = s.seconds;
    p.final = s.final ? 1 : 0;
    p.bytes_sent = s.bytes_sent;
    p.chunks_sent = s.chunks_sent;
    fn(user, &p);
  };
}

int Sync(chunkferry_handle* h, const char* group_uuid, const char* body_json, unsigned flags,
         chunkferry_progress_fn progress, void* user, char** response) {
  // Checked before anything else so that a caller's mistake is a 400 naming it, not a crash.
  const char* missing = h == nullptr            ? "the handle is NULL"
                        : group_uuid == nullptr ? "group_uuid is NULL"
                        : body_json == nullptr  ? "body_json is NULL"
                                                : nullptr;
  if (missing != nullptr) {
    SetOut(response, missing);
    return kHttpBadRequest;
  }
  constexpr unsigned kKnownFlags = CHUNKFERRY_WITH_SCHEMA | CHUNKFERRY_ONE_BACKUP;
  if ((flags & ~kKnownFlags) != 0) {
    SetOut(response, absl::StrCat("unknown flags 0x", absl::Hex(flags & ~kKnownFlags),
                                  " (known: CHUNKFERRY_WITH_SCHEMA, CHUNKFERRY_ONE_BACKUP)"));
    return kHttpBadRequest;
  }
  engine::ProgressFn fn;
  if (progress != nullptr) fn = WrapProgress(progress, user);
  std::string bad_request;
  SyncResult result = h->service.Call(
      group_uuid, body_json, progress != nullptr ? &fn : nullptr, &bad_request,
      (flags & CHUNKFERRY_ONE_BACKUP) != 0 ? SyncScope::kBackup : SyncScope::kGroup);
  if (!bad_request.empty()) {
    SetOut(response, bad_request);
    return kHttpBadRequest;
  }
  if (result.error.has_value()) {
    SetOut(response, Dump(ErrorBody(*result.error)));
    return kHttpUnavailable;
  }
  SetOut(response, Dump(ResultBody(result, (flags & CHUNKFERRY_WITH_SCHEMA) != 0)));
  return kHttpOk;
}

// The engine's kind for a CHUNKFERRY_DELETE_* value; nullopt (and the 400 text in `response`)
// for any other.
std::optional<engine::DeleteKind> DeleteKindOf(int kind, char** response) {
  if (kind == CHUNKFERRY_DELETE_GROUP) return engine::DeleteKind::kGroup;
  if (kind == CHUNKFERRY_DELETE_BACKUP) return engine::DeleteKind::kBackup;
  SetOut(response, absl::StrCat("unknown kind ", kind,
                                " (known: CHUNKFERRY_DELETE_GROUP, CHUNKFERRY_DELETE_BACKUP)"));
  return std::nullopt;
}

int DeleteFrom(chunkferry_handle* h, int kind, const char* uuid, const char* const* storage_uuids,
               size_t count, char** response) {
  const char* missing = h == nullptr                            ? "the handle is NULL"
                        : uuid == nullptr                       ? "uuid is NULL"
                        : storage_uuids == nullptr && count > 0 ? "storage_uuids is NULL"
                                                                : nullptr;
  if (missing != nullptr) {
    SetOut(response, missing);
    return kHttpBadRequest;
  }
  const std::optional<engine::DeleteKind> what = DeleteKindOf(kind, response);
  if (!what.has_value()) return kHttpBadRequest;
  std::vector<std::string> storages;
  for (size_t i = 0; i < count; ++i) {
    if (storage_uuids[i] == nullptr) {
      SetOut(response, absl::StrCat("storage_uuids[", i, "] is NULL"));
      return kHttpBadRequest;
    }
    storages.emplace_back(storage_uuids[i]);
  }
  const SyncResult result = h->service.DeleteEverywhere(*what, uuid, storages);
  if (result.error.has_value()) {
    SetOut(response, Dump(ErrorBody(*result.error)));
    return kHttpUnavailable;
  }
  SetOut(response, Dump(ResultBody(result, false)));
  return kHttpOk;
}

int Query(chunkferry_handle* h, const char* query, char** response) {
  if (h == nullptr) {
    SetOut(response, "the handle is NULL");
    return kHttpBadRequest;
  }
  // Read as the HTTP API reads its query strings.
  const ParsedQuery parsed = ParseVolumeBackupQuery(
      query != nullptr ? ParseQueryString(query) : std::multimap<std::string, std::string>{},
      std::nullopt);
  if (!parsed.bad_request.empty()) {
    SetOut(response, parsed.bad_request);
    return kHttpBadRequest;
  }
  const QueryAnswer answer = h->service.Query(parsed.query);
  if (answer.error.has_value()) {
    SetOut(response, Dump(ErrorBody(*answer.error)));
    return kHttpUnavailable;
  }
  SetOut(response, Dump(answer.body));
  return kHttpOk;
}

int Delete(chunkferry_handle* h, const char* storage_uuid, int kind, const char* uuid,
           char** response) {
  const char* missing = h == nullptr              ? "the handle is NULL"
                        : storage_uuid == nullptr ? "backup_storage_uuid is NULL"
                        : uuid == nullptr         ? "uuid is NULL"
                                                  : nullptr;
  if (missing != nullptr) {
    SetOut(response, missing);
    return kHttpBadRequest;
  }
  const std::optional<engine::DeleteKind> what = DeleteKindOf(kind, response);
  if (!what.has_value()) return kHttpBadRequest;
  DeleteOutcome outcome = h->service.Delete(storage_uuid, *what, uuid);
  if (outcome.error.has_value()) {
    SetOut(response, Dump(ErrorBody(*outcome.error)));
    return kHttpUnavailable;
  }
  SetOut(response, Dump(Json{{"groupsRemoved", outcome.removed.groups_removed},
                             {"backupsRemoved", outcome.removed.backups_removed},
                             {"backupsKept", outcome.removed.backups_kept}}));
  return kHttpOk;
}

}  // namespace
}  // namespace chunkferry::control

extern "C" {

chunkferry_handle* chunkferry_open(const char* config_path, char** error) {
  using chunkferry::control::SetOut;
  if (error != nullptr) *error = nullptr;
  if (config_path == nullptr) {
    SetOut(error, "config_path is NULL");
    return nullptr;
  }
  try {
    auto registry = chunkferry::control::LoadRegistry(config_path);
    if (!registry.ok()) {
      SetOut(error, std::string(registry.status().message()));
      return nullptr;
    }
    return new chunkferry_handle(*std::move(registry));
  } catch (const std::exception& e) {
    SetOut(error, e.what());
  } catch (...) {
    SetOut(error, "unexpected error in libchunkferry");
  }
  return nullptr;
}

int chunkferry_sync(chunkferry_handle* h, const char* group_uuid, const char* body_json,
                    unsigned flags, chunkferry_progress_fn progress, void* user, char** response) {
  if (response != nullptr) *response = nullptr;
  try {
    return chunkferry::control::Sync(h, group_uuid, body_json, flags, progress, user, response);
  } catch (const std::exception& e) {
    chunkferry::control::AnswerInternal(response, e.what());
  } catch (...) {
    chunkferry::control::AnswerInternal(response, "unknown exception");
  }
  return chunkferry::control::kHttpUnavailable;
}

int chunkferry_delete_from(chunkferry_handle* h, int kind, const char* uuid,
                           const char* const* storage_uuids, size_t count, char** response) {
  if (response != nullptr) *response = nullptr;
  try {
    return chunkferry::control::DeleteFrom(h, kind, uuid, storage_uuids, count, response);
  } catch (const std::exception& e) {
    chunkferry::control::AnswerInternal(response, e.what());
  } catch (...) {
    chunkferry::control::AnswerInternal(response, "unknown exception");
  }
  return chunkferry::control::kHttpUnavailable;
}

int chunkferry_query(chunkferry_handle* h, const char* query, char** response) {
  if (response != nullptr) *response = nullptr;
  try {
    return chunkferry::control::Query(h, query, response);
  } catch (const std::exception& e) {
    chunkferry::control::AnswerInternal(response, e.what());
  } catch (...) {
    chunkferry::control::AnswerInternal(response, "unknown exception");
  }
  return chunkferry::control::kHttpUnavailable;
}

int chunkferry_delete(chunkferry_handle* h, const char* backup_storage_uuid, int kind,
                      const char* uuid, char** response) {
  if (response != nullptr) *response = nullptr;
  try {
    return chunkferry::control::Delete(h, backup_storage_uuid, kind, uuid, response);
  } catch (const std::exception& e) {
    chunkferry::control::AnswerInternal(response, e.what());
  } catch (...) {
    chunkferry::control::AnswerInternal(response, "unknown exception");
  }
  return chunkferry::control::kHttpUnavailable;
}

void chunkferry_free(void* p) { std::free(p); }

void chunkferry_close(chunkferry_handle* h) {
  // The service's destructor only releases what it holds; nothing in it is expected to throw,
  // but a throwing destructor would terminate, so there is nothing more to catch here.
  delete h;
}

const char* chunkferry_version(void) { return CHUNKFERRY_VERSION; }

}  // extern "C"
