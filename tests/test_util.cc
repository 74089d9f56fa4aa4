#include "tests/test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "codec/record.h"
#include "engine/pipeline/restorer.h"
#include "io/fd.h"

extern char** environ;

namespace chunkferry::io {
void PrintTo(Backend backend, std::ostream* os) { *os << BackendName(backend); }
}  // namespace chunkferry::io

namespace chunkferry::testing {
namespace {

#ifdef CHUNKFERRY_TEST_TMPDIR
constexpr char kTmpRoot[] = CHUNKFERRY_TEST_TMPDIR;
#else
constexpr char kTmpRoot[] = "/var/tmp/chunkferry-tests";
#endif

// splitmix64: fast, and good enough to make incompressible bytes.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

void FillRandom(uint8_t* p, size_t n, uint64_t seed) {
  Rng rng{seed * 0x2545f4914f6cdd1dull + 1};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng.Next();
    std::memcpy(p + i, &v, 8);
  }
  if (i < n) {
    const uint64_t v = rng.Next();
    std::memcpy(p + i, &v, n - i);
  }
}

void FillText(uint8_t* p, size_t n, uint64_t seed) {
  static constexpr const char* kWords[] = {
      "volume", "backup", "chunk",  "store", "the",    "of",     "and",   "replicate",
      "zstd",   "record", "index",  "pack",  "kernel", "ring",   "queue", "manifest",
      "group",  "node",   "a",      "to",    "is",     "with",   "data",  "block",
      "disk",   "image",  "sparse", "hole",  "verify", "commit", "crash", "copy"};
  Rng rng{seed + 77};
  size_t i = 0, words = 0;
  while (i < n) {
    const uint64_t r = rng.Next();
    const char* w = kWords[r % (sizeof(kWords) / sizeof(kWords[0]))];
    for (const char* c = w; *c && i < n; ++c) p[i++] = static_cast<uint8_t>(*c);
    if (i < n) p[i++] = (++words % 12 == 0) ? '\n' : ' ';
    if ((r >> 40) % 97 == 0) {
      // A number now and then, so that the text is not only the vocabulary.
      const std::string num = absl::StrCat(r % 100000);
      for (char c : num) {
        if (i < n) p[i++] = static_cast<uint8_t>(c);
      }
    }
  }
}

}  // namespace

TempDir::TempDir() {
  std::error_code ec;
  std::filesystem::create_directories(kTmpRoot, ec);
  std::string root = kTmpRoot;
  if (ec) root = "/var/tmp";
  std::string templ = root + "/cf-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << templ << ": " << std::strerror(errno);
    return;
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (!path_.empty()) RemoveAll(path_);
}

void RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::vector<uint8_t> RandomBytes(size_t size, uint64_t seed) {
  std::vector<uint8_t> out(size);
  FillRandom(out.data(), size, seed);
  return out;
}

std::vector<uint8_t> TextBytes(size_t size, uint64_t seed) {
  std::vector<uint8_t> out(size);
  FillText(out.data(), size, seed);
  return out;
}

std::vector<uint8_t> MixedBytes(size_t size, uint64_t seed) {
  constexpr size_t kRegion = 64 << 10;
  std::vector<uint8_t> out(size, 0);
  for (size_t off = 0, k = 0; off < size; off += kRegion, ++k) {
    const size_t n = std::min(kRegion, size - off);
    switch (k % 3) {
      case 0:
        FillRandom(out.data() + off, n, seed * 1000 + k);
        break;
      case 1:
        FillText(out.data() + off, n, seed * 1000 + k);
        break;
      default:
        break;  // zeros
    }
  }
  return out;
}

void WriteFile(const std::string& path, absl::Span<const uint8_t> data) {
  auto fd = io::OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(io::PwriteFull(fd->get(), data, 0).ok()) << path;
}

void WriteRandomFile(const std::string& path, size_t size, uint64_t seed) {
  WriteFile(path, RandomBytes(size, seed));
}
void WriteTextFile(const std::string& path, size_t size, uint64_t seed) {
  WriteFile(path, TextBytes(size, seed));
}
void WriteZeroFile(const std::string& path, size_t size) {
  WriteFile(path, std::vector<uint8_t>(size, 0));
}
void WriteMixedFile(const std::string& path, size_t size, uint64_t seed) {
  WriteFile(path, MixedBytes(size, seed));
}

