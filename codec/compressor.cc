#include "codec/compressor.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chunkferry::codec {
namespace {

absl::Status ZstdError(const char* what, size_t code) {
  return absl::InternalError(absl::StrCat(what, ": ", ZSTD_getErrorName(code)));
}

// Returns true when `a` ends where `b` starts, so the two can be compressed as one input.
bool Adjacent(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  return a.data() + a.size() == b.data();
}

}  // namespace

size_t CompressBound(size_t raw_length) { return ZSTD_compressBound(raw_length); }

struct Compressor::Ctx {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  absl::Status init_status;
  ~Ctx() { ZSTD_freeCCtx(cctx); }
};

Compressor::Compressor(int level) : ctx_(std::make_unique<Ctx>()), level_(level) {
  ZSTD_CCtx* cctx = ctx_->cctx;
  if (cctx == nullptr) {
    ctx_->init_status = absl::InternalError("ZSTD_createCCtx failed (out of memory)");
    return;
  }
  // Records carry their own XXH3 checksum of the stored bytes, so zstd's is redundant.
  for (const auto& [param, value] :
       {std::pair{ZSTD_c_compressionLevel, level}, std::pair{ZSTD_c_contentSizeFlag, 1},
        std::pair{ZSTD_c_checksumFlag, 0}}) {
    const size_t rc = ZSTD_CCtx_setParameter(cctx, param, value);
    if (ZSTD_isError(rc)) {
      ctx_->init_status = ZstdError("ZSTD_CCtx_setParameter", rc);
      return;
    }
  }
}

Compressor::~Compressor() = default;
Compressor::Compressor(Compressor&&) noexcept = default;
Compressor& Compressor::operator=(Compressor&&) noexcept = default;

absl::StatusOr<size_t> Compressor::Compress(absl::Span<const absl::Span<const uint8_t>> inputs,
                                            absl::Span<uint8_t> out) {
  if (ctx_ == nullptr) return absl::FailedPreconditionError("Compressor was moved from");
  if (!ctx_->init_status.ok()) return ctx_->init_status;
  ZSTD_CCtx* cctx = ctx_->cctx;

  // Chunks cut from one read buffer are usually adjacent in memory: compressing them as one
  // span lets zstd work in place instead of copying through its stream buffers.
  size_t total = 0;
  bool contiguous = true;
  const uint8_t* start = nullptr;
  absl::Span<const uint8_t> previous;
  for (const absl::Span<const uint8_t> input : inputs) {
    if (input.empty()) continue;
    if (start == nullptr) {
      start = input.data();
    } else if (!Adjacent(previous, input)) {
      contiguous = false;
    }
    previous = input;
    total += input.size();
  }

  if (contiguous) {
    // ZSTD_compress2 resets the session, uses the parameters set above and writes the frame
    // straight into `out`, failing with dstSize_tooSmall rather than overrunning it.
    const size_t rc = ZSTD_compress2(cctx, out.data(), out.size(), start, total);
    if (ZSTD_isError(rc)) {
      if (ZSTD_getErrorCode(rc) == ZSTD_error_dstSize_tooSmall) {
        return absl::ResourceExhaustedError(
            absl::StrCat("zstd frame of ", total, " bytes does not fit in ", out.size()));
      }
      return ZstdError("ZSTD_compress2", rc);
    }
    return rc;
  }

  size_t rc = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
  if (ZSTD_isError(rc)) return ZstdError("ZSTD_CCtx_reset", rc);
  rc = ZSTD_CCtx_setPledgedSrcSize(cctx, total);
  if (ZSTD_isError(rc)) return ZstdError("ZSTD_CCtx_setPledgedSrcSize", rc);
  ZSTD_outBuffer output = {out.data(), out.size(), 0};
  auto too_small = [&] {
    return absl::ResourceExhaustedError(
        absl::StrCat("zstd frame of ", total, " bytes does not fit in ", out.size()));
  };
  for (const absl::Span<const uint8_t> span : inputs) {
    ZSTD_inBuffer input = {span.data(), span.size(), 0};
    while (input.pos < input.size) {
      const size_t in_before = input.pos;
      const size_t out_before = output.pos;
      rc = ZSTD_compressStream2(cctx, &output, &input, ZSTD_e_continue);
      if (ZSTD_isError(rc)) return ZstdError("ZSTD_compressStream2", rc);
      if (input.pos == in_before && output.pos == out_before) {
        if (output.pos == output.size) return too_small();
        return absl::InternalError("ZSTD_compressStream2 made no progress");
      }
    }
  }
  ZSTD_inBuffer empty = {nullptr, 0, 0};
  for (;;) {
    const size_t out_before = output.pos;
    rc = ZSTD_compressStream2(cctx, &output, &empty, ZSTD_e_end);
    if (ZSTD_isError(rc)) return ZstdError("ZSTD_compressStream2", rc);
    if (rc == 0) break;  // frame complete
    if (output.pos == output.size) return too_small();
    if (output.pos == out_before)
      return absl::InternalError("ZSTD_compressStream2 made no progress");
  }
  return output.pos;
}

struct Decompressor::Ctx {
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ~Ctx() { ZSTD_freeDCtx(dctx); }
};

Decompressor::Decompressor() : ctx_(std::make_unique<Ctx>()) {}
Decompressor::~Decompressor() = default;
Decompressor::Decompressor(Decompressor&&) noexcept = default;
Decompressor& Decompressor::operator=(Decompressor&&) noexcept = default;

absl::Status Decompressor::Decompress(absl::Span<const uint8_t> frame, absl::Span<uint8_t> out) {
  if (ctx_ == nullptr) return absl::FailedPreconditionError("Decompressor was moved from");
  if (ctx_->dctx == nullptr) return absl::InternalError("ZSTD_createDCtx failed (out of memory)");
  // The frame header's content size, when present, must match before any work is done.
  const unsigned long long content_size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content_size == ZSTD_CONTENTSIZE_ERROR) {
    return absl::DataLossError("zstd frame header is damaged");
  }
  if (content_size != ZSTD_CONTENTSIZE_UNKNOWN && content_size != out.size()) {
    return absl::DataLossError(
        absl::StrCat("zstd frame holds ", content_size, " bytes, expected ", out.size()));
  }
  // ZSTD_decompressDCtx would also decode frames appended after the first: insist on exactly one.
  const size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size)) {
    return absl::DataLossError(
        absl::StrCat("zstd frame is damaged: ", ZSTD_getErrorName(frame_size)));
  }
  if (frame_size != frame.size()) {
    return absl::DataLossError(absl::StrCat("zstd frame is ", frame_size, " bytes but ",
                                            frame.size(), " were given (trailing bytes)"));
  }
  const size_t rc =
      ZSTD_decompressDCtx(ctx_->dctx, out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(rc)) {
    return absl::DataLossError(absl::StrCat("zstd frame is damaged: ", ZSTD_getErrorName(rc)));
  }
  if (rc != out.size()) {
    return absl::DataLossError(
        absl::StrCat("zstd frame decoded to ", rc, " bytes, expected ", out.size()));
  }
  return absl::OkStatus();
}

}  // namespace chunkferry::codec
