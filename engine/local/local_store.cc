#include "engine/local/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "engine/format/byte_io.h"
#include "engine/store/store_descriptor.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kWriteBufferSize = 4 << 20;
constexpr size_t kWriteBuffers = 8;
constexpr size_t kReadRangeMax = 1 << 20;
constexpr uint64_t kReadGapMax = 64 << 10;
// Most bytes of received records placed in the write buffers before their checks (one part of
// AppendRecords; a larger record goes alone). The buffers must hold a part, from within the
// partly filled buffer it starts in, and still have one to go on to.
constexpr size_t kPartMax = 16 << 20;
static_assert(std::max<size_t>(kPartMax, codec::kMaxRecordRawLength + (1 << 20)) +
                  kWriteBufferSize <=
              (kWriteBuffers - 1) * kWriteBufferSize);
// Chunks appended since the index was saved above which Close() saves it: about 64 MiB of
// 4 KiB chunks, a tail that the next open scans in a few tens of milliseconds.
constexpr uint64_t kSnapshotTailMax = 16384;
constexpr uint64_t kWriteTagBit = 1ull << 63;

}  // namespace

absl::Status LocalStore::Init(const std::string& dir, const StoreInitOptions& options) {
  CF_RETURN_IF_ERROR(io::MakeDir(dir));
  {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return io::ErrnoStatus(errno, "opendir", dir);
    bool empty = true;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    }
    ::closedir(d);
    if (!empty) {
      return absl::AlreadyExistsError(
          absl::StrCat("cannot create a store in ", dir, ": the directory is not empty"));
    }
  }
  CF_ASSIGN_OR_RETURN(StoreInfo info, NewStoreInfo(options));
  for (const char* sub : {"packs", "index", "volumes", "groups", "tmp", "deleting"}) {
    CF_RETURN_IF_ERROR(io::MakeDir(absl::StrCat(dir, "/", sub)));
  }
  if (!options.id_key_hex.empty()) {
    const std::string path = absl::StrCat(dir, "/ID_KEY");
    // Created 0600 (io::kPrivateFileMode): the key is never readable by others, not even briefly.
    CF_RETURN_IF_ERROR(io::WriteFileAtomic(path, options.id_key_hex + "\n"));
  }
  // The descriptor goes last: a directory without one is not a store.
  CF_RETURN_IF_ERROR(io::WriteFileAtomic(absl::StrCat(dir, "/STORE"), FormatStoreDescriptor(info)));
  return io::FsyncDir(dir);
}

LocalStore::LocalStore(std::string dir, LocalStoreOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& dir,
                                                             const LocalStoreOptions& options) {
  std::unique_ptr<LocalStore> s(new LocalStore(dir, options));
  const std::string desc_path = absl::StrCat(dir, "/STORE");
  auto text = io::ReadFileToString(desc_path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(absl::StrCat(dir, " is not a chunkferry store (no STORE file)"));
    }
    return text.status();
  }
  CF_ASSIGN_OR_RETURN(s->info_, ParseStoreDescriptor(*text, desc_path));
  auto key = io::ReadPrivateFile(absl::StrCat(dir, "/ID_KEY"), "chunk id key");
  if (key.ok()) {
    CF_ASSIGN_OR_RETURN(s->hasher_, HasherFromIdKey(*key));
    s->info_.key_fingerprint = s->hasher_.key_fingerprint();
  } else if (!absl::IsNotFound(key.status())) {
    return key.status();
  }

  if (options.writable) {
    const std::string lock_path = absl::StrCat(dir, "/LOCK");
    CF_ASSIGN_OR_RETURN(s->lock_fd_, io::OpenFile(lock_path, O_RDWR | O_CREAT | O_CLOEXEC));
    if (::flock(s->lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == EWOULDBLOCK) {
        auto holder = io::ReadFileToString(lock_path);
        return absl::FailedPreconditionError(
            absl::StrCat("store ", dir, " is being written by another process (pid ",
                         holder.ok() ? std::string(absl::StripAsciiWhitespace(*holder)) : "unknown",
                         "); try again when it has finished"));
      }
      return io::ErrnoStatus(err, "flock", lock_path);
    }
    const std::string pid = absl::StrCat(::getpid(), "\n");
    if (::ftruncate(s->lock_fd_.get(), 0) != 0)
      return io::ErrnoStatus(errno, "ftruncate", lock_path);
    CF_RETURN_IF_ERROR(io::PwriteFull(s->lock_fd_.get(), AsBytes(pid), 0));
    // Leftovers of an interrupted run, never referenced by anything: tmp/ (manifests being
    // received or written) and the temporary files of atomic replacements. The lock is held, so
    // no other writer can be making one now.
    auto tmps = io::ListDir(absl::StrCat(dir, "/tmp"), "");
    if (tmps.ok()) {
      for (const auto& t : *tmps) ::unlink(absl::StrCat(dir, "/tmp/", t).c_str());
    }
    for (const char* sub : {"", "/index", "/groups", "/volumes"}) {
      const std::string where = absl::StrCat(dir, sub);
      auto names = io::ListDir(where, "");
      if (!names.ok()) continue;
      for (const auto& name : *names) {
        if (io::IsAtomicWriteLeftover(name)) ::unlink(absl::StrCat(where, "/", name).c_str());
      }
    }
  }
  // A store may be driven by different threads in turn (a server's workers): its queue must
  // not be bound to the first of them.
  io::QueueOptions queue_options = options.queue;
  queue_options.single_thread = false;
  CF_ASSIGN_OR_RETURN(s->queue_, io::MakeQueue(queue_options));
  CF_RETURN_IF_ERROR(s->LoadIndexAndPacks());
  if (options.writable) CF_RETURN_IF_ERROR(s->FinishInterruptedDeletes());
  const size_t slots = options.pool ? options.pool->slots() : 1;
  s->decompressors_.resize(slots);
  s->scratch_.resize(slots);
  return s;
}

LocalStore::~LocalStore() { (void)Close(); }

absl::Status LocalStore::CheckUsable() const {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("store ", dir_, " is closed"));
  if (!options_.writable) {
    return absl::FailedPreconditionError(absl::StrCat("store ", dir_, " was opened read-only"));
  }
  if (!failed_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", dir_, " refuses writes after an earlier error: ", failed_.message()));
  }
  return absl::OkStatus();
}

