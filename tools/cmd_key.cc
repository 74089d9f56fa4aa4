// chunkferry key: manages a store daemon's keys file (`serve --keys`): add a named key with its
// rights and limits (and write the client's key file), remove one, list them without secrets.
// Every change rewrites the file atomically, mode 0600, only when the result parses; the daemon
// takes it on SIGHUP.
#include <openssl/crypto.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/wire/auth.h"
#include "engine/wire/key_ring.h"
#include "io/fd.h"
#include "tools/cli_common.h"

namespace chunkferry::tools {
namespace {

constexpr char kUsageText[] =
    "usage: chunkferry key add --keys FILE --name NAME --rights RIGHTS [--limits L] --out FILE\n"
    "       chunkferry key remove --keys FILE --name NAME\n"
    "       chunkferry key list --keys FILE [--json]\n"
    "\n"
    "RIGHTS: comma-separated read, append, delete, admin. L: space-separated connections=N,\n"
    "inflight=SIZE, quota=SIZE. Send the daemon SIGHUP after a change.\n";

// The keys file's text, or "" when it does not exist yet.
absl::StatusOr<std::string> ReadKeysText(const std::string& path) {
  absl::StatusOr<std::string> text = io::ReadPrivateFile(path, "keys file");
  if (absl::IsNotFound(text.status())) return std::string();
  return text;
}

// Writes `text` as the keys file after checking that it parses; wipes it from memory after.
absl::Status WriteKeysText(const std::string& path, std::string* text) {
  absl::Status st = engine::KeyRing::Parse(*text, path).status();
  if (st.ok()) st = io::WriteFileAtomic(path, *text);
  OPENSSL_cleanse(text->data(), text->size());
  return st;
}

// The name a keys file line gives, or "" for a blank or comment line.
std::string LineName(absl::string_view line) {
  line = absl::StripLeadingAsciiWhitespace(line);
  if (line.empty() || line[0] == '#') return "";
  return std::string(line.substr(0, line.find_first_of(" \t")));
}

int KeyAdd(const std::vector<std::string>& args) {
  constexpr char kCmd[] = "key add";
  Flags f;
  if (auto rc = ParseFlags(kCmd, "--keys FILE --name NAME --rights RIGHTS [--limits L] --out FILE",
                           {{"keys", "the daemon's keys file (created when missing)"},
                            {"name", "name of the new key (letters, digits, '.', '_', '-')"},
                            {"rights", "comma-separated: read, append, delete, admin"},
                            {"limits", "e.g. \"connections=4 inflight=64M quota=2T\"", true, ""},
                            {"out", "the client's key file to create (mode 0600)"}},
                           args, &f, {.about = "", .common = {"help"}})) {
    return *rc;
  }
  for (const char* flag : {"keys", "name", "rights", "out"}) {
    if (auto v = f.Require(flag); !v.ok()) return Usage(kCmd, v.status().message(), kUsageText);
  }
  const std::string keys_path = f.Get("keys");
  absl::StatusOr<std::string> text = ReadKeysText(keys_path);
  if (!text.ok()) return Fail(kCmd, text.status());
  absl::StatusOr<engine::AuthKey> key = engine::NewAuthKey();
  if (!key.ok()) return Fail(kCmd, key.status());
  key->name = f.Get("name");
  std::string hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(key->bytes.data()), key->bytes.size()));
  if (!text->empty() && text->back() != '\n') text->push_back('\n');
  absl::StrAppend(&*text, key->name, " ", f.Get("rights"), " ", hex,
                  f.Get("limits").empty() ? "" : " ", f.Get("limits"), "\n");
  OPENSSL_cleanse(hex.data(), hex.size());
  // Checked before anything is written: a bad name, right or limit changes nothing.
  if (absl::Status st = engine::KeyRing::Parse(*text, keys_path).status(); !st.ok()) {
    OPENSSL_cleanse(text->data(), text->size());
    return Fail(kCmd, st);
  }
  // The client's file first (it never overwrites): if the keys file cannot be written after,
  // it is removed and nothing changed.
  absl::Status st = engine::WriteKeyFile(f.Get("out"), *key);
  OPENSSL_cleanse(key->bytes.data(), key->bytes.size());
  if (!st.ok()) {
    OPENSSL_cleanse(text->data(), text->size());
    return Fail(kCmd, st);
  }
  if (st = WriteKeysText(keys_path, &*text); !st.ok()) {
    std::remove(f.Get("out").c_str());
    return Fail(kCmd, st);
  }
  std::printf("key '%s' (%s) added to %s; client key file %s. Send the daemon SIGHUP.\n",
              f.Get("name").c_str(), f.Get("rights").c_str(), keys_path.c_str(),
              f.Get("out").c_str());
  return kExitOk;
}

