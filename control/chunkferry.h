/* libchunkferry's C ABI: the sync API SyncVmBackupFromImageStoreBackupStorage as one function
 * call, for programs that embed the engine instead of talking HTTP to it (C, or any language with
 * a C FFI: Python ctypes, Go cgo, Rust, Java's FFM).
 *
 * C99, usable from C and C++. Link with -lchunkferry (pkg-config chunkferry, or CMake's
 * find_package(chunkferry) and the target chunkferry::chunkferry). The contract of the call, its
 * body and its answers: shared/api/SyncVmBackupFromImageStoreBackupStorage.md.
 *
 *   char* error = NULL;
 *   chunkferry* h = chunkferry_open("/etc/chunkferry/registry.json", &error);
 *   if (h == NULL) { fprintf(stderr, "%s\n", error); chunkferry_free(error); return 1; }
 *   char* response = NULL;
 *   int status = chunkferry_sync(h, group_uuid,
 *       "{\"syncVmBackupFromImageStoreBackupStorage\": {\"srcBackupStorageUuid\": \"...\","
 *       " \"dstBackupStorageUuid\": \"...\"}}", 0, NULL, NULL, &response);
 *   ... status is 200, 400 or 503; response is the body the HTTP API would answer ...
 *   chunkferry_free(response);
 *   chunkferry_close(h);
 *
 * Errors never cross the ABI as C++ exceptions: every function catches them; an unexpected one
 * is answered as 503 with the error code SYS.1000. Strings handed out by the library are
 * NUL-terminated UTF-8 and are freed with chunkferry_free, never with free(): the library and
 * the program may use different allocators. Strings passed in are only read during the call.
 */
#ifndef CHUNKFERRY_CHUNKFERRY_H_
#define CHUNKFERRY_CHUNKFERRY_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CHUNKFERRY_EXPORT __attribute__((visibility("default")))
#else
#define CHUNKFERRY_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A handle on the backup storages of one registry config. Opaque. Thread-safe: several threads
 * may call chunkferry_sync on one handle at once (syncs that touch a common backup storage run
 * one after the other, syncs between disjoint storages run in parallel). chunkferry_close must
 * not run while another call on the handle is still in progress.
 * C spells it `chunkferry`; C++ spells it `chunkferry_handle`, because there `chunkferry` is the
 * namespace of the engine's C++ API (which this library exports too) and a global type of that
 * name could not live beside it. Both name the same type: the ABI is one. */
typedef struct chunkferry_handle chunkferry_handle;
#ifndef __cplusplus
typedef struct chunkferry_handle chunkferry;
#endif

/* Progress of a running sync. All pointers are valid only during the callback. */
typedef struct {
  const char* phase;     /* "plan", "copy", "commit", "verify", ...; never NULL */
  uint64_t bytes_done;   /* bytes of the phase done so far */
  uint64_t bytes_total;  /* bytes the phase will do; 0 when unknown */
  uint64_t chunks_done;  /* chunks of the phase done so far */
  uint64_t chunks_total; /* chunks the phase will do; 0 when unknown */
  double seconds;        /* seconds since the phase started */
  int final;             /* nonzero on the last report of the phase */
  /* Of what is done, what had to travel ("copy"): stored (compressed) bytes and chunks of the
   * records the destination lacked; 0 when it held them all (a repeated sync). */
  uint64_t bytes_sent;
  uint64_t chunks_sent;
} chunkferry_progress;

/* Called on the thread that called chunkferry_sync, at most a few times a second and once with
 * `final` set when a phase ends. `user` is the pointer given to chunkferry_sync. It must return
 * normally (no longjmp, no C++ exception) and must not call chunkferry_close on the handle. */
typedef void (*chunkferry_progress_fn)(void* user, const chunkferry_progress* progress);

/* chunkferry_sync flag: the 200 body also carries the "schema" map (JSON paths to the platform's
 * class names) that the platform's SDKs ask for with the header `X-JSON-Schema: true`. */
#define CHUNKFERRY_WITH_SCHEMA 1u
/* chunkferry_sync flag: the platform's single-volume sync, SyncBackupFromImageStoreBackupStorage:
 * `group_uuid` names one volume backup ({uuid} of PUT /v1/volume-backups/{uuid}/actions), the body
 * is {"syncBackupFromImageStoreBackupStorage": {...}}, and the 200 body {"inventory": {...}}.
 * Only that volume backup is copied, no group (its group's sync publishes the group later). */
#define CHUNKFERRY_ONE_BACKUP 2u

/* Opens the registry config at `config_path` (a JSON file naming the backup storages; format in
 * control/registry.h), validated whole before anything runs. Stores are not opened here: each
 * sync opens the two it uses and closes them after, so the CLI can use them between calls.
 * @return a handle to release with chunkferry_close; NULL on failure, with *error (when `error`
 *         is not NULL) set to a message to release with chunkferry_free. *error is set to NULL
 *         on success. */
CHUNKFERRY_EXPORT chunkferry_handle* chunkferry_open(const char* config_path, char** error);

