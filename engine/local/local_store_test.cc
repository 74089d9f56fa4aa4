#include "engine/local/local_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/chunk_id.h"
#include "codec/compressor.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "engine/format/manifest.h"
#include "engine/format/pack.h"
#include "engine/store/worker_pool.h"
#include "gtest/gtest.h"
#include "io/queue.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::AppendToFile;
using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::FileSize;
using ::chunkferry::testing::FlipByte;
using ::chunkferry::testing::InitStore;
using ::chunkferry::testing::ListFiles;
using ::chunkferry::testing::PackPath;
using ::chunkferry::testing::RandomBytes;
using ::chunkferry::testing::ReadFile;
using ::chunkferry::testing::ReadRecordsFor;
using ::chunkferry::testing::TempDir;
using ::chunkferry::testing::TextBytes;
using ::chunkferry::testing::WriteFile;

// An encoded record and the ids of its chunks.
struct TestRecord {
  std::vector<uint8_t> bytes;
  std::vector<codec::ChunkId> ids;
  codec::RecordView view() const {
    auto v = codec::ParseRecord(bytes);
    EXPECT_TRUE(v.ok()) << v.status();
    return *v;
  }
};

// Encodes `count` chunks of `chunk_size` bytes (random or text, from `seed`) as one record.
TestRecord MakeRecord(const codec::ChunkHasher& hasher, uint64_t seed, size_t count = 4,
                      size_t chunk_size = 4096, bool text = false) {
  std::vector<std::vector<uint8_t>> chunks;
  std::vector<codec::ChunkRef> refs;
  std::vector<absl::Span<const uint8_t>> spans;
  TestRecord r;
  for (size_t i = 0; i < count; ++i) {
    chunks.push_back(text ? TextBytes(chunk_size, seed * 100 + i)
                          : RandomBytes(chunk_size, seed * 100 + i));
  }
  for (const auto& c : chunks) {
    refs.push_back(codec::ChunkRef{hasher.Hash(c), static_cast<uint32_t>(c.size())});
    r.ids.push_back(refs.back().id);
    spans.push_back(c);
  }
  codec::Compressor compressor(1);
  std::vector<uint8_t> out(codec::MaxRecordSize(count, count * chunk_size));
  auto size = codec::EncodeRecord(refs, spans, &compressor, absl::MakeSpan(out));
  EXPECT_TRUE(size.ok()) << size.status();
  out.resize(size.ok() ? *size : 0);
  r.bytes = std::move(out);
  return r;
}

std::vector<bool> Have(LocalStore& store, const std::vector<codec::ChunkId>& ids) {
  std::vector<bool> have;
  absl::Status st = store.HaveChunks(ids, &have);
  EXPECT_TRUE(st.ok()) << st;
  return have;
}

bool HasAll(LocalStore& store, const std::vector<codec::ChunkId>& ids) {
  for (bool b : Have(store, ids)) {
    if (!b) return false;
  }
  return true;
}
bool HasNone(LocalStore& store, const std::vector<codec::ChunkId>& ids) {
  for (bool b : Have(store, ids)) {
    if (b) return false;
  }
  return true;
}

// The index as a comparable set: (id, pack, offset, size, slot).
std::set<std::tuple<uint64_t, uint64_t, uint32_t, uint64_t, uint32_t, uint16_t>> IndexSet(
    const LocalStore& store) {
  std::set<std::tuple<uint64_t, uint64_t, uint32_t, uint64_t, uint32_t, uint16_t>> out;
  EXPECT_TRUE(store.index()
                  .ForEach([&](const codec::ChunkId& id, const ChunkLocation& l) {
                    out.emplace(id.lo, id.hi, l.record.pack, l.record.offset, l.record.size,
                                l.slot);
                  })
                  .ok());
  return out;
}

// Byte strings in no order. (A std::set of byte vectors would do, but GCC 12 at -O3 reports a
// false -Wstringop-overread in vector's operator<=>, bug 105651.)
absl::flat_hash_set<std::string> AsByteStrings(const std::vector<std::vector<uint8_t>>& v) {
  absl::flat_hash_set<std::string> out;
  for (const auto& b : v) out.emplace(b.begin(), b.end());
  return out;
}
absl::flat_hash_set<std::string> AsByteStrings(const std::vector<TestRecord>& recs) {
  absl::flat_hash_set<std::string> out;
  for (const auto& r : recs) out.emplace(r.bytes.begin(), r.bytes.end());
  return out;
}

class LocalStoreTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    CF_SKIP_IF_NO_URING(GetParam());
    dir_ = tmp_.Sub("store");
    InitStore(dir_);
  }

  absl::StatusOr<std::unique_ptr<LocalStore>> Open(bool writable = true,
                                                   uint64_t pack_target = 1ull << 30,
                                                   WorkerPool* pool = nullptr,
                                                   bool direct_reads = false) {
    LocalStoreOptions o;
    o.writable = writable;
    o.queue.backend = GetParam();
    o.pack_target = pack_target;
    o.pool = pool;
    o.direct_reads = direct_reads;
    return LocalStore::Open(dir_, o);
  }

  // Appends records (seeds first..first+n) and makes them durable; returns them.
  std::vector<TestRecord> AppendFlushed(LocalStore& store, uint64_t first, size_t n) {
    std::vector<TestRecord> recs;
    for (size_t i = 0; i < n; ++i) {
      recs.push_back(MakeRecord(store.hasher(), first + i, 4, 4096, i % 2 == 1));
      auto loc = store.AppendRecord(recs.back().bytes, recs.back().view());
      EXPECT_TRUE(loc.ok()) << loc.status();
    }
    absl::Status st = store.Flush();
    EXPECT_TRUE(st.ok()) << st;
    return recs;
  }

  // Exit code for a death-test child (always run "threadsafe": a re-executed test with its own
  // scratch directory, removed here since _exit skips destructors).
  int ChildExit(bool ok) {
    ::chunkferry::testing::RemoveAll(tmp_.path());
    return ok ? 0 : 1;
  }

  // Opens the store here, appends from one thread, then from another, closes, and checks that a
  // reader sees everything. Reports on stderr.
  bool AppendFromTwoThreads() {
    bool good = false;
    std::vector<TestRecord> first, second;
    {
      auto s = Open();
      if (s.ok()) {
        std::thread t1([&] { first = AppendFlushed(**s, 1, 3); });
        t1.join();
        std::thread t2([&] { second = AppendFlushed(**s, 10, 3); });
        t2.join();
        good = (*s)->Close().ok();
      }
    }
    auto r = Open(false);
    good = good && r.ok() && HasAll(**r, AllIds(first)) && HasAll(**r, AllIds(second));
    std::fprintf(stderr, "%s\n", good ? "all records kept" : "records lost");
    return good;
  }

  // Appends one raw record that ends exactly where the store's first 8 MiB write buffer ends
  // (the buffer starts at offset 0 with the 32-byte pack header), so that its write is still
  // in flight with no buffer open; then reads it back at once. Reports on stderr.
  bool ReadBackAfterAFullBuffer() {
    ::alarm(10);  // a hang fails the test instead of stalling the suite
    auto s = Open();
    if (!s.ok()) return false;
    constexpr size_t kBuffer = 8 << 20;
    const size_t chunk = kBuffer - kPackHeaderSize - codec::RecordHeaderSize(1);
    const auto bytes = RandomBytes(chunk, 77);
    const codec::ChunkRef ref{(*s)->hasher().Hash(bytes), static_cast<uint32_t>(chunk)};
    const std::vector<absl::Span<const uint8_t>> parts = {bytes};
    std::vector<uint8_t> rec(codec::MaxRecordSize(1, chunk));
    auto n = codec::EncodeRecord(absl::MakeConstSpan(&ref, 1), parts, nullptr, absl::MakeSpan(rec));
    if (!n.ok() || kPackHeaderSize + *n != kBuffer) return false;
    rec.resize(*n);
    auto view = codec::ParseRecord(rec);
    if (!view.ok() || !(*s)->AppendRecord(rec, *view).ok()) return false;
    std::vector<std::vector<uint8_t>> got;
    absl::Status st = ReadRecordsFor(**s, std::vector<codec::ChunkId>{ref.id}, &got);
    const bool good = st.ok() && got.size() == 1 && got[0] == rec;
    std::fprintf(stderr, "%s: %s, %zu records\n", good ? "read back intact" : "read back wrong",
                 st.ToString().c_str(), got.size());
    // The store cannot be closed after a wrong read (its write completion was taken): leave.
    if (!good) ::_exit(ChildExit(false));
    return (*s)->Close().ok();
  }

  static std::vector<codec::ChunkId> AllIds(const std::vector<TestRecord>& recs) {
    std::vector<codec::ChunkId> ids;
    for (const auto& r : recs) ids.insert(ids.end(), r.ids.begin(), r.ids.end());
    return ids;
  }

  TempDir tmp_;
  std::string dir_;
};

TEST_P(LocalStoreTest, InitRefusesANonEmptyDirectory) {
  const std::string other = tmp_.Sub("other");
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  WriteFile(other + "/precious.txt", std::vector<uint8_t>{'h', 'i'});
  absl::Status st = LocalStore::Init(other, StoreInitOptions{});
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(absl::StrContains(st.message(), "not empty")) << st;
  EXPECT_EQ(ListFiles(other).size(), 1u);
  EXPECT_FALSE(FileExists(other + "/STORE"));
  // An existing store is not empty either.
  EXPECT_FALSE(LocalStore::Init(dir_, StoreInitOptions{}).ok());
}

TEST_P(LocalStoreTest, InitRejectsBadOptions) {
  StoreInitOptions bad_uuid;
  bad_uuid.uuid = "ABC";
  EXPECT_EQ(LocalStore::Init(tmp_.Sub("a"), bad_uuid).code(), absl::StatusCode::kInvalidArgument);
  StoreInitOptions bad_target;
  bad_target.record_target = 0;
  EXPECT_EQ(LocalStore::Init(tmp_.Sub("b"), bad_target).code(), absl::StatusCode::kInvalidArgument);
  StoreInitOptions bad_key;
  bad_key.id_key_hex = "xyz";
  EXPECT_EQ(LocalStore::Init(tmp_.Sub("c"), bad_key).code(), absl::StatusCode::kInvalidArgument);
  // None of them became a store.
  for (const char* d : {"a", "b", "c"}) {
    EXPECT_FALSE(FileExists(tmp_.Sub(d) + "/STORE")) << d;
  }
}

TEST_P(LocalStoreTest, OpenReportsWhatInitWrote) {
  const std::string d = tmp_.Sub("cdc");
  StoreInitOptions o;
  o.chunker = *codec::ChunkerSpec::Parse("cdc:2k:8k:64k");
  o.uuid = "abcdefabcdefabcdefabcdefabcdef01";
  o.zstd_level = 3;
  o.record_target = 128 << 10;
  ASSERT_TRUE(LocalStore::Init(d, o).ok());
  LocalStoreOptions lo;
  lo.writable = false;
  lo.queue.backend = GetParam();
  auto s = LocalStore::Open(d, lo);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->info().uuid, o.uuid);
  EXPECT_EQ((*s)->info().chunker.ToString(), "cdc:2048:8192:65536");
  EXPECT_EQ((*s)->info().zstd_level, 3);
  EXPECT_EQ((*s)->info().record_target, 128u << 10);
  EXPECT_EQ((*s)->info().key_fingerprint, 0u);
  EXPECT_EQ((*s)->location(), d);
  EXPECT_TRUE((*s)->open_report().torn_tails_cut.empty());
  EXPECT_EQ((*s)->index().size(), 0u);
}

TEST_P(LocalStoreTest, OpenOfANonStoreIsNotFoundWithAClearMessage) {
  const std::string empty = tmp_.Sub("empty");
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  for (const std::string& d : {empty, tmp_.Sub("missing")}) {
    for (bool writable : {false, true}) {
      LocalStoreOptions o;
      o.writable = writable;
      o.queue.backend = GetParam();
      auto s = LocalStore::Open(d, o);
      EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
      EXPECT_TRUE(absl::StrContains(s.status().message(), "not a chunkferry store")) << s.status();
      EXPECT_TRUE(absl::StrContains(s.status().message(), d)) << s.status();
    }
  }
  // Opening did not turn the directory into anything.
  EXPECT_TRUE(ListFiles(empty).empty());
}