int KeyRemove(const std::vector<std::string>& args) {
  constexpr char kCmd[] = "key remove";
  Flags f;
  if (auto rc = ParseFlags(kCmd, "--keys FILE --name NAME",
                           {{"keys", "the daemon's keys file"}, {"name", "the key to remove"}},
                           args, &f, {.about = "", .common = {"help"}})) {
    return *rc;
  }
  for (const char* flag : {"keys", "name"}) {
    if (auto v = f.Require(flag); !v.ok()) return Usage(kCmd, v.status().message(), kUsageText);
  }
  absl::StatusOr<std::string> text = io::ReadPrivateFile(f.Get("keys"), "keys file");
  if (!text.ok()) return Fail(kCmd, text.status());
  std::vector<std::string> kept;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (LineName(line) == f.Get("name")) {
      found = true;
    } else {
      kept.emplace_back(line);
    }
  }
  OPENSSL_cleanse(text->data(), text->size());
  std::string out = absl::StrJoin(kept, "\n");
  for (std::string& line : kept) OPENSSL_cleanse(line.data(), line.size());
  if (!found) {
    OPENSSL_cleanse(out.data(), out.size());
    return Fail(kCmd, absl::NotFoundError(
                          absl::StrCat(f.Get("keys"), " has no key named '", f.Get("name"), "'")));
  }
  if (absl::Status st = WriteKeysText(f.Get("keys"), &out); !st.ok()) return Fail(kCmd, st);
  std::printf(
      "key '%s' removed from %s. Send the daemon SIGHUP: its connections close at their "
      "next request.\n",
      f.Get("name").c_str(), f.Get("keys").c_str());
  return kExitOk;
}

int KeyList(const std::vector<std::string>& args) {
  constexpr char kCmd[] = "key list";
  Flags f;
  if (auto rc = ParseFlags(kCmd, "--keys FILE [--json]", {{"keys", "the daemon's keys file"}}, args,
                           &f, {.about = "", .common = {"json", "help"}})) {
    return *rc;
  }
  if (auto v = f.Require("keys"); !v.ok()) return Usage(kCmd, v.status().message(), kUsageText);
  absl::StatusOr<engine::KeyRing> ring = engine::KeyRing::Load(f.Get("keys"));
  if (!ring.ok()) return Fail(kCmd, ring.status());
  Json list = Json::array();
  for (const engine::ClientKey& k : ring->keys()) {
    list.push_back(Json{{"name", k.name},
                        {"rights", engine::FormatRights(k.rights)},
                        {"connections", k.max_connections},
                        {"inflight", k.max_inflight},
                        {"quota", k.quota_bytes}});
    if (!f.GetBool("json")) {
      std::printf("%-24s %-20s connections=%s inflight=%s quota=%s\n", k.name.c_str(),
                  engine::FormatRights(k.rights).c_str(),
                  k.max_connections ? absl::StrCat(k.max_connections).c_str() : "-",
                  k.max_inflight ? HumanBytes(k.max_inflight).c_str() : "-",
                  k.quota_bytes ? HumanBytes(k.quota_bytes).c_str() : "-");
    }
  }
  if (f.GetBool("json")) std::printf("%s\n", list.dump(2).c_str());
  return kExitOk;
}

}  // namespace

int CmdKey(const std::vector<std::string>& args) {
  const std::string sub = args.empty() ? "" : args[0];
  const std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
  if (sub == "add") return KeyAdd(rest);
  if (sub == "remove") return KeyRemove(rest);
  if (sub == "list") return KeyList(rest);
  return Usage("key", "the key command takes a subcommand: add, remove or list", kUsageText);
}

}  // namespace chunkferry::tools