void WriteSparseFile(const std::string& path, uint64_t size,
                     const std::vector<std::pair<uint64_t, uint64_t>>& extents, uint64_t seed) {
  auto fd = io::OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_EQ(::ftruncate(fd->get(), static_cast<off_t>(size)), 0) << std::strerror(errno);
  uint64_t k = 0;
  for (const auto& [off, len] : extents) {
    const auto bytes = RandomBytes(len, seed * 7919 + k++);
    ASSERT_TRUE(io::PwriteFull(fd->get(), bytes, off).ok()) << path;
  }
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  auto s = io::ReadFileToString(path);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return {};
  return std::vector<uint8_t>(s->begin(), s->end());
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void ForEachPath(const std::string& root,
                 const std::function<void(const std::string&, const struct stat&)>& fn) {
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) return;
  fn(root, st);
  if (!S_ISDIR(st.st_mode)) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    ForEachPath(entry.path().string(), fn);
  }
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_size);
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

::testing::AssertionResult FilesEqual(const std::string& a, const std::string& b) {
  if (!FileExists(a)) return ::testing::AssertionFailure() << a << " does not exist";
  if (!FileExists(b)) return ::testing::AssertionFailure() << b << " does not exist";
  const auto x = ReadFile(a);
  const auto y = ReadFile(b);
  if (x.size() != y.size()) {
    return ::testing::AssertionFailure()
           << a << " has " << x.size() << " bytes, " << b << " has " << y.size();
  }
  const auto mismatch = std::mismatch(x.begin(), x.end(), y.begin());
  if (mismatch.first != x.end()) {
    return ::testing::AssertionFailure() << a << " and " << b << " differ first at offset "
                                         << (mismatch.first - x.begin()) << " of " << x.size();
  }
  return ::testing::AssertionSuccess();
}

std::map<std::string, uint64_t> ListFiles(const std::string& dir,
                                          const std::vector<std::string>& ignore) {
  std::map<std::string, uint64_t> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    const std::string relative = std::filesystem::relative(it->path(), dir).string();
    if (std::any_of(ignore.begin(), ignore.end(), [&](const std::string& i) {
          return i == name || (i.ends_with('/') && relative.starts_with(i));
        })) {
      continue;
    }
    out[relative] = it->file_size();
  }
  EXPECT_FALSE(ec) << "listing " << dir << ": " << ec.message();
  return out;
}

void FlipByte(const std::string& path, uint64_t offset, uint8_t mask) {
  auto fd = io::OpenFile(path, O_RDWR);
  ASSERT_TRUE(fd.ok()) << fd.status();
  uint8_t b = 0;
  ASSERT_TRUE(io::PreadFull(fd->get(), absl::MakeSpan(&b, 1), offset).ok());
  b ^= mask;
  ASSERT_TRUE(io::PwriteFull(fd->get(), absl::MakeConstSpan(&b, 1), offset).ok());
}

void AppendToFile(const std::string& path, absl::Span<const uint8_t> data) {
  const int64_t size = FileSize(path);
  ASSERT_GE(size, 0) << path;
  auto fd = io::OpenFile(path, O_WRONLY);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(io::PwriteFull(fd->get(), data, static_cast<uint64_t>(size)).ok());
}

ScopedFileSizeLimit::ScopedFileSizeLimit(uint64_t limit) {
  ::getrlimit(RLIMIT_FSIZE, &old_);
  old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
  rlimit r = old_;
  r.rlim_cur = limit;
  ok_ = ::setrlimit(RLIMIT_FSIZE, &r) == 0;
}

ScopedFileSizeLimit::~ScopedFileSizeLimit() {
  ::setrlimit(RLIMIT_FSIZE, &old_);
  ::signal(SIGXFSZ, old_handler_);
}

void TruncateFile(const std::string& path, uint64_t size) {
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0) << std::strerror(errno);
}

bool UringAvailable() {
  static const bool available = [] {
    io::QueueOptions o;
    o.backend = io::Backend::kUring;
    return io::MakeQueue(o).ok();
  }();
  return available;
}

