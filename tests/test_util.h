// Helpers shared by the engine and cross-module tests: scratch directories on a real disk,
// generated volume images, file comparison, store listings (to assert "nothing changed"), record
// damage, and running the chunkferry CLI as a child process.
//
// Everything here is for tests only: failures are reported through gtest assertions or returned
// as Status, never hidden.
#ifndef CHUNKFERRY_TESTS_TEST_UTIL_H_
#define CHUNKFERRY_TESTS_TEST_UTIL_H_

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "codec/chunker.h"
#include "engine/format/manifest.h"
#include "engine/format/pack.h"
#include "engine/format/volume_backup.h"
#include "engine/local/local_store.h"
#include "engine/pipeline/importer.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "io/queue.h"

namespace chunkferry::io {
// Names backends in test output (gtest would print the enum's byte).
void PrintTo(Backend backend, std::ostream* os);
}  // namespace chunkferry::io

namespace chunkferry::testing {

// A fresh directory on a real disk (under the build tree, or /var/tmp: /tmp may be tmpfs, where
// O_DIRECT fails), removed recursively when the object dies. Not thread-safe.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name (not created).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Removes `path` and everything below it; missing is fine.
void RemoveAll(const std::string& path);

// ---- Generated images (deterministic for a given seed). ----

// Incompressible bytes.
std::vector<uint8_t> RandomBytes(size_t size, uint64_t seed);
// Text-like bytes (words from a small vocabulary, lines): compresses several times over.
std::vector<uint8_t> TextBytes(size_t size, uint64_t seed);
// Alternating 64 KiB regions of random, text and zero bytes, in that order.
std::vector<uint8_t> MixedBytes(size_t size, uint64_t seed);

// Writes `data` to `path` (created or truncated). Fails the test on error.
void WriteFile(const std::string& path, absl::Span<const uint8_t> data);
// Writes a file of `size` random / text / zero (written, not holes) / mixed bytes.
void WriteRandomFile(const std::string& path, size_t size, uint64_t seed);
void WriteTextFile(const std::string& path, size_t size, uint64_t seed);
void WriteZeroFile(const std::string& path, size_t size);
void WriteMixedFile(const std::string& path, size_t size, uint64_t seed);
// A sparse file of `size` bytes: holes everywhere except `extents` (offset, length) of random
// bytes.
void WriteSparseFile(const std::string& path, uint64_t size,
                     const std::vector<std::pair<uint64_t, uint64_t>>& extents, uint64_t seed);

std::vector<uint8_t> ReadFile(const std::string& path);
bool FileExists(const std::string& path);
// Calls fn(path, its lstat) for `root` and every path below it (symlinks not followed).
void ForEachPath(const std::string& root,
                 const std::function<void(const std::string&, const struct stat&)>& fn);
// Size in bytes, or -1 when the file does not exist.
int64_t FileSize(const std::string& path);
// Bytes the file occupies on disk (st_blocks * 512).
uint64_t AllocatedBytes(const std::string& path);

// Compares two files byte for byte; the failure names the first differing offset.
::testing::AssertionResult FilesEqual(const std::string& a, const std::string& b);

// Every regular file below `dir` (relative path → size), e.g. to assert that a failed operation
// left a store as it was. Names in `ignore` (base names such as "LOCK", or folders such as
// "index/", the derived chunk index) are left out.
std::map<std::string, uint64_t> ListFiles(const std::string& dir,
                                          const std::vector<std::string>& ignore = {});

// ---- File surgery. ----

// XORs the byte at `offset` of `path` with `mask`.
void FlipByte(const std::string& path, uint64_t offset, uint8_t mask = 0x01);
// Appends `data` to `path`.
void AppendToFile(const std::string& path, absl::Span<const uint8_t> data);
// Cuts `path` to `size` bytes.
void TruncateFile(const std::string& path, uint64_t size);

// Lowers RLIMIT_FSIZE (with SIGXFSZ ignored, so writes past it fail with EFBIG): a disk that is
// full for files past `limit` bytes. Restores both when it goes out of scope, whatever happens.
// Process-wide: every thread of the test, and an in-process server, hits the limit.
class ScopedFileSizeLimit {
 public:
  explicit ScopedFileSizeLimit(uint64_t limit);
  ~ScopedFileSizeLimit();
  ScopedFileSizeLimit(const ScopedFileSizeLimit&) = delete;
  ScopedFileSizeLimit& operator=(const ScopedFileSizeLimit&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  sighandler_t old_handler_ = SIG_DFL;
  bool ok_ = false;
};

// ---- Stores. ----

// True when an io_uring queue can be made here (cached).
bool UringAvailable();
// Skips the current test when `backend` is kUring and io_uring is unavailable.
#define CF_SKIP_IF_NO_URING(backend)                      \
  do {                                                    \
    if ((backend) == ::chunkferry::io::Backend::kUring && \
        !::chunkferry::testing::UringAvailable()) {       \
      GTEST_SKIP() << "io_uring is not available here";   \
    }                                                     \
  } while (0)

// The two backends every store test runs on.
inline std::vector<io::Backend> AllBackends() {
  return {io::Backend::kUring, io::Backend::kThreads};
}
std::string BackendName(io::Backend backend);
// Names parameterized tests by backend ("uring", "threads").
std::string BackendParamName(const ::testing::TestParamInfo<io::Backend>& param);

// Creates a store in `dir` cut by `chunker` (ChunkerSpec text, e.g. "fixed:4k"); fails the test
// on error.
void InitStore(const std::string& dir, const std::string& chunker = "fixed:4k",
               const std::string& uuid = "", const std::string& id_key_hex = "");
absl::StatusOr<std::unique_ptr<engine::LocalStore>> OpenStore(const std::string& dir,
                                                              io::Backend backend, bool writable,
                                                              engine::WorkerPool* pool = nullptr);

// A volume backup's metadata with fresh uuids (group `group`, type `type`).
engine::VolumeBackupMeta NewMeta(const std::string& group, const std::string& type = "Root");

// Imports `image` as a new volume backup of group `group`.
absl::StatusOr<engine::VolumeBackupMeta> Import(engine::LocalStore& store, engine::WorkerPool& pool,
                                                const std::string& image, const std::string& group,
                                                const std::string& type = "Root",
                                                engine::ImportStats* stats = nullptr);

// A volume a test imported: its image file, its metadata and what the import reported.
struct ImportedVolume {
  std::string image;
  engine::VolumeBackupMeta meta;
  engine::ImportStats stats;
};
// Imports `image` as a new volume backup of `group`; an error fails the test (meta left empty).
ImportedVolume ImportOk(engine::LocalStore& store, engine::WorkerPool& pool,
                        const std::string& image, const std::string& group,
                        const std::string& type);

// Image sizes of a sample group (ImportSampleGroup).
struct SampleGroupSizes {
  size_t root, data1, data2;
};
// Writes the images of a sample VM backup group under `dir` (a mixed root, a text data volume and
// a random data volume; names and contents follow `seed`) and imports them into `store` as group
// `group`, the root first or, with `data_first`, after the first data volume (the group still
// lists the root first). Returns the volumes in the order imported.
std::vector<ImportedVolume> ImportSampleGroup(engine::LocalStore& store, engine::WorkerPool& pool,
                                              const TempDir& dir, const std::string& group,
                                              uint64_t seed, SampleGroupSizes sizes,
                                              bool data_first = false);

// A later backup of a sample group's VM, imported into `store` as group `group`: the root image
// with a 4 KiB block rewritten every 250 blocks from block 100 (written to `dir`), the data volume
// `same_data` unchanged, and a new 1 MiB text volume. Returns the volumes in that order.
std::vector<ImportedVolume> ImportRelatedGroup(engine::LocalStore& store, engine::WorkerPool& pool,
                                               const TempDir& dir, const std::string& group,
                                               const std::string& root,
                                               const std::string& same_data);

// Restores `backup` to `out` (replacing it) and compares it with `image`.
::testing::AssertionResult RestoresIdentical(engine::LocalStore& store, engine::WorkerPool& pool,
                                             const std::string& backup, const std::string& image,
                                             const std::string& out);

// Collects the records that Store::ReadRecordsFor streams for `ids`, in the order they came.
absl::Status ReadRecordsFor(engine::Store& store, absl::Span<const codec::ChunkId> ids,
                            std::vector<std::vector<uint8_t>>* out);

// Path of a pack file of the store in `dir`.
std::string PackPath(const std::string& dir, uint32_t pack_id);
// Sizes of the store's pack files (name → bytes).
std::map<std::string, uint64_t> PackSizes(const std::string& dir);
uint64_t TotalPackBytes(const std::string& dir);

// Every record the store's index points at, sorted by location.
std::vector<engine::RecordLocation> IndexedRecords(const engine::LocalStore& store);
// The chunk ids the index places in `record`.
std::vector<codec::ChunkId> ChunksOfRecord(const engine::LocalStore& store,
                                           const engine::RecordLocation& record);
// File offset of the first payload byte of the record at `loc` in the store in `dir`.
uint64_t PayloadOffset(const std::string& dir, const engine::RecordLocation& loc);
// All entries of a volume backup's manifest.
std::vector<engine::ManifestEntry> ManifestEntries(engine::LocalStore& store,
                                                   const std::string& backup);

// A ManifestSource over entries held in memory: what a peer store hands to PutManifest.
class VectorManifestSource : public engine::ManifestSource {
 public:
  VectorManifestSource(engine::VolumeBackupMeta meta, std::vector<engine::ManifestEntry> entries)
      : meta_(std::move(meta)), entries_(std::move(entries)) {}
  const engine::VolumeBackupMeta& meta() const override { return meta_; }
  absl::StatusOr<size_t> Next(std::vector<engine::ManifestEntry>* out, size_t max) override {
    out->clear();
    while (pos_ < entries_.size() && out->size() < max) out->push_back(entries_[pos_++]);
    return out->size();
  }
  void Rewind() override { pos_ = 0; }

 private:
  engine::VolumeBackupMeta meta_;
  std::vector<engine::ManifestEntry> entries_;
  size_t pos_ = 0;
};

// ---- Child processes. ----

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is the program path) with stdout/stderr captured, and waits for it.
ProcessResult RunProcess(const std::vector<std::string>& argv);
// Starts `argv` with stdout/stderr sent to /dev/null and returns its pid.
pid_t StartProcess(const std::vector<std::string>& argv);

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_TESTS_TEST_UTIL_H_
