// Helpers shared by the libFuzzer targets of tests/fuzz/: a scratch directory per process,
// whole-file writes, invariant checks that stop the fuzzer, and the checksum fix-ups that let
// mutated inputs reach the structure parsing behind each format's checksum.
//
// Each target runs every input as given (what a peer or a damaged disk can hand the parser) and,
// where the format carries checksums, once more with them recomputed (FixRecords,
// FixTailChecksum...): a random mutation almost never keeps an XXH3 checksum right, so without
// the fix-up the fuzzer would only ever exercise "checksum mismatch".
//
// Not thread-safe: libFuzzer calls a target from one thread.
#ifndef CHUNKFERRY_TESTS_FUZZ_FUZZ_UTIL_H_
#define CHUNKFERRY_TESTS_FUZZ_FUZZ_UTIL_H_

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/chunk_id.h"
#include "codec/record.h"
#include "engine/format/byte_io.h"
#include "engine/format/manifest.h"
#include "engine/wire/wire_messages.h"

namespace chunkferry::fuzz {

// Stops the run with a message when an invariant does not hold: a real bug, never a parse
// failure. __builtin_trap makes libFuzzer save the input as a crash.
#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "FUZZ_CHECK failed: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                               \
    }                                                                                 \
  } while (0)

// Prints what a target's parsers answered when CHUNKFERRY_FUZZ_VERBOSE is set (to see why a
// seed or a crash input is refused where it is): Note("open", status).
inline bool Verbose() {
  static const bool verbose = getenv("CHUNKFERRY_FUZZ_VERBOSE") != nullptr;
  return verbose;
}
template <typename S>
void Note(const char* what, const S& status) {
  if (Verbose()) fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
}

// The process's scratch directory: made at the first call under $CHUNKFERRY_FUZZ_TMPDIR (which
// tools/fuzz.sh sets, and removes afterwards: a crashing process leaves its folder behind), else
// /dev/shm (tmpfs: no disk I/O), $TMPDIR or /tmp; removed with its contents when the process
// exits normally.
inline const std::string& ScratchDir() {
  static const std::string dir = [] {
    std::string made;
    const char* const bases[] = {getenv("CHUNKFERRY_FUZZ_TMPDIR"), "/dev/shm", getenv("TMPDIR"),
                                 "/tmp"};
    for (const char* base : bases) {
      if (base == nullptr || *base == '\0') continue;
      std::string tmpl = std::string(base) + "/chunkferry-fuzz-XXXXXX";
      if (mkdtemp(tmpl.data()) != nullptr) {
        made = tmpl;
        break;
      }
    }
    if (made.empty()) {
      perror("mkdtemp");
      abort();
    }
    static std::string to_remove;
    to_remove = made;
    atexit([] {
      nftw(
          to_remove.c_str(),
          [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
          FTW_DEPTH | FTW_PHYS);
    });
    return made;
  }();
  return dir;
}

// Creates (or truncates) `path` and writes `bytes` to it, with `mode`. Aborts on failure: the
// harness, not the code under test, is broken then.
inline void WriteFile(const std::string& path, absl::Span<const uint8_t> bytes, int mode = 0644) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    perror(path.c_str());
    abort();
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      perror(path.c_str());
      abort();
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}
inline void WriteFile(const std::string& path, absl::string_view bytes, int mode = 0644) {
  WriteFile(path, engine::AsBytes(bytes), mode);
}

inline std::vector<uint8_t> Bytes(const uint8_t* data, size_t size) {
  return std::vector<uint8_t>(data, data + size);
}
inline absl::string_view Chars(absl::Span<const uint8_t> b) {
  return absl::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

// Splits an input into parts at kSplitMarker, so one target can take several files from one
// input. Seeds put the marker between their parts.
inline constexpr absl::string_view kSplitMarker = "\n--8<--\n";
inline std::vector<absl::Span<const uint8_t>> SplitInput(absl::Span<const uint8_t> data) {
  std::vector<absl::Span<const uint8_t>> parts;
  const absl::string_view s = Chars(data);
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(kSplitMarker, start);
    if (at == absl::string_view::npos) break;
    parts.push_back(data.subspan(start, at - start));
    start = at + kSplitMarker.size();
  }
  parts.push_back(data.subspan(start));
  return parts;
}