std::string BackendName(io::Backend backend) { return std::string(io::BackendName(backend)); }

std::string BackendParamName(const ::testing::TestParamInfo<io::Backend>& param) {
  return std::string(io::BackendName(param.param));
}

void InitStore(const std::string& dir, const std::string& chunker, const std::string& uuid,
               const std::string& id_key_hex) {
  engine::StoreInitOptions o;
  auto spec = codec::ChunkerSpec::Parse(chunker);
  ASSERT_TRUE(spec.ok()) << spec.status();
  o.chunker = *spec;
  o.uuid = uuid;
  o.id_key_hex = id_key_hex;
  absl::Status st = engine::LocalStore::Init(dir, o);
  ASSERT_TRUE(st.ok()) << st;
}

absl::StatusOr<std::unique_ptr<engine::LocalStore>> OpenStore(const std::string& dir,
                                                              io::Backend backend, bool writable,
                                                              engine::WorkerPool* pool) {
  engine::LocalStoreOptions o;
  o.writable = writable;
  o.queue.backend = backend;
  o.pool = pool;
  return engine::LocalStore::Open(dir, o);
}

engine::VolumeBackupMeta NewMeta(const std::string& group, const std::string& type) {
  engine::VolumeBackupMeta m;
  m.uuid = engine::NewUuid();
  m.volume_uuid = engine::NewUuid();
  m.group_uuid = group;
  m.type = type;
  return m;
}

absl::StatusOr<engine::VolumeBackupMeta> Import(engine::LocalStore& store, engine::WorkerPool& pool,
                                                const std::string& image, const std::string& group,
                                                const std::string& type,
                                                engine::ImportStats* stats) {
  engine::ImportOptions o;
  o.source = image;
  o.meta = NewMeta(group, type);
  return engine::ImportVolume(store, pool, o, stats);
}

ImportedVolume ImportOk(engine::LocalStore& store, engine::WorkerPool& pool,
                        const std::string& image, const std::string& group,
                        const std::string& type) {
  ImportedVolume v;
  v.image = image;
  auto meta = Import(store, pool, image, group, type, &v.stats);
  EXPECT_TRUE(meta.ok()) << meta.status();
  if (meta.ok()) v.meta = *meta;
  return v;
}

std::vector<ImportedVolume> ImportSampleGroup(engine::LocalStore& store, engine::WorkerPool& pool,
                                              const TempDir& dir, const std::string& group,
                                              uint64_t seed, SampleGroupSizes sizes,
                                              bool data_first) {
  const std::string root = dir.Sub(absl::StrCat("root-", seed));
  const std::string data1 = dir.Sub(absl::StrCat("data1-", seed));
  const std::string data2 = dir.Sub(absl::StrCat("data2-", seed));
  WriteMixedFile(root, sizes.root, seed);
  WriteTextFile(data1, sizes.data1, seed + 1);
  WriteRandomFile(data2, sizes.data2, seed + 2);
  std::vector<ImportedVolume> vols;
  if (data_first) vols.push_back(ImportOk(store, pool, data1, group, "Data"));
  vols.push_back(ImportOk(store, pool, root, group, "Root"));
  if (!data_first) vols.push_back(ImportOk(store, pool, data1, group, "Data"));
  vols.push_back(ImportOk(store, pool, data2, group, "Data"));
  return vols;
}

std::vector<ImportedVolume> ImportRelatedGroup(engine::LocalStore& store, engine::WorkerPool& pool,
                                               const TempDir& dir, const std::string& group,
                                               const std::string& root,
                                               const std::string& same_data) {
  std::vector<uint8_t> bytes = ReadFile(root);
  for (size_t off = 100 * 4096; off + 4096 <= bytes.size(); off += 250 * 4096) {
    const auto fresh = RandomBytes(4096, off);
    std::copy(fresh.begin(), fresh.end(), bytes.begin() + static_cast<long>(off));
  }
  const std::string root2 = dir.Sub("root2"), data3 = dir.Sub("data3");
  WriteFile(root2, bytes);
  WriteTextFile(data3, 1 << 20, 99);
  std::vector<ImportedVolume> vols;
  vols.push_back(ImportOk(store, pool, root2, group, "Root"));
  vols.push_back(ImportOk(store, pool, same_data, group, "Data"));
  vols.push_back(ImportOk(store, pool, data3, group, "Data"));
  return vols;
}