absl::Status LocalStore::LoadIndexAndPacks() {
  const std::string packs_dir = absl::StrCat(dir_, "/packs");
  CF_ASSIGN_OR_RETURN(std::vector<std::string> names, io::ListDir(packs_dir, ".pack"));
  std::vector<uint32_t> ids;
  for (const auto& n : names) {
    uint32_t id = 0;
    if (n.size() == 8 && absl::SimpleHexAtoi(n, &id) && id != 0) ids.push_back(id);
  }
  CF_ASSIGN_OR_RETURN(index_, ChunkIndex::Open(absl::StrCat(dir_, "/index"), options_.index,
                                               options_.writable, &report_.index_problem));
  // Opens every pack and learns its size; a pack shorter than the index says, or one the index
  // names but that is gone, makes the index untrustworthy.
  for (uint32_t id : ids) {
    const std::string path = absl::StrCat(packs_dir, "/", PackFileName(id));
    CF_ASSIGN_OR_RETURN(io::Fd fd,
                        io::OpenFile(path, (options_.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
    CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(fd.get(), path));
    if (size < kPackHeaderSize) {
      // Created, then the process died before the header was durable: it holds nothing.
      if (options_.writable) ::unlink(path.c_str());
      continue;
    }
    uint8_t header[kPackHeaderSize];
    CF_RETURN_IF_ERROR(io::PreadFull(fd.get(), absl::MakeSpan(header), 0));
    CF_RETURN_IF_ERROR(CheckPackHeader(header, id, info_.uuid, path));
    Pack& p = packs_[id];
    p.fd = std::move(fd);
    p.size = size;
  }
  if (report_.index_problem.empty()) {
    for (const auto& [id, covered] : index_.coverage()) {
      auto it = packs_.find(id);
      if (it == packs_.end() || it->second.size < covered) {
        report_.index_problem = absl::StrCat("pack ", PackFileName(id),
                                             " is missing or shorter "
                                             "than the index says");
        break;
      }
    }
  }
  if (!report_.index_problem.empty()) {
    index_.Clear();
    report_.index_rebuilt = true;
  }
  for (auto& [id, p] : packs_) {
    auto cov = index_.coverage().find(id);
    const uint64_t start = cov == index_.coverage().end() ? kPackHeaderSize : cov->second;
    if (p.size > start) {
      absl::Status saved;
      CF_ASSIGN_OR_RETURN(PackScan scan,
                          ScanPack(p.fd.get(), id, start, p.size, ScanCheck::kPayload,
                                   [&](const RecordLocation& loc, const codec::RecordView& view,
                                       absl::Span<const uint8_t>) {
                                     index_.InsertRecord(loc, view);
                                     ++report_.tail_records_recovered;
                                     // Scanned records are durable: the index may save.
                                     if (saved.ok() && options_.writable && index_.WantsSave()) {
                                       saved = index_.Save();
                                     }
                                   }));
      CF_RETURN_IF_ERROR(saved);
      for (const auto& [b, e] : scan.damaged) {
        report_.damaged_regions.push_back(absl::StrCat(PackFileName(id), ":", b, "..", e));
      }
      if (scan.torn_tail) {
        report_.torn_tails_cut.push_back(
            absl::StrCat(PackFileName(id), ":", scan.valid_end, "..", p.size));
        if (options_.writable) {
          if (::ftruncate(p.fd.get(), static_cast<off_t>(scan.valid_end)) != 0) {
            return io::ErrnoStatus(errno, "ftruncate", PackFileName(id));
          }
          CF_RETURN_IF_ERROR(io::Fsync(p.fd.get(), PackFileName(id)));
        }
        p.size = scan.valid_end;
      }
      index_.coverage()[id] = p.size;
    } else {
      index_.coverage()[id] = std::max<uint64_t>(start, p.size);
    }
    p.submitted = p.durable = p.size;
  }
  return absl::OkStatus();
}

absl::StatusOr<LocalStore::Pack*> LocalStore::OpenPack(uint32_t id) {
  auto it = packs_.find(id);
  if (it != packs_.end()) return &it->second;
  const std::string path = absl::StrCat(dir_, "/packs/", PackFileName(id));
  // A reader shares the index's record table with the writer: a collection there may have moved
  // a record to a pack written since this store was opened.
  if (!options_.writable && id != 0) {
    auto fd = io::OpenFile(path, O_RDONLY | O_CLOEXEC);
    if (fd.ok()) {
      CF_ASSIGN_OR_RETURN(uint64_t size, io::FileSize(fd->get(), path));
      uint8_t header[kPackHeaderSize];
      if (size >= kPackHeaderSize) {
        CF_RETURN_IF_ERROR(io::PreadFull(fd->get(), absl::MakeSpan(header), 0));
        CF_RETURN_IF_ERROR(CheckPackHeader(header, id, info_.uuid, path));
        Pack& p = packs_[id];
        p.fd = *std::move(fd);
        p.size = p.submitted = p.durable = size;
        return &p;
      }
    }
  }
  return absl::DataLossError(absl::StrCat("store ", dir_, " has no pack ", PackFileName(id)));
}

absl::Status LocalStore::StartNewPack() {
  CF_RETURN_IF_ERROR(SubmitBuffer());
  const uint32_t id = std::max(next_pack_id_, packs_.empty() ? 1 : packs_.rbegin()->first + 1);
  next_pack_id_ = id + 1;
  seal_last_pack_ = false;
  const std::string path = absl::StrCat(dir_, "/packs/", PackFileName(id));
  CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC));
  const std::string header = EncodePackHeader(id, info_.uuid);
  CF_RETURN_IF_ERROR(io::PwriteFull(fd.get(), AsBytes(header), 0));
  Pack& p = packs_[id];
  p.fd = std::move(fd);
  p.size = p.submitted = header.size();
  p.durable = 0;
  p.created_now = true;
  current_pack_ = id;
  packs_dir_dirty_ = true;
  return absl::OkStatus();
}

absl::Status LocalStore::PackFor(size_t bytes) {
  if (current_pack_ == 0 && !packs_.empty() && report_.damaged_regions.empty() &&
      !seal_last_pack_ && packs_.rbegin()->second.size < options_.pack_target) {
    current_pack_ = packs_.rbegin()->first;  // keep filling the last pack
  }
  if (current_pack_ == 0 || packs_[current_pack_].size + bytes > options_.pack_target) {
    return StartNewPack();
  }
  return absl::OkStatus();
}