// Sets the last 8 bytes to XXH3-64 of all before them: the trailer of group records, index
// STATE files, manifests and manifest deltas. Returns false (changing nothing) when shorter.
inline bool FixTailChecksum(absl::Span<uint8_t> bytes) {
  if (bytes.size() < 8) return false;
  const size_t body = bytes.size() - 8;
  engine::StoreU64(bytes.data() + body, codec::Checksum64(bytes.first(body)));
  return true;
}

// XXH3-64 of a record's header bytes [0, 24) followed by its chunk table, as codec/record.cc
// computes it.
inline uint64_t RecordHeaderChecksum(const uint8_t* header, size_t chunk_count) {
  std::vector<uint8_t> b(header, header + 24);
  b.insert(b.end(), header + codec::kRecordFixedHeaderSize,
           header + codec::RecordHeaderSize(chunk_count));
  return codec::Checksum64(b);
}

// Makes the record that starts at p (whose header and table are there, `avail` bytes in all)
// consistent where it can: raw_length = the sum of the table's lengths when none is zero (and
// stored_length = raw_length for a raw record), then the payload checksum when the payload is
// there, then the header checksum. Returns the record's size (0 when there is no record header
// to fix: bad magic or version, or the table is cut).
inline size_t FixRecordAt(uint8_t* p, size_t avail) {
  if (avail < codec::kRecordFixedHeaderSize || std::memcmp(p, codec::kRecordMagic, 4) != 0 ||
      p[4] != codec::kRecordVersion) {
    return 0;
  }
  const uint16_t count = engine::LoadU16(p + 6);
  if (count == 0 || count > codec::kMaxRecordChunks) return 0;
  const size_t header_size = codec::RecordHeaderSize(count);
  if (avail < header_size) return 0;
  uint64_t sum = 0;
  bool zero = false;
  for (size_t i = 0; i < count; ++i) {
    const uint32_t len = engine::LoadU32(p + codec::kRecordFixedHeaderSize +
                                         i * codec::kRecordChunkEntrySize + codec::kChunkIdSize);
    zero |= len == 0;
    sum += len;
  }
  if (!zero && sum <= codec::kMaxRecordRawLength) {
    engine::StoreU32(p + 8, static_cast<uint32_t>(sum));
    if (p[5] == static_cast<uint8_t>(codec::Codec::kRaw)) {
      engine::StoreU32(p + 12, static_cast<uint32_t>(sum));
    }
  }
  const uint32_t stored = engine::LoadU32(p + 12);
  const size_t size = header_size + stored;
  if (avail >= size) {
    engine::StoreU64(p + 16, codec::Checksum64(absl::MakeConstSpan(p + header_size, stored)));
  }
  engine::StoreU64(p + 24, RecordHeaderChecksum(p, count));
  return size;
}

// Fixes every record of a run of records back to back (an APPEND or RECORDS payload, a pack's
// body): from `bytes`' start, fixes the record there and steps over it; where no record header
// is, moves on to the next "CFRC".
inline void FixRecords(absl::Span<uint8_t> bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t size = FixRecordAt(bytes.data() + pos, bytes.size() - pos);
    if (size != 0) {
      pos += size;
      continue;
    }
    const absl::string_view s = Chars(bytes);
    const size_t next = s.find("CFRC", pos + 1);
    if (next == absl::string_view::npos) break;
    pos = next;
  }
}

// Index runs (engine/local/index_run.h): 64-byte header, 64-byte filter block per bucket,
// buckets + 1 starts, then 24-byte entries.
inline constexpr size_t kRunHeaderSize = 64;
inline uint64_t RunDataOffset(uint64_t buckets) {
  return kRunHeaderSize + buckets * 64 + (buckets + 1) * 8;
}

// Makes a run header consistent: the magic, the run id when `id` is set, the entry count set to
// what the file holds for the header's bucket count (the file cut to whole entries), then the
// header checksum. False when the file is shorter than a header.
inline bool FixRunHeader(std::vector<uint8_t>* file, std::optional<uint64_t> id) {
  if (file->size() < kRunHeaderSize) return false;
  std::memcpy(file->data(), "CFRN", 4);
  if (id.has_value()) engine::StoreU64(file->data() + 28, *id);
  const uint64_t buckets = engine::LoadU64(file->data() + 20);
  if (buckets != 0 && buckets <= file->size() && RunDataOffset(buckets) <= file->size()) {
    const uint64_t entries = (file->size() - RunDataOffset(buckets)) / 24;
    engine::StoreU64(file->data() + 12, entries);
    file->resize(RunDataOffset(buckets) + entries * 24);
  }
  uint8_t* h = file->data();
  engine::StoreU64(h + 56, codec::Checksum64(absl::MakeConstSpan(h, 56)));
  return true;
}