/* Runs one sync of the VM backup group `group_uuid` (32 lowercase hex, the {groupUuid} of the
 * REST path: it wins over a group uuid inside the body) with `body_json`, the body of the REST
 * call: {"syncVmBackupFromImageStoreBackupStorage": {"srcBackupStorageUuid": "...",
 * "dstBackupStorageUuid": "..."}, "systemTags": [...], "userTags": [...]}. Blocks until the
 * group is durable on the destination, or the sync failed leaving the destination holding no
 * part of the group it did not hold before. A group the destination already holds succeeds
 * with nothing copied.
 * `flags`: 0, CHUNKFERRY_WITH_SCHEMA, CHUNKFERRY_ONE_BACKUP, or both. `progress` may be NULL;
 * `user` is passed to it as is.
 * @return the HTTP status the REST API answers, with *response set to its body (release it with
 *         chunkferry_free):
 *   200  {"inventories": [VolumeBackupInventory, ...]}, Root first, each with backupStorageRefs
 *        naming the source and the destination ({"inventory": ...} with CHUNKFERRY_ONE_BACKUP);
 *   400  a plain-text reason: the body is not a JSON object or names no known action, unknown
 *        flags, or a NULL handle, group_uuid or body_json (never a crash);
 *   503  {"error": ErrorCode}: SYS.1003 unknown group or backup storage, SYS.1006 a group
 *        without exactly one Root volume, SYS.1007 a missing or malformed field, SYS.1000 an
 *        internal error, or the code of what failed while copying.
 *   When `response` is NULL the status is still returned; *response is NULL only when the
 *   library could not allocate the body. */
CHUNKFERRY_EXPORT int chunkferry_sync(chunkferry_handle* h, const char* group_uuid,
                                      const char* body_json, unsigned flags,
                                      chunkferry_progress_fn progress, void* user, char** response);

/* chunkferry_delete kinds. */
#define CHUNKFERRY_DELETE_GROUP 0  /* a VM backup group and its volume backups */
#define CHUNKFERRY_DELETE_BACKUP 1 /* one volume backup that no group names */

/* Deletes from the backup storage `backup_storage_uuid` of the registry either the VM backup
 * group `uuid` with the volume backups it names (those no other group names too), or the volume
 * backup `uuid`, which no group may name. Nothing restores them afterwards; the space of their
 * chunks comes back at the storage's next garbage collection (`chunkferry gc`). Waits for syncs
 * that touch the storage.
 * @return the HTTP status, with *response set to its body (release it with chunkferry_free):
 *   200  {"groupsRemoved": [...], "backupsRemoved": [...], "backupsKept": [...]}: backupsKept
 *        are volume backups of the group that another group names too, so left in place;
 *   400  a plain-text reason: a NULL handle, uuid or storage uuid, or an unknown `kind`;
 *   503  {"error": ErrorCode}: SYS.1003 unknown storage, group or volume backup, SYS.1006 a
 *        volume backup that a group names (the details name the group), SYS.1007 a malformed
 *        uuid, or the code of what failed. Nothing was deleted. */
CHUNKFERRY_EXPORT int chunkferry_delete(chunkferry_handle* h, const char* backup_storage_uuid,
                                        int kind, const char* uuid, char** response);

/* The platform's DeleteVmBackup (kind CHUNKFERRY_DELETE_GROUP) and DeleteVolumeBackup
 * (CHUNKFERRY_DELETE_BACKUP): deletes `uuid` from each of the `count` backup storages
 * `storage_uuids` of the registry (count 0: from every storage of the registry) that holds it,
 * answering as the REST API does:
 *   200  {} (a group no storage holds is deleted already, as on the platform);
 *   400  a plain-text reason: a NULL handle or uuid, NULL storage_uuids with count > 0, an
 *        unknown kind;
 *   503  {"error": ErrorCode}: SYS.1003 a storage the registry lacks (nothing deleted) or a
 *        volume backup no storage holds, SYS.1006 a volume backup that a group names, SYS.1007
 *        a malformed uuid, or the code of the first storage that failed (the others were
 *        tried). */
CHUNKFERRY_EXPORT int chunkferry_delete_from(chunkferry_handle* h, int kind, const char* uuid,
                                             const char* const* storage_uuids, size_t count,
                                             char** response);
/* The platform's QueryVolumeBackup: `query` is the query string of GET /v1/volume-backups,
 * URL-encoded as there ("q=type%3DRoot&q=groupUuid%3D...&limit=10&sort=-size"; NULL or "": every
 * volume backup, up to 1000). Conditions `q` take the platform's operators (= != ?= !?= ~= !~= >
 * >= < <= "is null" "not null") on the VolumeBackupInventory's fields and, through
 * backupStorageRef.<field> or backupStorage.uuid, on its refs; also limit, start, count,
 * replyWithCount, sort (+f, -f) and fields. docs/API.md has the details.
 * @return 200 {"inventories": [...], "schema": {...}} (plus "total" with replyWithCount=true;
 *         only {"total": N, "schema": {}} with count=true), 400 a plain-text reason (a condition
 *         without an operator, a limit that is not a number, a NULL handle), 503 {"error": ...}
 *         (SYS.1000 a field the inventory lacks, or what failed reading a storage). */
CHUNKFERRY_EXPORT int chunkferry_query(chunkferry_handle* h, const char* query, char** response);
/* Releases a string the library handed out. NULL is a no-op. */
CHUNKFERRY_EXPORT void chunkferry_free(void* p);

/* Releases a handle. NULL is a no-op. */
CHUNKFERRY_EXPORT void chunkferry_close(chunkferry_handle* h);

/* The library's version, "MAJOR.MINOR.PATCH"; static storage. */
CHUNKFERRY_EXPORT const char* chunkferry_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CHUNKFERRY_CHUNKFERRY_H_ */