absl::Status LocalStore::RollBackIfWriteFailed(absl::Status st) {
  if (failed_.ok()) return st;
  // Whatever of the failed write reached the packs is cut off again, with every other append
  // since the last flush (a manifest that names one of those is then refused), so that the
  // store takes the next operation once the cause (a full disk, a size limit) is gone.
  const absl::Status cause = failed_;
  const absl::Status rolled_back = Rollback();
  if (st.ok()) st = cause;
  if (!rolled_back.ok()) {
    return absl::Status(
        st.code(),
        absl::StrCat(st.message(), "; rolling back then failed too: ", rolled_back.message()));
  }
  return absl::Status(st.code(),
                      absl::StrCat(st.message(), " (the store dropped what was not yet durable)"));
}

absl::StatusOr<RecordLocation> LocalStore::AppendRecord(absl::Span<const uint8_t> bytes,
                                                        const codec::RecordView& view) {
  absl::StatusOr<RecordLocation> loc = AppendRecordImpl(bytes, view);
  absl::Status st = RollBackIfWriteFailed(loc.status());
  if (!st.ok()) return st;
  return loc;
}

absl::StatusOr<RecordLocation> LocalStore::AppendRecordImpl(absl::Span<const uint8_t> bytes,
                                                            const codec::RecordView& view) {
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(PackFor(bytes.size()));
  Pack& pack = packs_[current_pack_];
  const RecordLocation loc{current_pack_, static_cast<uint32_t>(bytes.size()), pack.size};
  size_t buffer = 0, pos = 0;
  CF_RETURN_IF_ERROR(Reserve(bytes.size(), &buffer, &pos));
  CopyToBuffers(bytes, buffer, pos);
  index_.InsertRecord(loc, view);
  index_.coverage()[current_pack_] = pack.size;
  CF_RETURN_IF_ERROR(SubmitSealed());
  CF_RETURN_IF_ERROR(SaveIndexIfFull());
  return loc;
}

absl::Status LocalStore::Reserve(size_t size, size_t* buffer, size_t* pos) {
  Pack& pack = packs_[current_pack_];
  // Records run across buffer boundaries, so every full buffer is one aligned write.
  for (bool first = true; size > 0; first = false) {
    if (!buffer_open_) CF_RETURN_IF_ERROR(OpenBuffer());
    WriteBuffer& wb = buffers_[current_buffer_];
    if (first) {
      *buffer = current_buffer_;
      *pos = wb.fill;
    }
    const size_t n = std::min(size, kWriteBufferSize - wb.fill);
    wb.fill += n;
    pack.size += n;
    size -= n;
    if (wb.fill == kWriteBufferSize) {
      wb.sealed = true;
      sealed_.push_back(current_buffer_);
      buffer_open_ = false;
      CF_RETURN_IF_ERROR(NextBuffer());
    }
  }
  return absl::OkStatus();
}

void LocalStore::CopyToBuffers(absl::Span<const uint8_t> bytes, size_t buffer, size_t pos) {
  while (!bytes.empty()) {
    const size_t n = std::min(bytes.size(), kWriteBufferSize - pos);
    std::memcpy(buffers_[buffer].buf.data() + pos, bytes.data(), n);
    bytes.remove_prefix(n);
    buffer = (buffer + 1) % buffers_.size();
    pos = 0;
  }
}

absl::Status LocalStore::SubmitSealed() {
  for (size_t b : sealed_) {
    buffers_[b].sealed = false;
    CF_RETURN_IF_ERROR(SubmitWrite(b).status());  // full: never padded
  }
  sealed_.clear();
  return failed_;
}

LocalStore::WriteCursor LocalStore::SaveCursor() {
  WriteCursor c;
  c.pack = current_pack_;
  c.pack_size = packs_[current_pack_].size;
  c.buffer = current_buffer_;
  c.buffer_open = buffer_open_;
  c.fill = buffer_open_ ? buffers_[current_buffer_].fill : 0;
  c.index_records = index_.record_count();
  return c;
}

void LocalStore::RestoreCursor(const WriteCursor& c) {
  // Every buffer the part touched is sealed or the open one.
  for (size_t b : sealed_) {
    buffers_[b].sealed = false;
    buffers_[b].fill = 0;
  }
  sealed_.clear();
  if (buffer_open_) buffers_[current_buffer_].fill = 0;
  current_buffer_ = c.buffer;
  buffer_open_ = c.buffer_open;
  if (buffer_open_) buffers_[current_buffer_].fill = c.fill;
  packs_[c.pack].size = c.pack_size;
}

absl::Status LocalStore::OpenBuffer() {
  if (buffers_.empty()) {
    buffers_.resize(kWriteBuffers);
    for (auto& b : buffers_) b.buf = io::AlignedBuffer(kWriteBufferSize);
  }
  WriteBuffer& wb = buffers_[current_buffer_];
  Pack& pack = packs_[current_pack_];
  if (!pack.wfd.valid()) {
    const std::string path = absl::StrCat(dir_, "/packs/", PackFileName(current_pack_));
    bool direct = false;
    CF_ASSIGN_OR_RETURN(pack.wfd, io::OpenMaybeDirect(path, O_WRONLY | O_CLOEXEC, &direct));
  }
  wb.pack = current_pack_;
  wb.offset = pack.size & ~(io::kDirectAlignment - 1);
  wb.fill = static_cast<size_t>(pack.size - wb.offset);
  // The block the pack ends in is written whole again: its first bytes come from the file,
  // where the previous (drained) write or the header put them.
  if (wb.fill > 0) {
    CF_RETURN_IF_ERROR(
        io::PreadFull(pack.fd.get(), absl::MakeSpan(wb.buf.data(), wb.fill), wb.offset));
  }
  buffer_open_ = true;
  return absl::OkStatus();
}

absl::Status LocalStore::SubmitBuffer() {
  if (!buffer_open_) return absl::OkStatus();
  buffer_open_ = false;
  const size_t b = current_buffer_;
  CF_ASSIGN_OR_RETURN(const bool padded, SubmitWrite(b));
  if (padded) {
    // The next buffer rewrites this last block: the two writes must not race, and the padding
    // must not stay in the file.
    CF_RETURN_IF_ERROR(DrainWrites());
    CF_ASSIGN_OR_RETURN(Pack * pack, OpenPack(buffers_[b].pack));
    if (::ftruncate(pack->fd.get(), static_cast<off_t>(pack->size)) != 0) {
      failed_ = io::ErrnoStatus(errno, "ftruncate", PackFileName(buffers_[b].pack));
    }
    pack->submitted = pack->size;
  }
  return NextBuffer();
}

