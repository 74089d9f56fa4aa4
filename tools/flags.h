// Command-line flags of one subcommand: `--name=value`, `--name value` and boolean `--name`,
// checked against the flags the subcommand declares, so a typo is an error, not ignored.
#ifndef CHUNKFERRY_TOOLS_FLAGS_H_
#define CHUNKFERRY_TOOLS_FLAGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chunkferry::tools {

struct FlagSpec {
  FlagSpec(std::string name_in, std::string help_in, bool takes_value_in = true,
           std::string default_in = "")
      : name(std::move(name_in)),
        help(std::move(help_in)),
        takes_value(takes_value_in),
        default_value(std::move(default_in)) {}

  std::string name;  // without dashes
  std::string help;
  bool takes_value;           // false: a boolean flag
  std::string default_value;  // shown in help; "" when none
};

class Flags {
 public:
  // Parses args (after the subcommand's name). InvalidArgument for unknown flags, missing values
  // and stray positional arguments.
  static absl::StatusOr<Flags> Parse(const std::vector<FlagSpec>& specs,
                                     const std::vector<std::string>& args);

  bool Has(absl::string_view name) const { return values_.count(std::string(name)) > 0; }
  // The value given, or the spec's default.
  std::string Get(absl::string_view name) const;
  // A required flag; InvalidArgument naming it when absent.
  absl::StatusOr<std::string> Require(absl::string_view name) const;
  // Sizes with optional k/m/g/t suffix (binary).
  absl::StatusOr<uint64_t> GetSize(absl::string_view name) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view name) const;
  bool GetBool(absl::string_view name) const;

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> defaults_;
};

// io::ParseSize: "64k", "4M", "1g", "2TiB", "123".
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// Formats the flags of a subcommand for --help.
std::string FlagsHelp(const std::vector<FlagSpec>& specs);

}  // namespace chunkferry::tools

#endif  // CHUNKFERRY_TOOLS_FLAGS_H_
