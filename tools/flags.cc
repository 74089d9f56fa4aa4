#include "tools/flags.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "io/size.h"

namespace chunkferry::tools {

absl::StatusOr<Flags> Flags::Parse(const std::vector<FlagSpec>& specs,
                                   const std::vector<std::string>& args) {
  Flags f;
  for (const auto& s : specs) {
    if (!s.default_value.empty()) f.defaults_[s.name] = s.default_value;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view a = args[i];
    if (a.size() < 3 || a.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a, "'"));
    }
    a.remove_prefix(2);
    std::string name(a.substr(0, a.find('=')));
    const FlagSpec* spec = nullptr;
    for (const auto& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    std::string value;
    if (a.find('=') != absl::string_view::npos) {
      value = std::string(a.substr(a.find('=') + 1));
      if (!spec->takes_value && value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
    } else if (spec->takes_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    } else {
      value = "true";
    }
    if (f.values_.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    f.values_[name] = value;
  }
  return f;
}

std::string Flags::Get(absl::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it != values_.end()) return it->second;
  auto d = defaults_.find(std::string(name));
  return d == defaults_.end() ? "" : d->second;
}

absl::StatusOr<std::string> Flags::Require(absl::string_view name) const {
  std::string v = Get(name);
  if (v.empty()) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  return v;
}

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  return io::ParseSize(std::string_view(text.data(), text.size()));
}

absl::StatusOr<uint64_t> Flags::GetSize(absl::string_view name) const {
  auto v = ParseSize(Get(name));
  if (!v.ok())
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", v.status().message()));
  return v;
}

absl::StatusOr<int64_t> Flags::GetInt(absl::string_view name) const {
  int64_t v = 0;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be a whole number"));
  }
  return v;
}

bool Flags::GetBool(absl::string_view name) const { return Get(name) == "true"; }

std::string FlagsHelp(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    std::string left = absl::StrCat("  --", s.name, s.takes_value ? " VALUE" : "");
    if (left.size() < 28) left.resize(28, ' ');
    absl::StrAppend(&out, left, " ", s.help);
    if (!s.default_value.empty()) absl::StrAppend(&out, " (default ", s.default_value, ")");
    out += "\n";
  }
  return out;
}

}  // namespace chunkferry::tools