absl::StatusOr<bool> LocalStore::SubmitWrite(size_t b) {
  WriteBuffer& wb = buffers_[b];
  CF_ASSIGN_OR_RETURN(Pack * pack, OpenPack(wb.pack));
  // Direct I/O writes whole blocks: a partial last block is padded with zeros, cut off again
  // (SubmitBuffer) once the write is done.
  const size_t len = io::AlignUp(wb.fill, io::kDirectAlignment);
  std::memset(wb.buf.data() + wb.fill, 0, len - wb.fill);
  const bool padded = len != wb.fill;
  if (queue_->in_flight() >= queue_->depth()) CF_RETURN_IF_ERROR(ReapWrites(1));
  io::Request r;
  r.op = io::Request::Op::kWrite;
  r.fd = pack->wfd.get();
  r.buf = wb.buf.data();
  r.len = static_cast<uint32_t>(len);
  r.offset = wb.offset;
  r.tag = kWriteTagBit | b;
  CF_RETURN_IF_ERROR(queue_->Submit(r));
  wb.fill = len;
  wb.in_flight = true;
  pack->submitted = wb.offset + len;
  ++writes_in_flight_;
  // Submit() only queues the request (io_uring batches submissions until the next Reap). Hand it
  // to the kernel now: otherwise it would wait until the buffers wrap around, and the disk would
  // get the writes in late bursts instead of one by one as they fill.
  CF_RETURN_IF_ERROR(ReapWrites(0));
  return padded;
}

absl::Status LocalStore::NextBuffer() {
  current_buffer_ = (current_buffer_ + 1) % buffers_.size();
  while (buffers_[current_buffer_].in_flight) CF_RETURN_IF_ERROR(ReapWrites(1));
  if (buffers_[current_buffer_].sealed) {
    return absl::InternalError("a part of AppendRecords overran the write buffers");
  }
  return failed_;
}

absl::Status LocalStore::ReapWrites(size_t min_complete) {
  io::Completion done[8];
  CF_ASSIGN_OR_RETURN(size_t n, queue_->Reap(absl::MakeSpan(done), min_complete));
  for (size_t i = 0; i < n; ++i) {
    const size_t b = static_cast<size_t>(done[i].tag & ~kWriteTagBit);
    if ((done[i].tag & kWriteTagBit) == 0 || b >= buffers_.size()) {
      return absl::InternalError("unexpected completion on the store's queue");
    }
    WriteBuffer& wb = buffers_[b];
    if (done[i].result == -EINVAL && failed_.ok()) {
      // Direct I/O refuses some writes with EINVAL where buffered I/O says what is really wrong
      // (a file size limit, a file system quirk): retry buffered to succeed or get that error.
      auto pack = packs_.find(wb.pack);
      if (pack != packs_.end()) {
        absl::Status retried = io::PwriteFull(
            pack->second.fd.get(), absl::MakeConstSpan(wb.buf.data(), wb.fill), wb.offset);
        done[i].result = retried.ok() ? static_cast<int64_t>(wb.fill) : -EIO;
        if (!retried.ok()) {
          failed_ = absl::Status(
              retried.code(), absl::StrCat("write ", dir_, "/packs/", PackFileName(wb.pack), ": ",
                                           retried.message()));
        }
      }
    }
    if (done[i].result != static_cast<int64_t>(wb.fill) && failed_.ok()) {
      failed_ = done[i].result < 0
                    ? io::ErrnoStatus(static_cast<int>(-done[i].result), "write",
                                      absl::StrCat(dir_, "/packs/", PackFileName(wb.pack)))
                    : absl::DataLossError(absl::StrCat("short write to ", PackFileName(wb.pack)));
    }
    wb.in_flight = false;
    wb.fill = 0;
    --writes_in_flight_;
  }
  return absl::OkStatus();
}

absl::Status LocalStore::FinishWrites() {
  if (!options_.writable || closed_) return absl::OkStatus();
  if (buffer_open_) CF_RETURN_IF_ERROR(SubmitBuffer());
  return DrainWrites();
}

absl::Status LocalStore::DrainWrites() {
  while (writes_in_flight_ > 0) CF_RETURN_IF_ERROR(ReapWrites(writes_in_flight_));
  return failed_;
}

absl::Status LocalStore::Flush() { return RollBackIfWriteFailed(FlushImpl()); }

absl::Status LocalStore::FlushImpl() {
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(SubmitBuffer());
  CF_RETURN_IF_ERROR(DrainWrites());
  // fsync every pack that grew, all at once through the queue.
  std::vector<uint32_t> dirty;
  for (auto& [id, p] : packs_) {
    if (p.size > p.durable) dirty.push_back(id);
  }
  size_t next = 0, in_flight = 0;
  io::Completion done[8];
  while (next < dirty.size() || in_flight > 0) {
    while (next < dirty.size() && queue_->in_flight() < queue_->depth()) {
      io::Request r;
      r.op = io::Request::Op::kFsync;
      r.fd = packs_[dirty[next]].fd.get();
      r.tag = next++;
      CF_RETURN_IF_ERROR(queue_->Submit(r));
      ++in_flight;
    }
    CF_ASSIGN_OR_RETURN(size_t n, queue_->Reap(absl::MakeSpan(done), 1));
    for (size_t i = 0; i < n; ++i) {
      --in_flight;
      if (done[i].result < 0) {
        failed_ = io::ErrnoStatus(static_cast<int>(-done[i].result), "fsync",
                                  PackFileName(dirty[done[i].tag]));
      }
    }
  }
  CF_RETURN_IF_ERROR(failed_);
  if (packs_dir_dirty_) {
    CF_RETURN_IF_ERROR(io::FsyncDir(absl::StrCat(dir_, "/packs")));
    packs_dir_dirty_ = false;
  }
  for (uint32_t id : dirty) packs_[id].durable = packs_[id].size;
  // Saving is what bounds the index's memory (open scans the tails it does not cover, so a save
  // is not needed for safety); it waits until the memtable is full.
  if (index_.WantsSave()) CF_RETURN_IF_ERROR(index_.Save());
  return absl::OkStatus();
}

absl::Status LocalStore::SaveIndexIfFull() {
  // Flush makes what the index names durable, then saves it.
  return index_.WantsSave() ? FlushImpl() : absl::OkStatus();
}