// Record table slots (engine/local/record_table.h): 16 bytes, the last 2 the top 16 bits of
// XXH3-64 of the 14 before. Recomputes the check of every whole slot.
inline void FixSlots(absl::Span<uint8_t> table) {
  for (size_t off = 0; off + 16 <= table.size(); off += 16) {
    uint8_t* slot = table.data() + off;
    const uint16_t check =
        static_cast<uint16_t>(codec::Checksum64(absl::MakeConstSpan(slot, 14)) >> 48);
    slot[14] = static_cast<uint8_t>(check);
    slot[15] = static_cast<uint8_t>(check >> 8);
  }
}

// The fixed part of the chunk index directory of fuzz_chunk_index (and of its seeds,
// make_seeds.cc): runs 1 and 2 with these many entries, ids FixedIndexId(run, i), naming records
// below kFixedRecords, the size of the default record table.
inline constexpr uint32_t kFixedRecords = 300;
inline constexpr uint64_t kFixedRun1Entries = 200;
inline constexpr uint64_t kFixedRun2Entries = 50;
inline codec::ChunkId FixedIndexId(uint64_t run, uint64_t i) {
  const codec::ChunkHasher hasher;
  uint8_t b[16];
  engine::StoreU64(b, run);
  engine::StoreU64(b + 8, i);
  return hasher.Hash(absl::MakeConstSpan(b));
}

// ---- Fixtures shared by the targets and make_seeds.cc, which must agree on them. ----

// fuzz_wire: the message type byte 0 of an input names (byte 0 modulo the count), below 0xf0.
inline constexpr engine::MsgType kWireFuzzTypes[] = {
    engine::MsgType::kHello,        engine::MsgType::kChallenge,
    engine::MsgType::kAuth,         engine::MsgType::kWelcome,
    engine::MsgType::kError,        engine::MsgType::kHave,
    engine::MsgType::kHaveReply,    engine::MsgType::kAppend,
    engine::MsgType::kAppendAck,    engine::MsgType::kFlush,
    engine::MsgType::kRead,         engine::MsgType::kRecords,
    engine::MsgType::kPutManifest,  engine::MsgType::kManifestData,
    engine::MsgType::kOpenManifest, engine::MsgType::kPutGroup,
    engine::MsgType::kGetGroup,     engine::MsgType::kGroup,
    engine::MsgType::kGroupList,    engine::MsgType::kPutManifestDelta,
    engine::MsgType::kDelete,       engine::MsgType::kDeleted,
    engine::MsgType::kGc,           engine::MsgType::kGcDone,
};

// fuzz_manifest_delta: the base manifest every delta is decoded against, written to `path` (a
// temporary `path`.tmp on the way). Data entries and holes of assorted lengths.
inline codec::ChunkId DeltaBaseId(uint64_t n) {
  return codec::ChunkId{n * 0x9e3779b97f4a7c15ull, ~n};
}
inline void WriteDeltaBase(const std::string& path) {
  engine::VolumeBackupMeta meta;
  meta.uuid = "00000000000000000000000000000b05";
  meta.volume_uuid = "000000000000000000000000000000f0";
  meta.group_uuid = "000000000000000000000000000000a0";
  meta.chunker = "fixed:4096";
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  ::unlink(path.c_str());
  auto w = engine::ManifestWriter::Create(tmp);
  FUZZ_CHECK(w.ok());
  const uint32_t lengths[] = {4096, 4096, 0, 100, 4096, 0, 65536, 1, 4096};
  for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); ++i) {
    if (lengths[i] == 0) {
      FUZZ_CHECK((*w)->AddZero(8192 + i).ok());
    } else {
      FUZZ_CHECK((*w)->AddData(DeltaBaseId(i), lengths[i]).ok());
    }
  }
  meta.size = (*w)->logical_size();
  FUZZ_CHECK((*w)->Finish(meta, path).ok());
}

}  // namespace chunkferry::fuzz

#endif  // CHUNKFERRY_TESTS_FUZZ_FUZZ_UTIL_H_