TEST_P(LocalStoreTest, OpenRefusesADamagedDescriptor) {
  const std::string desc = dir_ + "/STORE";
  const std::vector<uint8_t> good = ReadFile(desc);
  WriteFile(desc, std::vector<uint8_t>{'x', 'y', 'z', '\n'});
  auto s = Open(false);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
  std::string text(good.begin(), good.end());
  const size_t pos = text.find("version=1");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 9, "version=9");
  WriteFile(desc, std::vector<uint8_t>(text.begin(), text.end()));
  s = Open(false);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
}

TEST_P(LocalStoreTest, SecondWritableOpenFailsEvenInTheSameProcess) {
  auto first = Open(true);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Open(true);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "another process")) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), absl::StrCat(::getpid())))
      << second.status();
  // The failed attempt did not take the lock away from the first writer.
  auto third = Open(true);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition) << third.status();
  // Readers need no lock.
  auto reader = Open(false);
  EXPECT_TRUE(reader.ok()) << reader.status();
  // The first writer still works.
  auto recs = AppendFlushed(**first, 1, 1);
  ASSERT_TRUE((*first)->Close().ok());
  auto again = Open(true);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(HasAll(**again, recs[0].ids));
}

TEST_P(LocalStoreTest, SecondWriterInAnotherProcessIsRefused) {
  auto first = Open(true);
  ASSERT_TRUE(first.ok()) << first.status();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    LocalStoreOptions o;
    o.queue.backend = io::Backend::kThreads;
    auto s = LocalStore::Open(dir_, o);
    const bool refused = !s.ok() && s.status().code() == absl::StatusCode::kFailedPrecondition &&
                         absl::StrContains(s.status().message(), "another process");
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child could open the store for writing";
}