absl::Status LocalStore::Rollback() {
  if (!options_.writable || closed_) return absl::OkStatus();
  while (writes_in_flight_ > 0) {
    if (!ReapWrites(writes_in_flight_).ok()) break;
  }
  for (auto& b : buffers_) {
    b.fill = 0;
    b.sealed = false;
  }
  sealed_.clear();
  buffer_open_ = false;
  absl::Status result;
  for (auto it = packs_.begin(); it != packs_.end();) {
    Pack& p = it->second;
    const std::string path = absl::StrCat(dir_, "/packs/", PackFileName(it->first));
    if (p.created_now && p.durable <= kPackHeaderSize) {
      ::unlink(path.c_str());
      index_.coverage().erase(it->first);
      if (current_pack_ == it->first) current_pack_ = 0;
      it = packs_.erase(it);
      continue;
    }
    if (p.size > p.durable) {
      if (::ftruncate(p.fd.get(), static_cast<off_t>(p.durable)) != 0 && result.ok()) {
        result = io::ErrnoStatus(errno, "ftruncate", path);
      }
      p.size = p.submitted = p.durable;
      index_.coverage()[it->first] = p.durable;
    }
    ++it;
  }
  // Forget chunks whose records are no longer there.
  index_.RemoveIf([&](const RecordLocation& loc) {
    auto p = packs_.find(loc.pack);
    return p == packs_.end() || loc.offset + loc.size > p->second.durable;
  });
  failed_ = absl::OkStatus();
  return result;
}

absl::StatusOr<size_t> LocalStore::ForgetRecordsOf(absl::Span<const codec::ChunkId> ids) {
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(Flush());
  std::vector<int64_t> numbers(ids.size());
  index_.FindRecordNumbers(ids, absl::MakeSpan(numbers));
  absl::flat_hash_set<uint32_t> forget;
  for (int64_t n : numbers) {
    if (n >= 0) forget.insert(static_cast<uint32_t>(n));
  }
  if (forget.empty()) return 0;
  CF_RETURN_IF_ERROR(index_.EraseChunksOf([&](uint32_t r) { return forget.contains(r); }));
  CF_RETURN_IF_ERROR(index_.Save());
  return forget.size();
}

uint64_t LocalStore::HoldNewRecords() {
  holds_[next_hold_] = index_.record_count();
  return next_hold_++;
}

void LocalStore::ReleaseHold(uint64_t hold) { holds_.erase(hold); }

absl::Status LocalStore::Close() {
  if (closed_) return absl::OkStatus();
  absl::Status st;
  if (options_.writable) {
    if (failed_.ok()) {
      st = Flush();
      // A small tail is cheaper to scan at the next open than a run is to write and merge (an
      // incremental sync adds a few thousand chunks). A store without packs has nothing to
      // save: opening and closing it leaves it as it was.
      const bool rebuilt = report_.index_rebuilt && !packs_.empty();
      if (st.ok() && (index_.unsaved() > kSnapshotTailMax || rebuilt)) st = index_.Save();
    }
    if (!failed_.ok() || !st.ok()) {
      absl::Status rb = Rollback();
      if (st.ok()) st = rb;
    }
  }
  closed_ = true;
  packs_.clear();
  lock_fd_.Reset();
  return st;
}

absl::Status LocalStore::HaveChunks(absl::Span<const codec::ChunkId> ids, std::vector<bool>* have) {
  index_.ContainsAll(ids, have);
  return absl::OkStatus();
}

std::vector<LocalStore::ReadRange> LocalStore::MergeIntoRanges(
    absl::Span<const RecordLocation> locations, std::vector<size_t>* order) {
  order->resize(locations.size());
  for (size_t i = 0; i < order->size(); ++i) (*order)[i] = i;
  std::sort(order->begin(), order->end(),
            [&](size_t a, size_t b) { return locations[a] < locations[b]; });
  // Neighbouring records become one range, read in one request.
  std::vector<ReadRange> ranges;
  for (size_t k = 0; k < order->size(); ++k) {
    const RecordLocation& l = locations[(*order)[k]];
    if (!ranges.empty()) {
      ReadRange& r = ranges.back();
      const uint64_t end = r.offset + r.length;
      const uint64_t new_end = std::max(end, l.offset + l.size);
      if (r.pack == l.pack && l.offset >= r.offset && l.offset <= end + kReadGapMax &&
          new_end - r.offset <= kReadRangeMax) {
        r.length = new_end - r.offset;
        r.last = k + 1;
        continue;
      }
    }
    const uint64_t start = l.offset & ~(io::kDirectAlignment - 1);
    ranges.push_back(ReadRange{l.pack, start, l.offset + l.size - start, k, k + 1});
  }
  return ranges;
}

void LocalStore::PrefetchRecords(absl::Span<const RecordLocation> locations) {
  std::vector<size_t> order;
  for (const ReadRange& r : MergeIntoRanges(locations, &order)) {
    auto pack = packs_.find(r.pack);
    if (pack == packs_.end()) continue;  // ReadRecords will say what is wrong
    (void)::posix_fadvise(pack->second.fd.get(), static_cast<off_t>(r.offset),
                          static_cast<off_t>(r.length), POSIX_FADV_WILLNEED);
  }
}

absl::Status LocalStore::ReadRecords(absl::Span<const RecordLocation> locations,
                                     const LocatedSink& sink) {
  // Records still in write buffers, or in writes in flight, are read back from the file: write
  // them out and wait for them first (also so that no write completion is taken for a read).
  CF_RETURN_IF_ERROR(FinishWrites());
  auto fd_of = [this](uint32_t pack) -> absl::StatusOr<int> {
    CF_ASSIGN_OR_RETURN(Pack * p, OpenPack(pack));
    if (!options_.direct_reads) return p->fd.get();
    if (!p->dfd.valid()) {
      bool direct = false;  // where O_DIRECT is refused (tmpfs), a second buffered descriptor
      CF_ASSIGN_OR_RETURN(p->dfd,
                          io::OpenMaybeDirect(absl::StrCat(dir_, "/packs/", PackFileName(pack)),
                                              O_RDONLY | O_CLOEXEC, &direct));
    }
    return p->dfd.get();
  };
  return ReadLocated(locations, *queue_, read_buffers_, fd_of, sink);
}

