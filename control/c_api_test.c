/* The C ABI of libchunkferry, from C: a real sync of the group that embedding_test.sh prepared,
 * then the answers to bad calls. Compiled as C99 and linked against the shared library only.
 *
 * usage: c_api_test CONFIG GROUP SRC_STORAGE DST_STORAGE ROOT_BACKUP
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunkferry.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    ++checks;                                                                  \
    if (!(cond)) {                                                             \
      ++failures;                                                              \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
    }                                                                          \
  } while (0)

/* Occurrences of `needle` in `haystack`. */
static int Count(const char* haystack, const char* needle) {
  int n = 0;
  const size_t len = strlen(needle);
  for (const char* p = haystack; (p = strstr(p, needle)) != NULL; p += len) ++n;
  return n;
}

static int StartsWith(const char* s, const char* prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char* g_config;
static const char* g_group;
static const char* g_src;
static const char* g_dst;
static const char* g_root;
static char g_body[512];

/* What the progress callback saw. */
typedef struct {
  pthread_t caller;
  int calls;
  int finals;
  int other_thread;
  int bad_phase;
  int bytes_over_total;
} ProgressLog;

static void OnProgress(void* user, const chunkferry_progress* p) {
  ProgressLog* log = (ProgressLog*)user;
  ++log->calls;
  if (p->final) ++log->finals;
  if (!pthread_equal(pthread_self(), log->caller)) ++log->other_thread;
  if (p->phase == NULL || p->phase[0] == '\0') ++log->bad_phase;
  if (p->bytes_total != 0 && p->bytes_done > p->bytes_total) ++log->bytes_over_total;
}

/* The 200 body of a sync of the test group: three inventories, the Root first, each with refs
 * to the source and the destination. The body is compact JSON, so fixed substrings locate the
 * fields. */
static void CheckInventories(const char* response) {
  CHECK(StartsWith(response, "{\"inventories\":[{\"uuid\":"), "%s", response);
  char root_first[96];
  snprintf(root_first, sizeof root_first, "{\"inventories\":[{\"uuid\":\"%s\"", g_root);
  CHECK(StartsWith(response, root_first), "the Root backup is not first: %s", response);
  const char* first_type = strstr(response, "\"type\":");
  CHECK(first_type != NULL && StartsWith(first_type, "\"type\":\"Root\""), "%s", response);
  CHECK(Count(response, "\"type\":\"Root\"") == 1, "%s", response);
  CHECK(Count(response, "\"type\":\"Data\"") == 2, "%s", response);
  CHECK(Count(response, "\"backupStorageRefs\":[") == 3, "%s", response);
  CHECK(Count(response, "\"volumeBackupUuid\":") == 6, "not two refs each: %s", response);
  char ref[96];
  snprintf(ref, sizeof ref, "\"backupStorageUuid\":\"%s\"", g_src);
  CHECK(Count(response, ref) == 3, "source refs: %s", response);
  snprintf(ref, sizeof ref, "\"backupStorageUuid\":\"%s\"", g_dst);
  CHECK(Count(response, ref) == 3, "destination refs: %s", response);
  CHECK(Count(response, "\"groupUuid\":") == 3, "%s", response);
  CHECK(strstr(response, "\"error\"") == NULL, "%s", response);
}

static void TestOpenFailures(void) {
  char* error = NULL;
  CHECK(chunkferry_open(NULL, &error) == NULL, "NULL path opened");
  CHECK(error != NULL && strstr(error, "NULL") != NULL, "%s", error ? error : "(no error)");
  chunkferry_free(error);

  error = NULL;
  const char* missing = "/nonexistent/chunkferry/registry.json";
  CHECK(chunkferry_open(missing, &error) == NULL, "missing config opened");
  CHECK(error != NULL && strstr(error, missing) != NULL, "error does not name the file: %s",
        error ? error : "(no error)");
  chunkferry_free(error);

  CHECK(chunkferry_open(missing, NULL) == NULL, "missing config opened without error slot");
  chunkferry_free(NULL);
  chunkferry_close(NULL);
}

static void TestNullArguments(chunkferry* h) {
  char* response = NULL;
  CHECK(chunkferry_sync(NULL, g_group, g_body, 0, NULL, NULL, &response) == 400, "NULL handle");
  CHECK(response != NULL && strstr(response, "handle") != NULL, "%s", response);
  chunkferry_free(response);
  CHECK(chunkferry_sync(h, NULL, g_body, 0, NULL, NULL, &response) == 400, "NULL group");
  CHECK(response != NULL && strstr(response, "group_uuid") != NULL, "%s", response);
  chunkferry_free(response);
  CHECK(chunkferry_sync(h, g_group, NULL, 0, NULL, NULL, &response) == 400, "NULL body");
  CHECK(response != NULL && strstr(response, "body_json") != NULL, "%s", response);
  chunkferry_free(response);
  CHECK(chunkferry_sync(NULL, NULL, NULL, 0, NULL, NULL, NULL) == 400, "all NULL");
  CHECK(chunkferry_sync(h, g_group, g_body, 0x80u, NULL, NULL, &response) == 400, "bad flags");
  CHECK(response != NULL && strstr(response, "flags") != NULL, "%s", response);
  chunkferry_free(response);
}

static void TestSync(chunkferry* h) {
  ProgressLog log;
  memset(&log, 0, sizeof log);
  log.caller = pthread_self();
  char* response = NULL;
  const int status = chunkferry_sync(h, g_group, g_body, 0, OnProgress, &log, &response);
  CHECK(status == 200, "first sync answered %d: %s", status, response ? response : "(null)");
  CHECK(response != NULL, "no response");
  if (response != NULL) {
    CheckInventories(response);
    CHECK(strstr(response, "\"schema\"") == NULL, "schema without the flag: %s", response);
  }
  chunkferry_free(response);
  CHECK(log.calls > 0, "the progress callback never ran");
  CHECK(log.finals > 0, "no final progress report among %d", log.calls);
  CHECK(log.other_thread == 0, "%d reports on another thread", log.other_thread);
  CHECK(log.bad_phase == 0, "%d reports without a phase", log.bad_phase);
  CHECK(log.bytes_over_total == 0, "%d reports past their total", log.bytes_over_total);

  /* Again, now that the destination holds the group: nothing to copy, the same answer, plus
   * the schema map the SDK asks for. */
  response = NULL;
  const int again =
      chunkferry_sync(h, g_group, g_body, CHUNKFERRY_WITH_SCHEMA, NULL, NULL, &response);
  CHECK(again == 200, "second sync answered %d: %s", again, response ? response : "(null)");
  if (response != NULL) {
    CheckInventories(response);
    CHECK(strstr(response,
                 "\"inventories[2].backupStorageRefs[1]\":"
                 "\"org.zstack.header.storage.backup.VolumeBackupStorageRefInventory\"") != NULL,
          "schema map: %s", response);
  }
  chunkferry_free(response);
}

typedef struct {
  chunkferry* h;
  int status;
  int refs;
} SyncThread;

static void* RunSync(void* arg) {
  SyncThread* t = (SyncThread*)arg;
  char* response = NULL;
  t->status = chunkferry_sync(t->h, g_group, g_body, 0, NULL, NULL, &response);
  t->refs = response != NULL ? Count(response, "\"backupStorageRefs\":[") : -1;
  chunkferry_free(response);
  return NULL;
}

/* One handle, several threads at once: every call answers in full. */
static void TestThreads(chunkferry* h) {
  enum { kThreads = 4 };
  SyncThread t[kThreads];
  pthread_t ids[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    t[i].h = h;
    t[i].status = 0;
    t[i].refs = 0;
    CHECK(pthread_create(&ids[i], NULL, RunSync, &t[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < kThreads; ++i) {
    pthread_join(ids[i], NULL);
    CHECK(t[i].status == 200 && t[i].refs == 3, "thread %d: status %d, %d inventories", i,
          t[i].status, t[i].refs);
  }
}

static void TestErrors(chunkferry* h) {
  char* response = NULL;
  int status = chunkferry_sync(h, g_group, "{not json", 0, NULL, NULL, &response);
  CHECK(status == 400, "malformed body answered %d", status);
  CHECK(response != NULL && response[0] != '\0' && response[0] != '{', "%s",
        response ? response : "(null)");
  chunkferry_free(response);

  status = chunkferry_sync(h, g_group, "{\"deleteVmBackup\": {}}", 0, NULL, NULL, &response);
  CHECK(status == 400, "a body without the action answered %d", status);
  chunkferry_free(response);

  status = chunkferry_sync(h, "0123456789abcdef0123456789abcdef", g_body, 0, NULL, NULL, &response);
  CHECK(status == 503, "unknown group answered %d", status);
  CHECK(response != NULL && StartsWith(response, "{\"error\":") &&
            strstr(response, "\"SYS.1003\"") != NULL,
        "%s", response ? response : "(null)");
  chunkferry_free(response);

  char body[256];
  snprintf(body, sizeof body,
           "{\"syncVmBackupFromImageStoreBackupStorage\": {\"srcBackupStorageUuid\": \"%s\"}}",
           g_src);
  status = chunkferry_sync(h, g_group, body, 0, NULL, NULL, &response);
  CHECK(status == 503, "a body without dstBackupStorageUuid answered %d", status);
  CHECK(response != NULL && strstr(response, "\"SYS.1007\"") != NULL, "%s",
        response ? response : "(null)");
  chunkferry_free(response);

  snprintf(body, sizeof body,
           "{\"syncVmBackupFromImageStoreBackupStorage\": {\"srcBackupStorageUuid\": \"%s\","
           " \"dstBackupStorageUuid\": \"ffffffffffffffffffffffffffffffff\"}}",
           g_src);
  status = chunkferry_sync(h, g_group, body, 0, NULL, NULL, &response);
  CHECK(status == 503, "unknown destination answered %d", status);
  CHECK(response != NULL && strstr(response, "\"SYS.1003\"") != NULL, "%s",
        response ? response : "(null)");
  chunkferry_free(response);
}

static void TestDelete(chunkferry* h) {
  char* response = NULL;
  CHECK(chunkferry_delete(NULL, g_dst, CHUNKFERRY_DELETE_GROUP, g_group, &response) == 400,
        "NULL handle");
  chunkferry_free(response);
  CHECK(chunkferry_delete(h, NULL, CHUNKFERRY_DELETE_GROUP, g_group, NULL) == 400, "NULL storage");
  CHECK(chunkferry_delete(h, g_dst, 7, g_group, &response) == 400, "unknown kind");
  CHECK(response != NULL && strstr(response, "unknown kind 7") != NULL, "%s",
        response ? response : "(null)");
  chunkferry_free(response);

  int status = chunkferry_delete(h, "ffffffffffffffffffffffffffffffff", CHUNKFERRY_DELETE_GROUP,
                                 g_group, &response);
  CHECK(status == 503 && response != NULL && strstr(response, "\"SYS.1003\"") != NULL,
        "unknown storage answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  status = chunkferry_delete(h, g_dst, CHUNKFERRY_DELETE_GROUP, "not-a-uuid", &response);
  CHECK(status == 503 && response != NULL && strstr(response, "\"SYS.1007\"") != NULL,
        "malformed uuid answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  /* The Root backup belongs to the group: refused, naming the group. */
  status = chunkferry_delete(h, g_dst, CHUNKFERRY_DELETE_BACKUP, g_root, &response);
  CHECK(status == 503 && response != NULL && strstr(response, "\"SYS.1006\"") != NULL &&
            strstr(response, g_group) != NULL,
        "grouped backup answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);

  status = chunkferry_delete(h, g_dst, CHUNKFERRY_DELETE_GROUP, g_group, &response);
  CHECK(status == 200 && response != NULL && StartsWith(response, "{\"groupsRemoved\":[\"") &&
            strstr(response, g_root) != NULL,
        "delete answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  status = chunkferry_delete(h, g_dst, CHUNKFERRY_DELETE_GROUP, g_group, &response);
  CHECK(status == 503 && response != NULL && strstr(response, "\"SYS.1003\"") != NULL,
        "second delete answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  /* The source still holds the group: a sync brings it back. */
  status = chunkferry_sync(h, g_group, g_body, 0, NULL, NULL, &response);
  CHECK(status == 200, "sync after delete answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
}

/* The rest of the platform's backup family: QueryVolumeBackup, the single-volume sync, and the
 * deletes across storages, after TestDelete left the group on both storages. */
static void TestFamily(chunkferry* h) {
  char* response = NULL;
  char query[256];
  snprintf(query, sizeof query, "q=groupUuid%%3D%s&sort=-size&replyWithCount=true", g_group);
  int status = chunkferry_query(h, query, &response);
  CHECK(status == 200 && response != NULL && Count(response, "\"backupStorageRefs\":[") == 3 &&
            strstr(response, "\"total\":3") != NULL && strstr(response, "\"schema\"") != NULL,
        "query answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  status = chunkferry_query(h, "q=type%3DRoot&count=true", &response);
  CHECK(status == 200 && response != NULL && strcmp(response, "{\"total\":1,\"schema\":{}}") == 0,
        "count answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  /* '=' unencoded, as curl users write it: split at the first '=', as the platform does. */
  status = chunkferry_query(h, "q=type=Root&count=true", &response);
  CHECK(status == 200 && response != NULL && strcmp(response, "{\"total\":1,\"schema\":{}}") == 0,
        "raw '=' answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  status = chunkferry_query(h, "q=type", &response);
  CHECK(status == 400 && response != NULL && strstr(response, "query operator") != NULL,
        "no operator answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  status = chunkferry_query(h, "q=colour%3Dred", &response);
  CHECK(status == 503 && response != NULL && strstr(response, "\"SYS.1000\"") != NULL,
        "unknown field answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  CHECK(chunkferry_query(NULL, NULL, NULL) == 400, "NULL handle");

  /* DeleteVmBackup from the destination only, then the Root backup synced back alone. */
  const char* dst[] = {g_dst};
  status = chunkferry_delete_from(h, CHUNKFERRY_DELETE_GROUP, g_group, dst, 1, &response);
  CHECK(status == 200 && response != NULL && strcmp(response, "{}") == 0,
        "delete_from answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  snprintf(query, sizeof query, "q=backupStorage.uuid%%3D%s&count=true", g_dst);
  status = chunkferry_query(h, query, &response);
  CHECK(status == 200 && response != NULL && strstr(response, "\"total\":0") != NULL,
        "destination still holds: %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  char one_body[512];
  snprintf(one_body, sizeof one_body,
           "{\"syncBackupFromImageStoreBackupStorage\": {\"srcBackupStorageUuid\": \"%s\", "
           "\"dstBackupStorageUuid\": \"%s\"}}",
           g_src, g_dst);
  status = chunkferry_sync(h, g_root, one_body, CHUNKFERRY_ONE_BACKUP | CHUNKFERRY_WITH_SCHEMA,
                           NULL, NULL, &response);
  CHECK(status == 200 && response != NULL && StartsWith(response, "{\"inventory\":{") &&
            strstr(response, g_root) != NULL &&
            strstr(response, "\"inventory.backupStorageRefs[1]\"") != NULL,
        "one backup's sync answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  /* It is on the destination without its group: DeleteVolumeBackup removes it. */
  status = chunkferry_delete_from(h, CHUNKFERRY_DELETE_BACKUP, g_root, dst, 1, &response);
  CHECK(status == 200, "delete_from of a backup answered %d: %s", status,
        response ? response : "(null)");
  chunkferry_free(response);
  status = chunkferry_delete_from(h, CHUNKFERRY_DELETE_BACKUP, g_root, dst, 1, &response);
  CHECK(status == 503 && response != NULL && strstr(response, "VolumeBackupVO") != NULL,
        "second delete_from answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  const char* unknown[] = {"ffffffffffffffffffffffffffffffff"};
  status = chunkferry_delete_from(h, CHUNKFERRY_DELETE_GROUP, g_group, unknown, 1, &response);
  CHECK(status == 503 && response != NULL && strstr(response, "BackupStorageVO") != NULL,
        "unknown storage answered %d: %s", status, response ? response : "(null)");
  chunkferry_free(response);
  CHECK(chunkferry_delete_from(h, CHUNKFERRY_DELETE_GROUP, g_group, NULL, 1, NULL) == 400,
        "NULL storages");
  CHECK(chunkferry_delete_from(h, 9, g_group, dst, 1, NULL) == 400, "unknown kind");
  /* The group comes back for whatever runs next. */
  status = chunkferry_sync(h, g_group, g_body, 0, NULL, NULL, &response);
  CHECK(status == 200, "sync after the family answered %d: %s", status,
        response ? response : "(null)");
  chunkferry_free(response);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s CONFIG GROUP SRC_STORAGE DST_STORAGE ROOT_BACKUP\n", argv[0]);
    return 2;
  }
  g_config = argv[1];
  g_group = argv[2];
  g_src = argv[3];
  g_dst = argv[4];
  g_root = argv[5];
  snprintf(g_body, sizeof g_body,
           "{\"syncVmBackupFromImageStoreBackupStorage\": {\"srcBackupStorageUuid\": \"%s\", "
           "\"dstBackupStorageUuid\": \"%s\"}, \"systemTags\": [], \"userTags\": [\"c-api\"]}",
           g_src, g_dst);

  CHECK(strcmp(chunkferry_version(), CHUNKFERRY_EXPECTED_VERSION) == 0, "version %s",
        chunkferry_version());
  TestOpenFailures();

  char* error = NULL;
  chunkferry* h = chunkferry_open(g_config, &error);
  CHECK(h != NULL && error == NULL, "open %s: %s", g_config, error ? error : "(no error)");
  chunkferry_free(error);
  if (h == NULL) return 1;

  TestNullArguments(h);
  TestSync(h);
  TestThreads(h);
  TestErrors(h);
  TestDelete(h);
  TestFamily(h);
  chunkferry_close(h);

  printf("c_api_test: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
