// ideal_bytes: the dedupe yardstick for a new snapshot of a backup group.
//
//   ideal_bytes [--old IMG[,IMG...]] --new IMG[,IMG...]
//
// Takes the non-zero 4 KiB blocks of the new images whose content (XXH3-128) appears in no old
// image and not earlier in the new images, compresses them as ONE zstd level-1 stream, and prints
//   {"new_blocks":N,"new_raw_bytes":B,"ideal_zstd1_bytes":Z}
// Without --old it measures a first version. No store at 4 KiB granularity can add fewer bytes
// than Z without a stronger compressor. Bad flags exit 2 with the usage; I/O errors exit 1.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/vmgen/vm_image_gen.h"

namespace {

constexpr char kUsage[] =
    "usage: ideal_bytes [--old IMG[,IMG...]] --new IMG[,IMG...]\n"
    "  Prints {\"new_blocks\":N,\"new_raw_bytes\":B,\"ideal_zstd1_bytes\":Z}: the non-zero 4 KiB\n"
    "  blocks of the new images found in no old image and not earlier in the new ones, and\n"
    "  their size as one zstd -1 stream.\n";

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "ideal_bytes: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

std::vector<std::string> PathList(const std::string& flag, const std::string& value) {
  std::vector<std::string> paths;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    if (part.empty()) UsageError(absl::StrCat(flag, ": empty path in '", value, "'"));
    paths.emplace_back(part);
  }
  return paths;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> old_images;
  std::vector<std::string> new_images;
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
    if (flag == "--old") {
      for (std::string& p : PathList(flag, value)) old_images.push_back(std::move(p));
    } else if (flag == "--new") {
      for (std::string& p : PathList(flag, value)) new_images.push_back(std::move(p));
    } else {
      UsageError(absl::StrCat("unknown flag ", flag));
    }
  }
  if (new_images.empty()) UsageError("--new is required");
  absl::StatusOr<chunkferry::vmgen::IdealBytes> ideal =
      chunkferry::vmgen::MeasureIdealBytes(old_images, new_images);
  if (!ideal.ok()) {
    std::fprintf(stderr, "ideal_bytes: %s\n", ideal.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", chunkferry::vmgen::IdealBytesJson(*ideal).c_str());
  return 0;
}