absl::Status LocalStore::ReadLocated(absl::Span<const RecordLocation> locations, io::Queue& queue,
                                     std::vector<io::AlignedBuffer>& bufs,
                                     const std::function<absl::StatusOr<int>(uint32_t)>& fd_of,
                                     const LocatedSink& sink) {
  std::vector<size_t> order;
  const std::vector<ReadRange> ranges = MergeIntoRanges(locations, &order);
  const size_t slots = std::max<size_t>(1, std::min<size_t>(queue.depth(), 16));
  // Kept between calls: reallocating megabytes per call would only churn the heap.
  if (bufs.size() < slots) bufs.resize(slots);
  std::vector<size_t> slot_range(slots);
  std::vector<size_t> free_slots;
  for (size_t s = 0; s < slots; ++s) free_slots.push_back(slots - 1 - s);
  size_t next = 0, in_flight = 0;
  absl::Status status;
  // Queues reads into every free slot.
  auto refill = [&] {
    while (status.ok() && next < ranges.size() && !free_slots.empty()) {
      const ReadRange& r = ranges[next];
      const size_t s = free_slots.back();
      const uint64_t aligned_len = io::AlignUp(r.length, io::kDirectAlignment);
      if (bufs[s].size() < aligned_len) {
        bufs[s] = io::AlignedBuffer(std::max<uint64_t>(aligned_len, kReadRangeMax));
      }
      absl::StatusOr<int> fd = fd_of(r.pack);
      if (!fd.ok()) {
        status = fd.status();
        return;
      }
      io::Request req;
      req.op = io::Request::Op::kRead;
      req.fd = *fd;
      req.buf = bufs[s].data();
      // Whole blocks, as O_DIRECT wants them (the range starts on one): a read that ends at the
      // file's end early is short, which is fine past r.length.
      req.len = static_cast<uint32_t>(aligned_len);
      req.offset = r.offset;
      req.tag = s;
      status = queue.Submit(req);
      if (!status.ok()) return;
      free_slots.pop_back();
      slot_range[s] = next++;
      ++in_flight;
    }
  };
  io::Completion done[16];
  std::vector<LocatedRecord> batch;
  refill();
  while (in_flight > 0) {
    CF_ASSIGN_OR_RETURN(size_t n, queue.Reap(absl::MakeSpan(done), 1));
    // One range at a time to the sink, its slot refilled right after: were all that arrived
    // handed over at once, the reads would run dry during the sink's long call, and arrive
    // in ever larger bunches.
    for (size_t i = 0; i < n; ++i) {
      const size_t s = static_cast<size_t>(done[i].tag);
      const ReadRange& r = ranges[slot_range[s]];
      --in_flight;
      if (status.ok() && done[i].result < static_cast<int64_t>(r.length)) {
        status =
            done[i].result < 0
                ? io::ErrnoStatus(static_cast<int>(-done[i].result), "read", PackFileName(r.pack))
                : absl::DataLossError(absl::StrCat("pack ", PackFileName(r.pack),
                                                   " ends before offset ", r.offset + r.length,
                                                   " that the index points at"));
      }
      batch.clear();
      for (size_t k = r.first; k < r.last && status.ok(); ++k) {
        const RecordLocation& l = locations[order[k]];
        batch.push_back(LocatedRecord{
            order[k], absl::MakeConstSpan(bufs[s].data() + (l.offset - r.offset), l.size)});
      }
      if (status.ok() && !batch.empty()) status = sink(batch);
      free_slots.push_back(s);
      refill();
    }
  }
  return status;
}

