// LocalStore's delete: groups and volume backups leave the store in an order that a crash at any
// point cannot turn into a group naming a missing manifest (docs/FORMATS.md, "Delete").
//
//   1. the group record moves from groups/ to deleting/ (one rename: the group is gone for every
//      reader at once), both directories fsynced;
//   2. each manifest it names that no group still in groups/ names is unlinked, volumes/ fsynced;
//   3. the record in deleting/ is unlinked.
//
// A writable open runs 2 and 3 for every record it finds in deleting/, so an interrupted delete
// is finished before anything else can publish.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/local/local_store.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {

std::string LocalStore::DeletingPath(const std::string& group_uuid) const {
  return absl::StrCat(dir_, "/deleting/", group_uuid, ".group");
}

absl::StatusOr<DeleteResult> LocalStore::DeleteGroup(const std::string& group_uuid) {
  CF_RETURN_IF_ERROR(CheckUsable());
  // Also checks the uuid, so that no name from a request becomes a path.
  CF_RETURN_IF_ERROR(GetGroup(group_uuid).status());
  if (::rename(GroupPath(group_uuid).c_str(), DeletingPath(group_uuid).c_str()) != 0) {
    return io::ErrnoStatus(errno, "rename", GroupPath(group_uuid));
  }
  CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(dir_, "/deleting")));
  CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(dir_, "/groups")));
  DeleteResult result;
  CF_RETURN_IF_ERROR(FinishGroupDelete(group_uuid, &result));
  return result;
}

absl::Status LocalStore::FinishGroupDelete(const std::string& group_uuid, DeleteResult* result) {
  const std::string parked = DeletingPath(group_uuid);
  CF_ASSIGN_OR_RETURN(std::string bytes, io::ReadFileToString(parked));
  CF_ASSIGN_OR_RETURN(GroupRecord group, DecodeGroup(bytes, parked));
  // Volume backups that the groups still published name stay.
  absl::flat_hash_set<std::string> named;
  CF_ASSIGN_OR_RETURN(std::vector<std::string> groups, ListGroups());
  for (const std::string& g : groups) {
    CF_ASSIGN_OR_RETURN(GroupRecord other, GetGroup(g));
    named.insert(other.volume_uuids.begin(), other.volume_uuids.end());
  }
  for (const std::string& v : group.volume_uuids) {
    if (named.contains(v)) {
      result->backups_kept.push_back(v);
      continue;
    }
    if (::unlink(ManifestPath(v).c_str()) != 0 && errno != ENOENT) {
      return io::ErrnoStatus(errno, "unlink", ManifestPath(v));
    }
    result->backups_removed.push_back(v);
  }
  CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(dir_, "/volumes")));
  if (::unlink(parked.c_str()) != 0) return io::ErrnoStatus(errno, "unlink", parked);
  CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(dir_, "/deleting")));
  result->groups_removed.push_back(group_uuid);
  return absl::OkStatus();
}

absl::Status LocalStore::FinishInterruptedDeletes() {
  const std::string dir = absl::StrCat(dir_, "/deleting");
  // Stores made before delete existed have no deleting/ yet.
  CF_RETURN_IF_ERROR(io::MakeDir(dir));
  CF_ASSIGN_OR_RETURN(std::vector<std::string> parked, io::ListDir(dir, ".group"));
  for (const std::string& g : parked) {
    if (!IsValidUuid(g)) continue;
    DeleteResult ignored;
    absl::Status st = FinishGroupDelete(g, &ignored);
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("finishing the interrupted delete of group ", g,
                                                  " in store ", dir_, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<DeleteResult> LocalStore::DeleteBackup(const std::string& backup_uuid) {
  CF_RETURN_IF_ERROR(CheckUsable());
  if (!IsValidUuid(backup_uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume backup uuid '", backup_uuid, "' is malformed"));
  }
  if (!HasManifest(backup_uuid)) {
    return absl::NotFoundError(absl::StrCat("store ", dir_, " has no volume backup ", backup_uuid));
  }
  CF_ASSIGN_OR_RETURN(std::vector<std::string> groups, ListGroups());
  for (const std::string& g : groups) {
    CF_ASSIGN_OR_RETURN(GroupRecord group, GetGroup(g));
    if (std::find(group.volume_uuids.begin(), group.volume_uuids.end(), backup_uuid) !=
        group.volume_uuids.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("volume backup ", backup_uuid, " belongs to group ", g, " in store ", dir_,
                       ": delete the group (--group ", g, ") to delete its volume backups"));
    }
  }
  if (::unlink(ManifestPath(backup_uuid).c_str()) != 0) {
    return io::ErrnoStatus(errno, "unlink", ManifestPath(backup_uuid));
  }
  CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(dir_, "/volumes")));
  DeleteResult result;
  result.backups_removed.push_back(backup_uuid);
  return result;
}

}  // namespace chunkferry::engine
