// make_vm_group: writes a deterministic VM-like backup group, every version of it:
//
//   make_vm_group --out DIR --root-size 2G --data-size 1G[,512M...] --versions 2 --seed 1
//
// gives DIR/v1/root.img, DIR/v1/data1.img, ..., DIR/v2/root.img, ... (sparse raw images; see
// vm_image_gen.h for what they hold) and prints one line per file with its size and the bytes of
// its non-zero 4 KiB blocks. Bad flags exit 2 with the usage; I/O errors exit 1.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/vmgen/vm_image_gen.h"

namespace {

using chunkferry::vmgen::ParseSize;
using chunkferry::vmgen::VolumeSpec;
using chunkferry::vmgen::WriteOptions;
using chunkferry::vmgen::WriteVolume;

constexpr char kUsage[] =
    "usage: make_vm_group --out DIR --root-size SIZE [--data-size SIZE[,SIZE...]]\n"
    "                     [--versions N] [--seed S] [--threads T]\n"
    "                     [--used-percent P] [--rewrite-percent P] [--append-percent P]\n"
    "  Writes DIR/vK/root.img and DIR/vK/dataI.img for K = 1..N: VM-like raw images, sparse,\n"
    "  deterministic in (S, K). SIZE takes K, M, G, T suffixes (binary), e.g. 64M or 2G.\n"
    "  --versions N       versions to write (default 1); vK+1 is vK with changes\n"
    "  --seed S           64-bit seed (default 1)\n"
    "  --threads T        generator threads per image (default: all cores)\n"
    "  --used-percent P   share of the root volume holding data (default 9)\n"
    "  --rewrite-percent P  per version, share of used blocks rewritten (default 3)\n"
    "  --append-percent P   per version, new data as a share of the used size (default 1.5)\n";

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "make_vm_group: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

uint64_t SizeFlag(const std::string& flag, const std::string& value) {
  absl::StatusOr<uint64_t> size = ParseSize(value);
  if (!size.ok()) UsageError(absl::StrCat(flag, ": ", size.status().message()));
  if (*size == 0 || *size % 4096 != 0) {
    UsageError(absl::StrCat(flag, ": ", value, " is not a positive multiple of 4096 bytes"));
  }
  return *size;
}

double PercentFlag(const std::string& flag, const std::string& value, double max) {
  double p = 0;
  if (!absl::SimpleAtod(value, &p) || !(p >= 0 && p <= max)) {
    UsageError(absl::StrCat(flag, ": ", value, " is not a percentage in [0, ", max, "]"));
  }
  return p / 100;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  uint64_t root_size = 0;
  std::vector<uint64_t> data_sizes;
  uint64_t versions = 1;
  uint64_t seed = 1;
  uint64_t threads = std::max(1u, std::thread::hardware_concurrency());
  VolumeSpec base;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (flag.rfind("--", 0) != 0) UsageError(absl::StrCat("unexpected argument '", flag, "'"));
    if (const size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      UsageError(absl::StrCat(flag, " needs a value"));
    }
    if (flag == "--out") {
      if (value.empty()) UsageError("--out: empty directory");
      out = value;
    } else if (flag == "--root-size") {
      root_size = SizeFlag(flag, value);
      if (root_size < (2u << 20)) UsageError("--root-size: must be at least 2M");
    } else if (flag == "--data-size") {
      data_sizes.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        data_sizes.push_back(SizeFlag(flag, std::string(part)));
      }
    } else if (flag == "--versions") {
      if (!absl::SimpleAtoi(value, &versions) || versions < 1 || versions > 1000) {
        UsageError(absl::StrCat("--versions: ", value, " is not a number in [1, 1000]"));
      }
    } else if (flag == "--seed") {
      if (!absl::SimpleAtoi(value, &seed)) {
        UsageError(absl::StrCat("--seed: ", value, " is not an unsigned 64-bit number"));
      }
    } else if (flag == "--threads") {
      if (!absl::SimpleAtoi(value, &threads) || threads < 1 || threads > 1024) {
        UsageError(absl::StrCat("--threads: ", value, " is not a number in [1, 1024]"));
      }
    } else if (flag == "--used-percent") {
      base.used_fraction = PercentFlag(flag, value, 90);
      if (base.used_fraction == 0) UsageError("--used-percent: must be above 0");
    } else if (flag == "--rewrite-percent") {
      base.rewrite_fraction = PercentFlag(flag, value, 30);
    } else if (flag == "--append-percent") {
      base.append_fraction = PercentFlag(flag, value, 50);
    } else {
      UsageError(absl::StrCat("unknown flag ", flag));
    }
  }
  if (out.empty()) UsageError("--out is required");
  if (root_size == 0) UsageError("--root-size is required");

  struct Image {
    std::string name;
    VolumeSpec spec;
  };
  std::vector<Image> images;
  {
    VolumeSpec spec = base;
    spec.kind = VolumeSpec::kRootFs;
    spec.size = root_size;
    spec.seed = seed;
    images.push_back({"root.img", spec});
  }
  for (size_t i = 0; i < data_sizes.size(); ++i) {
    VolumeSpec spec = base;
    spec.kind = VolumeSpec::kData;
    spec.size = data_sizes[i];
    spec.seed = seed + 0x1000 * (i + 1);  // each data volume has its own content
    images.push_back({absl::StrCat("data", i + 1, ".img"), spec});
  }

  WriteOptions options;
  options.threads = static_cast<int>(threads);
  uint64_t total_bytes = 0;
  double total_seconds = 0;
  for (uint64_t v = 1; v <= versions; ++v) {
    const std::string dir = absl::StrCat(out, "/v", v);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "make_vm_group: mkdir %s: %s\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
    for (Image& image : images) {
      image.spec.version = static_cast<uint32_t>(v);
      const std::string path = absl::StrCat(dir, "/", image.name);
      absl::StatusOr<chunkferry::vmgen::WriteStats> stats = WriteVolume(image.spec, path, options);
      if (!stats.ok()) {
        std::fprintf(stderr, "make_vm_group: %s\n", stats.status().ToString().c_str());
        return 1;
      }
      std::printf(
          "%s size=%llu nonzero_bytes=%llu nonzero_pct=%.2f seconds=%.2f\n", path.c_str(),
          static_cast<unsigned long long>(stats->size),
          static_cast<unsigned long long>(stats->nonzero_bytes),
          100.0 * static_cast<double>(stats->nonzero_bytes) / static_cast<double>(stats->size),
          stats->seconds);
      std::fflush(stdout);
      total_bytes += stats->size;
      total_seconds += stats->seconds;
    }
  }
  std::fprintf(stderr, "make_vm_group: %.2f GiB of images in %.2f s (%.0f MB/s, %llu threads)\n",
               static_cast<double>(total_bytes) / (1u << 30), total_seconds,
               static_cast<double>(total_bytes) / 1e6 / std::max(total_seconds, 1e-9),
               static_cast<unsigned long long>(threads));
  return 0;
}