TEST_P(LocalStoreTest, AppendedRecordsSurviveCloseAndReopen) {
  std::vector<TestRecord> recs;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    recs = AppendFlushed(**s, 1, 10);
    EXPECT_TRUE(HasAll(**s, AllIds(recs)));
    EXPECT_EQ((*s)->index().size(), 40u);
    ASSERT_TRUE((*s)->Close().ok());
    // A closed store refuses writes.
    auto more = MakeRecord((*s)->hasher(), 99);
    EXPECT_EQ((*s)->AppendRecord(more.bytes, more.view()).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  auto s = Open(false);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE((*s)->open_report().index_rebuilt) << (*s)->open_report().index_problem;
  EXPECT_TRUE(HasAll(**s, AllIds(recs)));
  EXPECT_TRUE(HasNone(**s, MakeRecord((*s)->hasher(), 500).ids));
  // The records read back are the bytes appended.
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(ReadRecordsFor(**s, AllIds(recs), &got).ok());
  ASSERT_EQ(got.size(), recs.size());  // each record once, though 4 ids named each
  EXPECT_EQ(AsByteStrings(got), AsByteStrings(recs));
  // An id the store lacks is NotFound.
  auto missing = MakeRecord((*s)->hasher(), 777).ids;
  EXPECT_EQ(ReadRecordsFor(**s, missing, &got).code(), absl::StatusCode::kNotFound);
  // A read-only store refuses writes.
  auto more = MakeRecord((*s)->hasher(), 99);
  EXPECT_EQ((*s)->AppendRecord(more.bytes, more.view()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*s)->Flush().code(), absl::StatusCode::kFailedPrecondition);
}

// Reads past the page cache (O_DIRECT where the file system allows it; buffered where it does
// not) give the same bytes, across packs, from a read-only store and from a writer whose last
// records are still in its write buffers.
TEST_P(LocalStoreTest, DirectReadsGiveTheBytesAppended) {
  std::vector<TestRecord> recs;
  {
    auto s = Open(true, 64 << 10);  // small packs: the records span several
    ASSERT_TRUE(s.ok()) << s.status();
    recs = AppendFlushed(**s, 1, 40);
    ASSERT_TRUE((*s)->Close().ok());
  }
  {
    auto s = Open(false, 64 << 10, nullptr, /*direct_reads=*/true);
    ASSERT_TRUE(s.ok()) << s.status();
    std::vector<std::vector<uint8_t>> got;
    ASSERT_TRUE(ReadRecordsFor(**s, AllIds(recs), &got).ok());
    EXPECT_EQ(AsByteStrings(got), AsByteStrings(recs));
    auto missing = MakeRecord((*s)->hasher(), 777).ids;
    EXPECT_EQ(ReadRecordsFor(**s, missing, &got).code(), absl::StatusCode::kNotFound);
  }
  auto s = Open(true, 64 << 10, nullptr, /*direct_reads=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  auto rec = MakeRecord((*s)->hasher(), 1000);
  ASSERT_TRUE((*s)->AppendRecord(rec.bytes, rec.view()).ok());
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(ReadRecordsFor(**s, rec.ids, &got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], rec.bytes);
  ASSERT_TRUE(ReadRecordsFor(**s, AllIds(recs), &got).ok());
  EXPECT_EQ(AsByteStrings(got), AsByteStrings(recs));
}

TEST_P(LocalStoreTest, RecordsAreReadableBeforeFlush) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  auto rec = MakeRecord((*s)->hasher(), 5);
  ASSERT_TRUE((*s)->AppendRecord(rec.bytes, rec.view()).ok());
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(ReadRecordsFor(**s, rec.ids, &got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], rec.bytes);
}

// PrefetchRecords is advice: locations the store does not have (an unknown pack, an offset past
// the end) change nothing, and the records read afterwards are the bytes appended.
TEST_P(LocalStoreTest, PrefetchRecordsIsOnlyAdvice) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  const std::vector<TestRecord> recs = AppendFlushed(**s, 1, 6);
  std::vector<RecordLocation> where = testing::IndexedRecords(**s);
  ASSERT_EQ(where.size(), recs.size());
  (*s)->PrefetchRecords({});
  std::vector<RecordLocation> odd = where;
  odd.push_back(RecordLocation{where[0].pack + 100, 4096, 64});
  odd.push_back(RecordLocation{where[0].pack, 4096, uint64_t{1} << 40});
  (*s)->PrefetchRecords(odd);
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(ReadRecordsFor(**s, AllIds(recs), &got).ok());
  EXPECT_EQ(AsByteStrings(got), AsByteStrings(recs));
  EXPECT_TRUE(HasAll(**s, AllIds(recs)));
}

TEST_P(LocalStoreTest, PacksRollOverAtTheTarget) {
  std::vector<TestRecord> recs;
  {
    auto s = Open(true, 64 << 10);
    ASSERT_TRUE(s.ok()) << s.status();
    recs = AppendFlushed(**s, 1, 12);  // 12 × ~16 KiB raw
    ASSERT_TRUE((*s)->Close().ok());
  }
  const auto packs = ::chunkferry::testing::PackSizes(dir_);
  EXPECT_GE(packs.size(), 2u);
  for (const auto& [name, size] : packs) EXPECT_LE(size, 64u << 10) << name;
  auto s = Open(false);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(HasAll(**s, AllIds(recs)));
}

TEST_P(LocalStoreTest, AFullMemtableIsSavedAsItGoesAndRebuildsSaveAsTheyScan) {
  LocalStoreOptions o;
  o.queue.backend = GetParam();
  o.index.memtable_entries = 40;
  std::set<std::tuple<uint64_t, uint64_t, uint32_t, uint64_t, uint32_t, uint16_t>> before;
  {
    auto s = LocalStore::Open(dir_, o);
    ASSERT_TRUE(s.ok()) << s.status();
    std::vector<TestRecord> recs;
    // No Flush asked for: appends alone make the packs durable and save when the memtable fills.
    for (uint64_t seed = 1; seed <= 30; ++seed) {
      recs.push_back(MakeRecord((*s)->hasher(), seed, 4, 1024));
      ASSERT_TRUE((*s)->AppendRecord(recs.back().bytes, recs.back().view()).ok());
      EXPECT_LT((*s)->index().unsaved(), 44u) << seed;
    }
    EXPECT_GE((*s)->index().run_count(), 1u);
    before = IndexSet(**s);
    EXPECT_EQ(before.size(), 120u);
    ASSERT_TRUE((*s)->Close().ok());
  }
  for (bool rebuild : {false, true}) {
    SCOPED_TRACE(rebuild);
    if (rebuild) {
      ASSERT_EQ(::unlink((dir_ + "/index/STATE").c_str()), 0);
    }
    auto s = LocalStore::Open(dir_, o);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ((*s)->open_report().index_rebuilt, rebuild);
    EXPECT_EQ(IndexSet(**s), before);
    EXPECT_TRUE((*s)->index().CheckRuns().ok());
    EXPECT_LT((*s)->index().unsaved(), 44u);  // the scan saved as it went
    ASSERT_TRUE((*s)->Close().ok());
  }
}

TEST_P(LocalStoreTest, MissingIndexIsRebuiltWithTheSameChunks) {
  std::set<std::tuple<uint64_t, uint64_t, uint32_t, uint64_t, uint32_t, uint16_t>> before;
  {
    auto s = Open(true, 64 << 10);
    ASSERT_TRUE(s.ok()) << s.status();
    AppendFlushed(**s, 1, 10);
    before = IndexSet(**s);
    ASSERT_TRUE((*s)->Close().ok());
  }
  ASSERT_TRUE(FileExists(dir_ + "/index/STATE"));
  ASSERT_EQ(::unlink((dir_ + "/index/STATE").c_str()), 0);
  for (bool writable : {false, true}) {
    auto s = Open(writable);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE((*s)->open_report().index_rebuilt);
    EXPECT_FALSE((*s)->open_report().index_problem.empty());
    EXPECT_TRUE((*s)->open_report().torn_tails_cut.empty());
    EXPECT_EQ(IndexSet(**s), before);
    ASSERT_TRUE((*s)->Close().ok());
  }
  // The writable open saved the index again.
  auto s = Open(false);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE((*s)->open_report().index_rebuilt) << (*s)->open_report().index_problem;
  EXPECT_EQ(IndexSet(**s), before);
}

TEST_P(LocalStoreTest, DamagedIndexIsRebuilt) {
  std::set<std::tuple<uint64_t, uint64_t, uint32_t, uint64_t, uint32_t, uint16_t>> before;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    AppendFlushed(**s, 1, 6);
    before = IndexSet(**s);
    ASSERT_TRUE((*s)->Close().ok());
  }
  const std::string idx = dir_ + "/index/STATE";
  const std::vector<uint8_t> good = ReadFile(idx);
  ASSERT_GT(good.size(), 40u);
  std::vector<std::vector<uint8_t>> damages;
  damages.push_back(RandomBytes(good.size(), 3));        // garbage
  damages.push_back({});                                 // empty
  damages.push_back({good.begin(), good.begin() + 30});  // cut short
  damages.push_back(good);
  damages.back()[good.size() / 2] ^= 0x10;  // one flipped bit
  damages.push_back(good);
  damages.back()[4] = 9;  // a version this build does not know
  for (size_t i = 0; i < damages.size(); ++i) {
    WriteFile(idx, damages[i]);
    auto s = Open(false);
    ASSERT_TRUE(s.ok()) << i << ": " << s.status();
    EXPECT_TRUE((*s)->open_report().index_rebuilt) << i;
    EXPECT_FALSE((*s)->open_report().index_problem.empty()) << i;
    EXPECT_EQ(IndexSet(**s), before) << i;
  }
}

// A crafted run whose entry count makes `entries * 24` wrap around to the real size of the file
// (and a state that agrees) must read as damaged, not be mapped and searched past its end.
TEST_P(LocalStoreTest, IndexRunWithAnOverflowingEntryCountIsRebuiltNotACrash) {
  std::set<std::tuple<uint64_t, uint64_t, uint32_t, uint64_t, uint32_t, uint16_t>> before;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    AppendFlushed(**s, 1, 2);
    before = IndexSet(**s);
    ASSERT_TRUE((*s)->Close().ok());
  }
  // 24 * E ≡ 8 (mod 2^64) for E = the inverse of 3 modulo 2^61: with one bucket, header (64),
  // filter (64) and bucket table (16), a file of 152 bytes "fits".
  uint64_t inv3 = 1;
  for (int i = 0; i < 7; ++i) inv3 *= 2 - 3 * inv3;  // Newton: inverse modulo 2^64
  const uint64_t entries = inv3 & ((1ull << 61) - 1);
  ASSERT_EQ(entries * 24, 8u);
  std::string run = "CFRN";
  PutU16(&run, 1);
  PutU16(&run, 24);
  PutU32(&run, 0);
  PutU64(&run, entries);
  PutU64(&run, 1);   // buckets
  PutU64(&run, 77);  // run id
  run.append(20, '\0');
  PutU64(&run, codec::Checksum64(AsBytes(run)));
  run.append(152 - run.size(), '\xff');
  WriteFile(dir_ + "/index/000000000000004d.run", AsBytes(run));
  std::string state = "CFIS";
  PutU16(&state, 1);
  PutU16(&state, 0);
  PutU64(&state, 78);  // next run id
  PutU64(&state, 0);   // records
  PutU32(&state, 1);   // runs
  PutU32(&state, 0);   // packs
  PutU64(&state, 77);
  PutU64(&state, entries);
  PutU64(&state, codec::Checksum64(AsBytes(state)));
  WriteFile(dir_ + "/index/STATE", AsBytes(state));
  // In a child, so that a crash fails this test only.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto s = Open(false);
        const bool good = s.ok() && (*s)->open_report().index_rebuilt && IndexSet(**s) == before;
        ::_exit(ChildExit(good));
      },
      ::testing::ExitedWithCode(0), "")
      << "BUG: IndexRun::Open trusts an entry count whose size check overflowed";
}

TEST_P(LocalStoreTest, TornTailIsCutOnWritableReopen) {
  std::vector<TestRecord> recs;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    recs = AppendFlushed(**s, 1, 5);
    ASSERT_TRUE((*s)->Close().ok());
  }
  const std::string pack = PackPath(dir_, 1);
  const int64_t valid_end = FileSize(pack);
  ASSERT_GT(valid_end, 0);
  // Half of a valid record (header and table intact, payload cut), as a crash leaves it.
  auto half = MakeRecord(codec::ChunkHasher(), 42);
  for (size_t cut : {size_t{10}, size_t{200}, half.bytes.size() - 1}) {
    AppendToFile(pack, absl::MakeConstSpan(half.bytes.data(), cut));
    {
      // A reader sees the valid part and leaves the file alone.
      auto r = Open(false);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_FALSE(r.value()->open_report().torn_tails_cut.empty()) << cut;
      EXPECT_TRUE(HasAll(**r, AllIds(recs)));
      EXPECT_TRUE(HasNone(**r, half.ids));
      EXPECT_EQ(FileSize(pack), valid_end + static_cast<int64_t>(cut));
    }
    auto s = Open(true);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_EQ((*s)->open_report().torn_tails_cut.size(), 1u) << cut;
    EXPECT_TRUE(absl::StrContains((*s)->open_report().torn_tails_cut[0],
                                  absl::StrCat(PackFileName(1), ":", valid_end)))
        << (*s)->open_report().torn_tails_cut[0];
    EXPECT_TRUE((*s)->open_report().damaged_regions.empty());
    EXPECT_EQ(FileSize(pack), valid_end) << cut;
    EXPECT_TRUE(HasAll(**s, AllIds(recs)));
    EXPECT_TRUE(HasNone(**s, half.ids));
    ASSERT_TRUE((*s)->Close().ok());
  }
  // The store still works: append more, reopen, everything is there, no tail to cut.
  std::vector<TestRecord> more;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    more = AppendFlushed(**s, 100, 3);
    ASSERT_TRUE((*s)->Close().ok());
  }
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->open_report().torn_tails_cut.empty());
  EXPECT_TRUE(HasAll(**s, AllIds(recs)));
  EXPECT_TRUE(HasAll(**s, AllIds(more)));
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(ReadRecordsFor(**s, more[2].ids, &got).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], more[2].bytes);
}

// Bit rot in the chunk count of one of the last records makes its header claim a chunk table
// longer than what is left of the pack. That is damage, not a crash: the intact, committed
// records after it must survive a writable open.
TEST_P(LocalStoreTest, DamagedHeaderNearTheEndIsNotMistakenForATornTail) {
  std::vector<TestRecord> recs;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      recs.push_back(MakeRecord((*s)->hasher(), seed, 2, 1024));
      ASSERT_TRUE((*s)->AppendRecord(recs.back().bytes, recs.back().view()).ok());
    }
    ASSERT_TRUE((*s)->Flush().ok());
    ASSERT_TRUE((*s)->Close().ok());
  }
  const std::string pack = PackPath(dir_, 1);
  const int64_t size = FileSize(pack);
  // Record 5 of 6 (about 2 KiB each): chunk count 2 becomes 2 ^ 0x100 = 258, a table of 5 KiB.
  uint64_t offset = kPackHeaderSize;
  for (size_t i = 0; i < 4; ++i) offset += recs[i].bytes.size();
  ASSERT_EQ(codec::PeekRecordSize(absl::MakeConstSpan(ReadFile(pack)).subspan(offset)).value(),
            recs[4].bytes.size());
  FlipByte(pack, offset + 7, 0x01);  // high byte of the u16 chunk count
  ASSERT_EQ(::unlink((dir_ + "/index/STATE").c_str()), 0);
  auto s = Open(true);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(FileSize(pack), size) << "a writable open cut intact, committed records";
  EXPECT_TRUE((*s)->open_report().torn_tails_cut.empty()) << (*s)->open_report().torn_tails_cut[0];
  EXPECT_EQ((*s)->open_report().damaged_regions.size(), 1u);
  EXPECT_TRUE(HasAll(**s, recs[5].ids)) << "the last record, intact, was lost";
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(HasAll(**s, recs[i].ids)) << i;
  EXPECT_TRUE(HasNone(**s, recs[4].ids));
}

// Recovery checks payloads: a record past what the index covers whose header is intact but whose
// payload is not is never indexed (its chunks count as absent, so the next sync sends them). With
// intact records after it that is damage, reported and left in place; at the end it is a torn tail.
TEST_P(LocalStoreTest, RecoveryIndexesNoRecordWithADamagedPayload) {
  std::vector<TestRecord> recs;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    recs = AppendFlushed(**s, 1, 6);
    ASSERT_TRUE((*s)->Close().ok());
  }
  const std::string pack = PackPath(dir_, 1);
  const int64_t size = FileSize(pack);
  uint64_t offset = kPackHeaderSize;
  for (size_t i = 0; i < 4; ++i) offset += recs[i].bytes.size();
  FlipByte(pack, offset + recs[4].bytes.size() - 5, 0x10);  // record 5's payload
  testing::RemoveAll(dir_ + "/index");
  {
    auto s = Open(true);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(FileSize(pack), size);
    EXPECT_TRUE((*s)->open_report().torn_tails_cut.empty());
    ASSERT_EQ((*s)->open_report().damaged_regions.size(), 1u);
    EXPECT_EQ((*s)->open_report().damaged_regions[0],
              absl::StrCat(PackFileName(1), ":", offset, "..", offset + recs[4].bytes.size()));
    EXPECT_TRUE(HasNone(**s, recs[4].ids));
    for (size_t i : {0, 1, 2, 3, 5}) EXPECT_TRUE(HasAll(**s, recs[i].ids)) << i;
    ASSERT_TRUE((*s)->Close().ok());
  }
  // With the last record damaged the same way, nothing intact follows record 5: from there on it
  // is a torn tail, cut (a crash leaves exactly this).
  FlipByte(pack, size - 5, 0x10);
  testing::RemoveAll(dir_ + "/index");
  auto s = Open(true);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(FileSize(pack), static_cast<int64_t>(offset));
  EXPECT_EQ((*s)->open_report().torn_tails_cut.size(), 1u);
  EXPECT_TRUE((*s)->open_report().damaged_regions.empty());
  EXPECT_TRUE(HasNone(**s, recs[5].ids));
  EXPECT_TRUE(HasNone(**s, recs[4].ids));
}

TEST_P(LocalStoreTest, RollbackForgetsUnflushedAppendsAndTruncatesThePack) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  auto kept = AppendFlushed(**s, 1, 3);
  const int64_t durable = FileSize(PackPath(dir_, 1));
  std::vector<TestRecord> lost;
  for (uint64_t seed = 50; seed < 54; ++seed) {
    lost.push_back(MakeRecord((*s)->hasher(), seed));
    ASSERT_TRUE((*s)->AppendRecord(lost.back().bytes, lost.back().view()).ok());
  }
  EXPECT_TRUE(HasAll(**s, AllIds(lost)));
  ASSERT_TRUE((*s)->Rollback().ok());
  EXPECT_TRUE(HasNone(**s, AllIds(lost)));
  EXPECT_TRUE(HasAll(**s, AllIds(kept)));
  EXPECT_EQ(FileSize(PackPath(dir_, 1)), durable);
  // Still usable after the rollback, and what was rolled back can be appended again.
  ASSERT_TRUE((*s)->AppendRecord(lost[0].bytes, lost[0].view()).ok());
  ASSERT_TRUE((*s)->Flush().ok());
  ASSERT_TRUE((*s)->Close().ok());
  auto r = Open(false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->open_report().torn_tails_cut.empty());
  EXPECT_TRUE(HasAll(**r, AllIds(kept)));
  EXPECT_TRUE(HasAll(**r, lost[0].ids));
  EXPECT_TRUE(HasNone(**r, lost[1].ids));
}

TEST_P(LocalStoreTest, RollbackRemovesAPackCreatedWithNothingDurable) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  auto rec = MakeRecord((*s)->hasher(), 1);
  ASSERT_TRUE((*s)->AppendRecord(rec.bytes, rec.view()).ok());
  ASSERT_TRUE(FileExists(PackPath(dir_, 1)));
  ASSERT_TRUE((*s)->Rollback().ok());
  EXPECT_FALSE(FileExists(PackPath(dir_, 1)));
  EXPECT_TRUE(HasNone(**s, rec.ids));
  ASSERT_TRUE((*s)->Close().ok());
  EXPECT_TRUE(::chunkferry::testing::PackSizes(dir_).empty());
}

TEST_P(LocalStoreTest, AppendRecordsChecksBeforeAcceptingAny) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  auto good = MakeRecord((*s)->hasher(), 1, 4, 4096, true);
  auto bad = MakeRecord((*s)->hasher(), 2, 4, 4096, true);
  bad.bytes[bad.bytes.size() - 3] ^= 0x40;  // a payload byte
  for (VerifyMode mode : {VerifyMode::kFull, VerifyMode::kChecksum}) {
    AppendStats stats;
    const std::vector<absl::Span<const uint8_t>> batch = {good.bytes, bad.bytes};
    absl::Status st = (*s)->AppendRecords(batch, mode, &stats);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "2 of 2")) << st;
    EXPECT_EQ(stats.records_appended, 0u);
    EXPECT_TRUE(HasNone(**s, good.ids));
  }
  {
    // Trailing bytes after a record are refused too.
    std::vector<uint8_t> longer = good.bytes;
    longer.push_back(0);
    const std::vector<absl::Span<const uint8_t>> batch = {longer};
    EXPECT_EQ((*s)->AppendRecords(batch, VerifyMode::kFull, nullptr).code(),
              absl::StatusCode::kDataLoss);
  }
  {
    // A record whose ids do not match its chunks passes the checksum but not full verification.
    auto other = MakeRecord(codec::ChunkHasher(), 3, 4, 4096, true);
    const codec::ChunkHasher keyed =
        *codec::ChunkHasher::Make(AsBytes("0123456789abcdef0123456789abcdef"));
    auto lying = MakeRecord(keyed, 3, 4, 4096, true);
    ASSERT_NE(lying.ids, other.ids);
    const std::vector<absl::Span<const uint8_t>> batch = {lying.bytes};
    EXPECT_EQ((*s)->AppendRecords(batch, VerifyMode::kFull, nullptr).code(),
              absl::StatusCode::kDataLoss);
    EXPECT_TRUE(HasNone(**s, lying.ids));
  }
  AppendStats stats;
  const std::vector<absl::Span<const uint8_t>> batch = {good.bytes, good.bytes};
  ASSERT_TRUE((*s)->AppendRecords(batch, VerifyMode::kFull, &stats).ok());
  EXPECT_EQ(stats.records_received, 2u);
  EXPECT_EQ(stats.records_appended, 1u);  // the second held nothing new
  EXPECT_EQ(stats.chunks_added, 4u);
  EXPECT_EQ(stats.bytes_appended, good.bytes.size());
  EXPECT_TRUE(HasAll(**s, good.ids));
}

TEST_P(LocalStoreTest, PutManifestNeedsDurableChunksAndPutGroupNeedsManifests) {
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  auto durable = AppendFlushed(**s, 1, 1)[0];
  auto pending = MakeRecord((*s)->hasher(), 2);
  ASSERT_TRUE((*s)->AppendRecord(pending.bytes, pending.view()).ok());

  using Entries = ::chunkferry::testing::VectorManifestSource;
  VolumeBackupMeta meta = ::chunkferry::testing::NewMeta(NewUuid());
  auto entries_for = [&](const TestRecord& r) {
    std::vector<ManifestEntry> e;
    for (const auto& id : r.ids) e.push_back(ManifestEntry{4096, false, id});
    e.push_back(ManifestEntry{8192, true, {}});
    return e;
  };
  meta.size = 4 * 4096 + 8192;
  {
    Entries e(meta, entries_for(pending));
    absl::Status st = (*s)->PutManifest(meta, e);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "durable")) << st;
  }
  {
    Entries e(meta, entries_for(MakeRecord((*s)->hasher(), 3)));
    absl::Status st = (*s)->PutManifest(meta, e);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  }
  EXPECT_FALSE(FileExists((*s)->ManifestPath(meta.uuid)));
  EXPECT_TRUE(ListFiles(dir_ + "/tmp").empty());
  GroupRecord g;
  g.group_uuid = meta.group_uuid;
  g.volume_uuids = {meta.uuid};
  EXPECT_EQ((*s)->PutGroup(g).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*s)->GetGroup(g.group_uuid).status().code(), absl::StatusCode::kNotFound);
  {
    Entries e(meta, entries_for(durable));
    absl::Status st = (*s)->PutManifest(meta, e);
    ASSERT_TRUE(st.ok()) << st;
  }
  ASSERT_TRUE((*s)->PutGroup(g).ok());
  auto got = (*s)->GetGroup(g.group_uuid);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->volume_uuids, g.volume_uuids);
  auto groups = (*s)->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(*groups, std::vector<std::string>{g.group_uuid});
  auto manifests = (*s)->ListManifests();
  ASSERT_TRUE(manifests.ok());
  EXPECT_EQ(*manifests, std::vector<std::string>{meta.uuid});
  auto m = (*s)->OpenManifest(meta.uuid);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->meta().size, meta.size);
  EXPECT_EQ((*s)->OpenManifest(NewUuid()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*s)->OpenManifest("../../etc/passwd").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*s)->GetGroup("../x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(LocalStoreTest, EmptyPackLeftByACrashIsIgnoredAndRemoved) {
  std::vector<TestRecord> recs;
  {
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    recs = AppendFlushed(**s, 1, 2);
    ASSERT_TRUE((*s)->Close().ok());
  }
  // A pack created just before a crash: its header never reached the disk.
  WriteFile(PackPath(dir_, 2), std::vector<uint8_t>(7, 0));
  {
    auto r = Open(false);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(HasAll(**r, AllIds(recs)));
    EXPECT_TRUE(FileExists(PackPath(dir_, 2)));  // readers change nothing
  }
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(FileExists(PackPath(dir_, 2)));
  EXPECT_TRUE(HasAll(**s, AllIds(recs)));
  auto more = AppendFlushed(**s, 10, 2);
  ASSERT_TRUE((*s)->Close().ok());
  auto r = Open(false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(HasAll(**r, AllIds(more)));
}

// Store says "one thread drives a Store at a time": a store opened on one thread and then used
// by another (one after the other, never at once) must work on every backend. Run in a child
// process: the failure seen with io_uring ends in an abort when the store is destroyed.
TEST_P(LocalStoreTest, StoreCanBeDrivenByAnotherThreadInTurn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(::_exit(ChildExit(AppendFromTwoThreads())), ::testing::ExitedWithCode(0),
              "all records kept")
      << "BUG: a LocalStore used by a second thread (io_uring queue bound to the first) loses "
         "its appends, and destroying it aborts";
}

// Random appends (records from a few bytes to more than a write buffer; one at a time, and in
// batches received with duplicates and now and then a damaged record), flushes, rollbacks, reads
// and reopens, checked against a model of what must be durable. Pack files must hold exactly the
// header and the durable records: no padding, no lost or duplicated bytes.
TEST_P(LocalStoreTest, RandomOperationsMatchAModel) {
  std::mt19937_64 rng(GetParam() == io::Backend::kUring ? 1 : 2);
  const uint64_t kPackTarget = 24 << 20;
  WorkerPool pool(1);
  auto s = Open(true, kPackTarget, &pool);
  ASSERT_TRUE(s.ok()) << s.status();
  std::unique_ptr<LocalStore> store = *std::move(s);
  std::vector<TestRecord> durable, pending;
  uint64_t seed = 1000;
  codec::Compressor compressor(1);
  auto make = [&](bool may_be_big = true) {
    // 1..8 chunks of 1 byte .. 64 KiB; now and then one chunk of 9 MiB (more than a buffer).
    TestRecord r;
    std::vector<std::vector<uint8_t>> chunks;
    const bool big = may_be_big && rng() % 25 == 0;
    const size_t count = big ? 1 : 1 + rng() % 8;
    for (size_t i = 0; i < count; ++i) {
      const size_t len = big ? (9 << 20) + rng() % 4096 : 1 + rng() % (64 << 10);
      chunks.push_back(rng() % 2 ? RandomBytes(len, ++seed) : TextBytes(len, ++seed));
    }
    std::vector<codec::ChunkRef> refs;
    std::vector<absl::Span<const uint8_t>> spans;
    size_t raw = 0;
    for (const auto& c : chunks) {
      refs.push_back(codec::ChunkRef{store->hasher().Hash(c), static_cast<uint32_t>(c.size())});
      r.ids.push_back(refs.back().id);
      spans.push_back(c);
      raw += c.size();
    }
    r.bytes.resize(codec::MaxRecordSize(count, raw));
    auto n = codec::EncodeRecord(refs, spans, rng() % 3 ? &compressor : nullptr,
                                 absl::MakeSpan(r.bytes));
    EXPECT_TRUE(n.ok()) << n.status();
    r.bytes.resize(n.ok() ? *n : 0);
    return r;
  };
  auto read_back = [&](LocalStore& st, const TestRecord& r) {
    std::vector<std::vector<uint8_t>> got;
    absl::Status rs = ReadRecordsFor(st, r.ids, &got);
    return rs.ok() && got.size() == 1 && got[0] == r.bytes;
  };
  auto expected_pack_bytes = [&]() {
    uint64_t total = 0;
    for (const auto& r : durable) total += r.bytes.size();
    return total;
  };
  auto actual_record_bytes = [&]() {
    const auto packs = ::chunkferry::testing::PackSizes(dir_);
    uint64_t total = 0;
    for (const auto& [name, size] : packs) total += size - kPackHeaderSize;
    return total;
  };
  for (int op = 0; op < 200; ++op) {
    SCOPED_TRACE(op);
    const uint64_t dice = rng() % 100;
    if (dice < 40) {
      pending.push_back(make());
      auto loc = store->AppendRecord(pending.back().bytes, pending.back().view());
      ASSERT_TRUE(loc.ok()) << loc.status();
      EXPECT_LE(loc->offset + loc->size, kPackTarget);
    } else if (dice < 60) {
      // A received batch: new records, a copy of one (appended once), maybe one held already.
      // A damaged record fails the batch: nothing of the part holding it is appended, only
      // parts before it (a batch is one part unless it reaches the end of a pack).
      const bool damaged = rng() % 4 == 0;
      std::vector<TestRecord> fresh;
      const size_t count = 1 + rng() % 4;
      for (size_t i = 0; i < count; ++i) fresh.push_back(make(!damaged));
      std::vector<absl::Span<const uint8_t>> batch;
      for (const auto& r : fresh) batch.push_back(r.bytes);
      batch.push_back(fresh[rng() % count].bytes);
      if (!pending.empty() && rng() % 2) batch.push_back(pending[rng() % pending.size()].bytes);
      std::vector<uint8_t> bad;
      if (damaged) {
        bad = fresh[rng() % count].bytes;
        bad[bad.size() - 1 - rng() % 16] ^= 0x20;  // a payload byte
        batch.insert(batch.begin() + static_cast<ptrdiff_t>(rng() % (batch.size() + 1)), bad);
      }
      std::shuffle(batch.begin(), batch.end(), rng);
      AppendStats stats;
      const absl::Status st = store->AppendRecords(batch, VerifyMode::kFull, &stats);
      if (damaged) {
        ASSERT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
        size_t kept = 0;
        for (const auto& r : fresh) {
          if (HasNone(*store, r.ids)) continue;
          ASSERT_TRUE(HasAll(*store, r.ids));
          pending.push_back(r);
          ++kept;
        }
        EXPECT_EQ(stats.records_appended, kept);
      } else {
        ASSERT_TRUE(st.ok()) << st;
        EXPECT_EQ(stats.records_received, batch.size());
        EXPECT_EQ(stats.records_appended, count);
        for (const auto& r : fresh) ASSERT_TRUE(HasAll(*store, r.ids));
        pending.insert(pending.end(), fresh.begin(), fresh.end());
      }
    } else if (dice < 75) {
      ASSERT_TRUE(store->Flush().ok());
      durable.insert(durable.end(), pending.begin(), pending.end());
      pending.clear();
      ASSERT_EQ(actual_record_bytes(), expected_pack_bytes()) << "pack bytes after a flush";
    } else if (dice < 85) {
      ASSERT_TRUE(store->Rollback().ok());
      for (const auto& r : pending) ASSERT_TRUE(HasNone(*store, r.ids));
      pending.clear();
      ASSERT_EQ(actual_record_bytes(), expected_pack_bytes()) << "pack bytes after a rollback";
    } else if (dice < 95) {
      // Read some records back, durable and pending alike.
      for (int k = 0; k < 3; ++k) {
        if (!durable.empty()) {
          ASSERT_TRUE(read_back(*store, durable[rng() % durable.size()])) << "durable record";
        }
        if (!pending.empty()) {
          ASSERT_TRUE(read_back(*store, pending[rng() % pending.size()])) << "pending record";
        }
      }
    } else {
      ASSERT_TRUE(store->Close().ok());
      durable.insert(durable.end(), pending.begin(), pending.end());
      pending.clear();
      ASSERT_EQ(actual_record_bytes(), expected_pack_bytes()) << "pack bytes after a close";
      store.reset();
      auto reopened = Open(true, kPackTarget);
      ASSERT_TRUE(reopened.ok()) << reopened.status();
      store = *std::move(reopened);
      EXPECT_TRUE(store->open_report().torn_tails_cut.empty());
      EXPECT_TRUE(store->open_report().damaged_regions.empty());
    }
  }
  ASSERT_TRUE(store->Close().ok());
  durable.insert(durable.end(), pending.begin(), pending.end());
  store.reset();
  EXPECT_EQ(actual_record_bytes(), expected_pack_bytes());
  // From the saved index, and rebuilt from the packs: every record intact and nothing else.
  for (bool rebuild : {false, true}) {
    SCOPED_TRACE(rebuild);
    if (rebuild) {
      ASSERT_EQ(::unlink((dir_ + "/index/STATE").c_str()), 0);
    }
    auto r = Open(false);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.value()->open_report().index_rebuilt, rebuild);
    EXPECT_TRUE(r.value()->open_report().torn_tails_cut.empty());
    EXPECT_TRUE(r.value()->open_report().damaged_regions.empty());
    size_t chunks = 0;
    for (const auto& rec : durable) {
      ASSERT_TRUE(read_back(**r, rec));
      chunks += rec.ids.size();
    }
    EXPECT_EQ(r.value()->index().size(), chunks);
  }
}

// A record that ends exactly at the end of a write buffer leaves that buffer's write in flight
// and no buffer open. Reading right then must still wait for the write (and must not take the
// write's completion for one of its reads). In a child process: the failure can be a crash.
TEST_P(LocalStoreTest, ReadRightAfterARecordThatFillsAWriteBuffer) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(::_exit(ChildExit(ReadBackAfterAFullBuffer())), ::testing::ExitedWithCode(0),
              "read back intact");
}

INSTANTIATE_TEST_SUITE_P(Backends, LocalStoreTest, ::testing::ValuesIn(testing::AllBackends()),
                         testing::BackendParamName);

}  // namespace
}  // namespace chunkferry::engine