absl::StatusOr<LocalStore::DetachedRead> LocalStore::PrepareDetachedRead(
    absl::Span<const codec::ChunkId> ids) {
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_ASSIGN_OR_RETURN(std::vector<RecordLocation> locs, LocateRecordsFor(ids));
  // The records in write buffers reach their files before the caller reads them there.
  CF_RETURN_IF_ERROR(FinishWrites());
  DetachedRead read;
  for (const RecordLocation& l : locs) {
    if (read.packs.contains(l.pack)) continue;
    CF_ASSIGN_OR_RETURN(Pack * p, OpenPack(l.pack));
    const int fd = ::fcntl(p->fd.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return io::ErrnoStatus(errno, "dup", PackFileName(l.pack));
    read.packs.emplace(l.pack, io::Fd(fd));
  }
  read.locations = std::move(locs);
  return read;
}

absl::Status LocalStore::ReadDetached(const DetachedRead& read, io::Queue& queue,
                                      std::vector<io::AlignedBuffer>& bufs,
                                      const RecordSink& sink) {
  auto fd_of = [&read](uint32_t pack) -> absl::StatusOr<int> {
    auto it = read.packs.find(pack);
    if (it == read.packs.end()) {
      return absl::InternalError(absl::StrCat("pack ", PackFileName(pack), " was not prepared"));
    }
    return it->second.get();
  };
  std::vector<absl::Span<const uint8_t>> records;
  return ReadLocated(read.locations, queue, bufs, fd_of,
                     [&](absl::Span<const LocatedRecord> batch) {
                       records.clear();
                       for (const auto& r : batch) records.push_back(r.bytes);
                       return sink(records);
                     });
}

absl::Status LocalStore::ScanAllPacks(const RecordVisitor& visit,
                                      std::vector<std::string>* problems) {
  CF_RETURN_IF_ERROR(FinishWrites());
  for (auto& [id, p] : packs_) {
    CF_ASSIGN_OR_RETURN(PackScan scan, ScanPack(p.fd.get(), id, kPackHeaderSize, p.size,
                                                ScanCheck::kHeader, visit));
    for (const auto& [b, e] : scan.damaged) {
      problems->push_back(absl::StrCat("damaged pack region ", PackFileName(id), ":", b, "..", e));
    }
    if (scan.torn_tail) {
      problems->push_back(absl::StrCat("pack ", PackFileName(id), " has unreadable bytes from ",
                                       scan.valid_end, " to its end at ", p.size));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RecordLocation>> LocalStore::LocateRecordsFor(
    absl::Span<const codec::ChunkId> ids) {
  std::vector<std::optional<ChunkLocation>> found(ids.size());
  index_.FindAll(ids, absl::MakeSpan(found));
  std::vector<RecordLocation> locs;
  locs.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!found[i]) {
      return absl::NotFoundError(
          absl::StrCat("store ", dir_, " does not hold chunk ", ids[i].ToHex()));
    }
    locs.push_back(found[i]->record);
  }
  std::sort(locs.begin(), locs.end());
  locs.erase(std::unique(locs.begin(), locs.end()), locs.end());
  return locs;
}

absl::Status LocalStore::ReadRecordsFor(absl::Span<const codec::ChunkId> ids,
                                        const RecordSink& sink) {
  CF_ASSIGN_OR_RETURN(std::vector<RecordLocation> locs, LocateRecordsFor(ids));
  std::vector<absl::Span<const uint8_t>> records;
  return ReadRecords(locs, [&](absl::Span<const LocatedRecord> batch) {
    records.clear();
    for (const auto& r : batch) records.push_back(r.bytes);
    return sink(records);
  });
}

absl::Status LocalStore::AppendRecords(absl::Span<const absl::Span<const uint8_t>> records,
                                       VerifyMode mode, AppendStats* stats) {
  return RollBackIfWriteFailed(AppendRecordsImpl(records, mode, stats));
}

absl::Status LocalStore::AppendRecordsImpl(absl::Span<const absl::Span<const uint8_t>> records,
                                           VerifyMode mode, AppendStats* stats) {
  CF_RETURN_IF_ERROR(CheckUsable());
  const size_t n = records.size();
  auto rejected = [&](size_t i, const absl::Status& why) {
    return absl::Status(why.code(), absl::StrCat("store ", dir_, " rejected a received record (",
                                                 i + 1, " of ", n, "): ", why.message()));
  };
  // Headers and chunk tables are parsed first (cheap): a malformed record fails the call before
  // anything of it is placed.
  placed_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    auto view = codec::ParseRecord(records[i]);
    absl::Status bad = view.status();
    if (bad.ok() && view->size != records[i].size()) {
      bad = absl::DataLossError("record has trailing bytes");
    }
    if (!bad.ok()) return rejected(i, bad);
    placed_[i] = PlacedRecord{records[i], *view, false, 0, 0, absl::OkStatus()};
  }
  for (size_t begin = 0; begin < n;) {
    // A part stays in one pack and within kPartMax (a larger record goes alone).
    CF_RETURN_IF_ERROR(PackFor(records[begin].size()));
    const uint64_t used = packs_[current_pack_].size;
    const uint64_t room =
        std::min<uint64_t>(kPartMax, options_.pack_target > used ? options_.pack_target - used : 0);
    size_t end = begin + 1;
    uint64_t bytes = records[begin].size();
    while (end < n && bytes + records[end].size() <= room) bytes += records[end++].size();
    const absl::Span<PlacedRecord> part = absl::MakeSpan(placed_).subspan(begin, end - begin);
    const absl::Status st = AppendPart(part, mode, stats);
    if (!st.ok()) {
      for (size_t i = 0; i < part.size(); ++i) {
        if (!part[i].check.ok()) return rejected(begin + i, st);
      }
      return st;
    }
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status LocalStore::AppendPart(absl::Span<PlacedRecord> part, VerifyMode mode,
                                    AppendStats* stats) {
  const WriteCursor cursor = SaveCursor();
  Pack& pack = packs_[current_pack_];
  // Place the records that hold a chunk neither the store nor an earlier record of the part
  // holds: room in the buffers, and index entries.
  absl::Status st;
  AppendStats added;  // counted into `stats` once every check has passed
  for (PlacedRecord& r : part) {
    const size_t lacking = index_.CountLacking(r.view);
    r.append = lacking > 0;
    if (!r.append) continue;
    const RecordLocation loc{current_pack_, static_cast<uint32_t>(r.bytes.size()), pack.size};
    st = Reserve(r.bytes.size(), &r.buffer, &r.pos);
    if (!st.ok()) break;
    index_.InsertRecord(loc, r.view);
    ++added.records_appended;
    added.bytes_appended += r.bytes.size();
    added.chunks_added += lacking;
  }
  // Check every record (a copy of a chunk held already too) and copy the placed ones in.
  if (st.ok()) {
    const bool full = mode == VerifyMode::kFull;
    auto task = [&](size_t i, size_t slot) {
      PlacedRecord& r = part[i];
      r.check =
          codec::CheckReceivedRecord(r.bytes, full, decompressors_[slot], &hasher_, &scratch_[slot])
              .status();
      if (r.check.ok() && r.append) CopyToBuffers(r.bytes, r.buffer, r.pos);
    };
    if (options_.pool != nullptr) {
      options_.pool->Run(part.size(), task);
    } else {
      for (size_t i = 0; i < part.size(); ++i) task(i, 0);
    }
    for (const PlacedRecord& r : part) {
      if (!r.check.ok()) {
        st = r.check;
        break;
      }
    }
  }
  if (!st.ok()) {
    for (const PlacedRecord& r : part) {
      if (r.append) index_.ForgetChunksOf(r.view, cursor.index_records);
    }
    index_.TruncateRecords(cursor.index_records);
    RestoreCursor(cursor);
    return st;
  }
  index_.coverage()[current_pack_] = pack.size;
  if (stats != nullptr) {
    stats->records_received += part.size();
    stats->records_appended += added.records_appended;
    stats->bytes_appended += added.bytes_appended;
    stats->chunks_added += added.chunks_added;
  }
  CF_RETURN_IF_ERROR(SubmitSealed());
  return SaveIndexIfFull();
}

absl::Status LocalStore::AppendCheckedRecords(absl::Span<const absl::Span<const uint8_t>> records,
                                              absl::Span<const codec::RecordView> views,
                                              AppendStats* stats) {
  if (records.size() != views.size()) {
    return absl::InvalidArgumentError(absl::StrCat("AppendCheckedRecords got ", records.size(),
                                                   " records and ", views.size(), " views"));
  }
  absl::Status st;  // AppendRecord refuses writes to a closed store
  for (size_t i = 0; i < records.size() && st.ok(); ++i) {
    if (stats) ++stats->records_received;
    const codec::RecordView& view = views[i];
    const size_t lacking = index_.CountLacking(view);
    if (lacking == 0) continue;
    st = AppendRecordImpl(records[i], view).status();
    if (st.ok() && stats) {
      ++stats->records_appended;
      stats->bytes_appended += records[i].size();
      stats->chunks_added += lacking;
    }
  }
  return RollBackIfWriteFailed(st);
}

std::string LocalStore::ManifestPath(const std::string& backup_uuid) const {
  return absl::StrCat(dir_, "/volumes/", backup_uuid, ".manifest");
}

bool LocalStore::HasManifest(const std::string& backup_uuid) const {
  struct stat st;
  return IsValidUuid(backup_uuid) && ::stat(ManifestPath(backup_uuid).c_str(), &st) == 0;
}

std::string LocalStore::GroupPath(const std::string& group_uuid) const {
  return absl::StrCat(dir_, "/groups/", group_uuid, ".group");
}

std::string LocalStore::NewTmpPath(absl::string_view what) {
  return absl::StrCat(dir_, "/tmp/", what, ".", ::getpid(), ".", ++tmp_counter_);
}

absl::Status LocalStore::PutManifest(const VolumeBackupMeta& meta, ManifestSource& entries) {
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(ValidateMeta(meta));
  entries.Rewind();
  CF_ASSIGN_OR_RETURN(auto writer, ManifestWriter::Create(NewTmpPath("manifest")));
  std::vector<ManifestEntry> batch;
  std::vector<codec::ChunkId> ids;
  std::vector<std::optional<ChunkLocation>> found;
  // The pack of the last chunk looked at: manifests name long runs of one pack.
  uint32_t last_pack = 0;
  uint64_t last_durable = 0;
  for (;;) {
    CF_ASSIGN_OR_RETURN(size_t n, entries.Next(&batch, 4096));
    if (n == 0) break;
    ids.clear();
    for (const auto& e : batch) {
      if (!e.zero) ids.push_back(e.id);
    }
    found.resize(ids.size());
    index_.FindAll(ids, absl::MakeSpan(found));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!found[i]) {
        return absl::FailedPreconditionError(absl::StrCat("manifest of ", meta.uuid,
                                                          " names chunk ", ids[i].ToHex(),
                                                          " that store ", dir_, " does not hold"));
      }
      const RecordLocation& loc = found[i]->record;
      if (loc.pack != last_pack) {
        auto p = packs_.find(loc.pack);
        last_pack = loc.pack;
        last_durable = p == packs_.end() ? 0 : p->second.durable;
      }
      if (loc.offset + loc.size > last_durable) {
        return absl::FailedPreconditionError(
            absl::StrCat("manifest of ", meta.uuid, " names chunk ", ids[i].ToHex(),
                         " that is not durable yet in ", dir_, " (flush first)"));
      }
    }
    for (const auto& e : batch) CF_RETURN_IF_ERROR(writer->Add(e));
  }
  return writer->Finish(meta, ManifestPath(meta.uuid));
}

absl::StatusOr<std::unique_ptr<ManifestReader>> LocalStore::OpenManifestReader(
    const std::string& backup_uuid) {
  if (!IsValidUuid(backup_uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume backup uuid '", backup_uuid, "' is malformed"));
  }
  auto r = ManifestReader::Open(ManifestPath(backup_uuid));
  if (absl::IsNotFound(r.status())) {
    return absl::NotFoundError(absl::StrCat("store ", dir_, " has no volume backup ", backup_uuid));
  }
  return r;
}

absl::StatusOr<std::unique_ptr<ManifestSource>> LocalStore::OpenManifest(
    const std::string& backup_uuid) {
  CF_ASSIGN_OR_RETURN(auto r, OpenManifestReader(backup_uuid));
  return std::unique_ptr<ManifestSource>(std::move(r));
}

absl::StatusOr<std::vector<std::string>> LocalStore::ListManifests() {
  CF_ASSIGN_OR_RETURN(auto names, io::ListDir(absl::StrCat(dir_, "/volumes"), ".manifest"));
  std::vector<std::string> out;
  for (auto& n : names) {
    if (IsValidUuid(n)) out.push_back(std::move(n));
  }
  return out;
}

absl::Status LocalStore::CheckGroupVolumes(const GroupRecord& group) const {
  for (const auto& v : group.volume_uuids) {
    if (!HasManifest(v)) {
      return absl::FailedPreconditionError(absl::StrCat("group ", group.group_uuid,
                                                        " names volume backup ", v, " that store ",
                                                        dir_, " does not hold"));
    }
  }
  return absl::OkStatus();
}

absl::Status LocalStore::PutGroup(const GroupRecord& group) {
  CF_RETURN_IF_ERROR(CheckUsable());
  if (!IsValidUuid(group.group_uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("group uuid '", group.group_uuid, "' is malformed"));
  }
  CF_RETURN_IF_ERROR(CheckGroupVolumes(group));
  absl::StatusOr<bool> published =
      io::WriteFileOnce(GroupPath(group.group_uuid), EncodeGroup(group));
  if (absl::IsAlreadyExists(published.status())) {
    return absl::AlreadyExistsError(
        absl::StrCat("group ", group.group_uuid, " is already published in store ", dir_,
                     " with other contents: a published group is never replaced; delete it first"));
  }
  return published.status();
}

absl::Status LocalStore::GrowGroup(const GroupRecord& group) {
  absl::StatusOr<GroupRecord> old = GetGroup(group.group_uuid);
  if (absl::IsNotFound(old.status())) return PutGroup(group);
  CF_RETURN_IF_ERROR(old.status());
  if (!GroupOnlyGrows(*old, group)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "group ", group.group_uuid, " is already published in store ", dir_,
        " and the new record does not only add volumes to it: a published group is never "
        "replaced; delete it first"));
  }
  if (group.volume_uuids.size() == old->volume_uuids.size()) return absl::OkStatus();
  CF_RETURN_IF_ERROR(CheckUsable());
  CF_RETURN_IF_ERROR(CheckGroupVolumes(group));
  return io::WriteFileAtomic(GroupPath(group.group_uuid), EncodeGroup(group));
}

absl::StatusOr<GroupRecord> LocalStore::GetGroup(const std::string& group_uuid) {
  if (!IsValidUuid(group_uuid)) {
    return absl::InvalidArgumentError(absl::StrCat("group uuid '", group_uuid, "' is malformed"));
  }
  const std::string path = GroupPath(group_uuid);
  auto bytes = io::ReadFileToString(path);
  if (absl::IsNotFound(bytes.status())) {
    return absl::NotFoundError(absl::StrCat("store ", dir_, " has no group ", group_uuid));
  }
  if (!bytes.ok()) return bytes.status();
  return DecodeGroup(*bytes, path);
}

absl::StatusOr<std::vector<std::string>> LocalStore::ListGroups() {
  CF_ASSIGN_OR_RETURN(auto names, io::ListDir(absl::StrCat(dir_, "/groups"), ".group"));
  std::vector<std::string> out;
  for (auto& n : names) {
    if (IsValidUuid(n)) out.push_back(std::move(n));
  }
  return out;
}

}  // namespace chunkferry::engine