::testing::AssertionResult RestoresIdentical(engine::LocalStore& store, engine::WorkerPool& pool,
                                             const std::string& backup, const std::string& image,
                                             const std::string& out) {
  engine::RestoreOptions o;
  o.output = out;
  o.overwrite = true;
  engine::RestoreStats stats;
  absl::Status st = engine::RestoreVolume(store, pool, backup, o, &stats);
  if (!st.ok()) return ::testing::AssertionFailure() << "restore of " << backup << ": " << st;
  return FilesEqual(image, out);
}

absl::Status ReadRecordsFor(engine::Store& store, absl::Span<const codec::ChunkId> ids,
                            std::vector<std::vector<uint8_t>>* out) {
  out->clear();
  return store.ReadRecordsFor(ids, [out](absl::Span<const absl::Span<const uint8_t>> batch) {
    for (const auto& r : batch) out->emplace_back(r.begin(), r.end());
    return absl::OkStatus();
  });
}

std::string PackPath(const std::string& dir, uint32_t pack_id) {
  return absl::StrCat(dir, "/packs/", engine::PackFileName(pack_id));
}

std::map<std::string, uint64_t> PackSizes(const std::string& dir) {
  return ListFiles(dir + "/packs");
}

uint64_t TotalPackBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& [name, size] : PackSizes(dir)) total += size;
  return total;
}

std::vector<engine::RecordLocation> IndexedRecords(const engine::LocalStore& store) {
  std::set<engine::RecordLocation> set;
  EXPECT_TRUE(store.index()
                  .ForEach([&](const codec::ChunkId&, const engine::ChunkLocation& l) {
                    set.insert(l.record);
                  })
                  .ok());
  return std::vector<engine::RecordLocation>(set.begin(), set.end());
}

std::vector<codec::ChunkId> ChunksOfRecord(const engine::LocalStore& store,
                                           const engine::RecordLocation& record) {
  std::vector<codec::ChunkId> out;
  EXPECT_TRUE(store.index()
                  .ForEach([&](const codec::ChunkId& id, const engine::ChunkLocation& l) {
                    if (l.record == record) out.push_back(id);
                  })
                  .ok());
  return out;
}

uint64_t PayloadOffset(const std::string& dir, const engine::RecordLocation& loc) {
  auto fd = io::OpenFile(PackPath(dir, loc.pack), O_RDONLY);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return 0;
  std::vector<uint8_t> bytes(loc.size);
  absl::Status st = io::PreadFull(fd->get(), absl::MakeSpan(bytes), loc.offset);
  EXPECT_TRUE(st.ok()) << st;
  auto view = codec::ParseRecord(bytes);
  EXPECT_TRUE(view.ok()) << view.status();
  if (!view.ok()) return 0;
  return loc.offset + static_cast<uint64_t>(view->payload.data() - bytes.data());
}

std::vector<engine::ManifestEntry> ManifestEntries(engine::LocalStore& store,
                                                   const std::string& backup) {
  std::vector<engine::ManifestEntry> all, batch;
  auto reader = store.OpenManifestReader(backup);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return all;
  for (;;) {
    auto n = (*reader)->Next(&batch, 4096);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) break;
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

namespace {

std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& out, const std::string& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv = Argv(args);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "posix_spawn " << args[0] << ": " << std::strerror(rc);
  return rc == 0 ? pid : -1;
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv) {
  ProcessResult result;
  TempDir tmp;
  const std::string out = tmp.Sub("stdout"), err = tmp.Sub("stderr");
  const pid_t pid = Spawn(argv, out, err);
  if (pid < 0) return result;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  auto o = io::ReadFileToString(out);
  auto e = io::ReadFileToString(err);
  if (o.ok()) result.out = *o;
  if (e.ok()) result.err = *e;
  return result;
}

pid_t StartProcess(const std::vector<std::string>& argv) {
  return Spawn(argv, "/dev/null", "/dev/null");
}

}  // namespace chunkferry::testing
