#include "bench/vmgen/vm_image_gen.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/status_macros.h"

namespace chunkferry::vmgen {
namespace {

constexpr uint32_t kBlocksPerGroup = static_cast<uint32_t>(kGroupSize / kBlockSize);  // 8192
constexpr uint32_t kBlocksPerRegion = static_cast<uint32_t>(kRegionSize / kBlockSize);
constexpr uint32_t kInodeSize = 256;
constexpr uint32_t kInodesPerBlock = static_cast<uint32_t>(kBlockSize / kInodeSize);  // 16
constexpr uint32_t kInodesPerGroup = 2048;
constexpr uint32_t kInodeTableBlocks = kInodesPerGroup / kInodesPerBlock;  // 128
constexpr uint32_t kReservedInodes = 11;  // ext4's first non-reserved inode
constexpr uint32_t kGroupDescSize = 64;
constexpr uint32_t kMaxFileBlocks = 1024;  // 4 MiB
constexpr double kMeanFileBlocks = 30.6;   // of FileBlocks() below
constexpr uint32_t kRewriteCell = 16;      // rewrites cluster inside 64 KiB cells
// Mean rewrite run in a touched cell: 1 block with probability 77/256, else 2..12 uniformly.
constexpr double kMeanRewriteRun = 77.0 / 256 + (1 - 77.0 / 256) * 7;
constexpr size_t kIoBufferSize = 4u << 20;

// Domain tags: each independent decision draws from its own hash stream.
enum Tag : uint64_t {
  kTagVolume = 0x766f6c,
  kTagGroup,
  kTagWeight,
  kTagPool,
  kTagAppend,
  kTagRewrite,
  kTagRewriteContent,
  kTagInode,
  kTagSuper,
  kTagGroupDesc,
  kTagData,
};

// splitmix64's finalizer: a bijective, well-mixing 64-bit hash.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
inline uint64_t Hash(uint64_t a, uint64_t b) { return Mix64(a ^ Mix64(b + 0x9e3779b97f4a7c15ULL)); }
inline uint64_t Hash(uint64_t a, uint64_t b, uint64_t c) { return Hash(Hash(a, b), c); }
inline uint64_t Hash(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return Hash(Hash(a, b, c), d);
}

// splitmix64: fast, small state, good enough for content.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return Mix64(state_);
  }
  // Uniform in [0, n).
  uint32_t Below(uint32_t n) {
    return static_cast<uint32_t>((static_cast<uint64_t>(static_cast<uint32_t>(Next())) * n) >> 32);
  }
  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

inline void Put16(uint8_t* p, uint64_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void Put32(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Appends bytes to a fixed buffer, silently truncating at its end: generators write whole lines
// and the block simply ends where the buffer does.
class Writer {
 public:
  Writer(uint8_t* p, size_t cap) : p_(p), cap_(cap) {}
  bool full() const { return pos_ >= cap_; }
  size_t pos() const { return pos_; }
  size_t room() const { return cap_ - pos_; }
  void Put(const char* s, size_t n) {
    n = std::min(n, cap_ - pos_);
    std::memcpy(p_ + pos_, s, n);
    pos_ += n;
  }
  void Put(std::string_view s) { Put(s.data(), s.size()); }
  void Byte(uint8_t c) {
    if (pos_ < cap_) p_[pos_++] = c;
  }
  void Bytes(const uint8_t* s, size_t n) { Put(reinterpret_cast<const char*>(s), n); }
  void Fill(uint8_t c, size_t n) {
    n = std::min(n, cap_ - pos_);
    std::memset(p_ + pos_, c, n);
    pos_ += n;
  }
  void Dec(uint64_t v) {
    char buf[20];
    int n = 0;
    do {
      buf[19 - n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    Put(buf + 20 - n, static_cast<size_t>(n));
  }
  // Writes `v` in decimal padded with zeros to `width` digits.
  void Dec(uint64_t v, int width) {
    char buf[20];
    for (int i = width - 1; i >= 0; --i) {
      buf[i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
    Put(buf, static_cast<size_t>(width));
  }
  void Hex(uint64_t v, int digits) {
    static constexpr char kDigits[] = "0123456789abcdef";
    char buf[16];
    for (int i = digits - 1; i >= 0; --i) {
      buf[i] = kDigits[v & 15];
      v >>= 4;
    }
    Put(buf, static_cast<size_t>(digits));
  }

 private:
  uint8_t* p_;
  size_t cap_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The shared "language" of text blocks: a vocabulary, phrases of a few words, message templates.
// Built once from a fixed seed, so all volumes speak the same language, as real systems do.

constexpr const char* kCommonWords[] = {
    "the",         "of",         "and",         "to",          "a",
    "in",          "is",         "for",         "that",        "with",
    "on",          "as",         "be",          "by",          "this",
    "it",          "are",        "or",          "from",        "not",
    "an",          "at",         "if",          "file",        "you",
    "can",         "will",       "use",         "which",       "default",
    "all",         "set",        "value",       "system",      "when",
    "has",         "have",       "used",        "data",        "user",
    "name",        "other",      "any",         "new",         "one",
    "config",      "no",         "only",        "package",     "more",
    "also",        "may",        "should",      "must",        "each",
    "list",        "path",       "type",        "these",       "but",
    "see",         "option",     "support",     "than",        "into",
    "debian",      "linux",      "kernel",      "module",      "service",
    "network",     "device",     "server",      "client",      "boot",
    "root",        "usr",        "lib",         "share",       "etc",
    "var",         "log",        "bin",         "error",       "warning",
    "info",        "debug",      "start",       "stop",        "restart",
    "update",      "install",    "remove",      "version",     "license",
    "copyright",   "gnu",        "general",     "public",      "software",
    "free",        "without",    "warranty",    "program",     "distributed",
    "under",       "terms",      "source",      "code",        "library",
    "python",      "perl",       "shell",       "script",      "function",
    "return",      "true",       "false",       "null",        "none",
    "enable",      "disable",    "enabled",     "disabled",    "interface",
    "address",     "port",       "host",        "local",       "remote",
    "session",     "process",    "thread",      "memory",      "cache",
    "buffer",      "queue",      "timeout",     "limit",       "size",
    "count",       "number",     "index",       "table",       "record",
    "entry",       "key",        "string",      "object",      "class",
    "method",      "argument",   "parameter",   "variable",    "environment",
    "directory",   "files",      "permission",  "access",      "read",
    "write",       "open",       "close",       "create",      "delete",
    "mount",       "disk",       "volume",      "partition",   "image",
    "backup",      "snapshot",   "store",       "block",       "stream",
    "socket",      "connection", "request",     "response",    "status",
    "state",       "event",      "handler",     "message",     "output",
    "input",       "format",     "text",        "line",        "field",
    "column",      "header",     "page",        "document",    "manual",
    "section",     "example",    "description", "usage",       "command",
    "options",     "flags",      "mode",        "level",       "time",
    "date",        "second",     "minute",      "hour",        "day",
    "systemd",     "unit",       "target",      "timer",       "journal",
    "cron",        "apt",        "dpkg",        "ssh",         "sshd",
    "udev",        "dbus",       "polkit",      "grub",        "initramfs",
    "firmware",    "driver",     "pci",         "usb",         "eth0",
    "ipv4",        "ipv6",       "dns",         "dhcp",        "tcp",
    "udp",         "http",       "https",       "ssl",         "tls",
    "certificate", "security",   "policy",      "rule",        "filter",
    "chain",       "accept",     "drop",        "allow",       "deny",
    "group",       "owner",      "mask",        "uid",         "gid",
    "pid",         "exit",       "signal",      "child",       "parent",
    "spawn",       "daemon",     "worker",      "job",         "task",
    "schedule",    "run",        "running",     "stopped",     "failed",
    "success",     "complete",   "pending",     "active",      "inactive",
    "loaded",      "reached",    "started",     "finished",    "received",
    "sent",        "opened",     "closed",      "pam_unix",    "authentication",
    "password",    "account",    "login",       "console",     "terminal",
    "tty",         "display",    "keyboard",    "locale",      "utf8",
    "charset",     "encoding",   "language",    "translation", "english",
    "catalog",     "include",    "define",      "struct",      "int",
    "char",        "void",       "const",       "static",      "unsigned",
    "long",        "double",     "float",       "bool",        "else",
    "while",       "break",      "continue",    "switch",      "case",
    "import",      "export",     "def",         "self",        "echo",
    "then",        "done",       "do",          "elif",        "fi",
    "local",       "print",      "len",         "range",       "dict",
    "append",
};

constexpr const char* kSyllables[] = {
    "ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "di", "va", "ro", "ti", "na", "se",
    "ko", "mi", "la", "re", "po", "fu", "ba", "de", "gi", "ho", "ju", "ly", "ex", "al",
    "on", "in", "er", "an", "st", "tr", "ch", "sh", "th", "qu", "or", "ul", "ck", "ing",
};

constexpr const char* kExtensions[] = {".conf", ".so", ".py",      ".gz",   ".h",    ".txt",
                                       ".pl",   ".sh", ".service", ".json", ".list", ".mo"};

constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

constexpr uint32_t kNumWords = 4096;
constexpr uint32_t kNumPhrases = 4096;
constexpr uint32_t kNumTemplates = 512;
constexpr uint32_t kNumServices = 32;

// A message template: literal text with slots '\1' (a decimal number), '\2' (8 hex digits),
// '\3' (a word), '\4' (a path).
struct Lexicon {
  std::vector<std::string> words;    // by rank: common first
  std::vector<std::string> phrases;  // by rank
  std::vector<std::string> templates;
  std::vector<std::string> services;
  std::array<uint16_t, 65536> word_zipf;      // uniform 16 bits -> word rank
  std::array<uint16_t, 65536> phrase_zipf;    // uniform 16 bits -> phrase rank
  std::array<uint16_t, 65536> template_zipf;  // uniform 16 bits -> template rank

  const std::string& Word(Rng& rng) const { return words[word_zipf[rng.Next() & 0xFFFF]]; }
  const std::string& Phrase(Rng& rng) const { return phrases[phrase_zipf[rng.Next() & 0xFFFF]]; }
};

// Fills `table` so that a uniform 16-bit index picks rank r of n with probability proportional
// to 1/(r+1), or 1/(r+1)^1.5 when `steep`. Only correctly rounded operations (no pow), so the
// tables, and hence the content, are the same on every machine.
void BuildZipf(std::array<uint16_t, 65536>& table, uint32_t n, bool steep) {
  std::vector<double> cumulative(n);
  double total = 0;
  for (uint32_t r = 0; r < n; ++r) {
    const double x = static_cast<double>(r + 1);
    total += 1.0 / (steep ? x * std::sqrt(x) : x);
    cumulative[r] = total;
  }
  uint32_t r = 0;
  for (uint32_t i = 0; i < table.size(); ++i) {
    const double target = (i + 0.5) / static_cast<double>(table.size()) * total;
    while (r + 1 < n && cumulative[r] < target) ++r;
    table[i] = static_cast<uint16_t>(r);
  }
}

Lexicon* BuildLexicon() {
  auto* lex = new Lexicon;
  Rng rng(0x6c657869636f6eULL);
  absl::flat_hash_set<std::string> seen;
  for (const char* w : kCommonWords) {
    if (seen.insert(w).second) lex->words.push_back(w);
  }
  while (lex->words.size() < kNumWords) {
    std::string w;
    const uint32_t syllables = 1 + rng.Below(4);
    for (uint32_t i = 0; i < syllables; ++i) w += kSyllables[rng.Below(std::size(kSyllables))];
    if (seen.insert(w).second) lex->words.push_back(std::move(w));
  }
  BuildZipf(lex->word_zipf, kNumWords, false);
  for (uint32_t i = 0; i < kNumPhrases; ++i) {
    std::string p;
    const uint32_t n = 2 + rng.Below(4);
    for (uint32_t k = 0; k < n; ++k) {
      if (k) p += ' ';
      p += lex->Word(rng);
    }
    lex->phrases.push_back(std::move(p));
  }
  BuildZipf(lex->phrase_zipf, kNumPhrases, false);
  for (uint32_t i = 0; i < kNumTemplates; ++i) {
    std::string t;
    const uint32_t parts = 2 + rng.Below(4);
    for (uint32_t k = 0; k < parts; ++k) {
      if (k) t += ' ';
      switch (rng.Below(8)) {
        case 0:
          t += "\1";
          break;
        case 1:
          t += rng.Below(2) ? "id=\2" : "0x\2";
          break;
        case 2:
          t += "'\3'";
          break;
        case 3:
          t += "\4";
          break;
        case 4:
          t += lex->Word(rng) + "=\1";
          break;
        default:
          t += lex->Phrase(rng);
      }
    }
    lex->templates.push_back(std::move(t));
  }
  BuildZipf(lex->template_zipf, kNumTemplates, false);
  for (uint32_t i = 0; i < kNumServices; ++i) {
    lex->services.push_back(lex->words[64 + rng.Below(512)] + (rng.Below(3) == 0 ? "d" : ""));
  }
  return lex;
}

const Lexicon& GetLexicon() {
  static const Lexicon* const lex = BuildLexicon();  // intentionally leaked
  return *lex;
}

// ---------------------------------------------------------------------------------------------
// Content of one block of each kind. `flavor` is the file's (or region's), `seed` the block's;
// each fills out[0, n) and leaves the rest of the block to the caller.

enum TextFlavor : uint8_t { kProse, kConfig, kLog, kCode, kCsv, kNumTextFlavors };

void PutPath(const Lexicon& lex, Rng& rng, Writer& w) {
  const uint32_t depth = 1 + rng.Below(4);
  for (uint32_t i = 0; i < depth; ++i) {
    w.Byte('/');
    w.Put(lex.Word(rng));
  }
  if (rng.Below(2)) w.Put(kExtensions[rng.Below(std::size(kExtensions))]);
}

void PutTemplate(const Lexicon& lex, const std::string& t, Rng& rng, Writer& w) {
  size_t lit = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c > 4) continue;
    w.Put(t.data() + lit, i - lit);
    lit = i + 1;
    switch (c) {
      case 1:
        w.Dec(rng.Below(4) == 0 ? rng.Below(100000) : rng.Below(100));
        break;
      case 2:
        w.Hex(rng.Next(), 8);
        break;
      case 3:
        w.Put(lex.Word(rng));
        break;
      default:
        PutPath(lex, rng, w);
    }
  }
  w.Put(t.data() + lit, t.size() - lit);
}

void FillText(uint8_t flavor, uint64_t file_seed, uint64_t seed, uint8_t* out, size_t n) {
  const Lexicon& lex = GetLexicon();
  Rng rng(seed);
  Writer w(out, n);
  switch (flavor) {
    case kProse: {
      size_t col = 0;
      while (!w.full()) {
        const uint32_t sentence = 2 + rng.Below(5);
        for (uint32_t s = 0; s < sentence && !w.full(); ++s) {
          const std::string& p = rng.Below(5) == 0 ? lex.Word(rng) : lex.Phrase(rng);
          if (col + p.size() > 72) {
            w.Byte('\n');
            col = 0;
          } else if (col > 0) {
            w.Byte(' ');
            ++col;
          }
          if (s == 0 && !p.empty()) {
            w.Byte(static_cast<uint8_t>(absl::ascii_toupper(p[0])));
            w.Put(p.data() + 1, p.size() - 1);
          } else {
            w.Put(p);
          }
          col += p.size();
        }
        w.Byte('.');
        ++col;
        if (rng.Below(5) == 0) {
          w.Put("\n\n");
          col = 0;
        }
      }
      break;
    }
    case kConfig: {
      while (!w.full()) {
        const uint32_t k = rng.Below(100);
        if (k < 25) {
          w.Put("# ");
          w.Put(lex.Phrase(rng));
          if (rng.Below(2)) {
            w.Byte(' ');
            w.Put(lex.Phrase(rng));
          }
        } else if (k < 30) {
          // blank line
        } else if (k < 35) {
          w.Byte('[');
          w.Put(lex.Word(rng));
          w.Byte(']');
        } else {
          // A file has a few dozen settings; each has a name, a kind of value and a default
          // that most occurrences keep.
          Rng key(Hash(file_seed, rng.Below(48)));
          w.Put(lex.Word(key));
          if (key.Below(2)) {
            w.Byte('_');
            w.Put(lex.Word(key));
          }
          w.Put(" = ");
          Rng& value = rng.Below(3) == 0 ? rng : key;
          switch (key.Below(5)) {
            case 0:
              w.Dec(value.Below(3) ? value.Below(100) : value.Below(1000000));
              break;
            case 1:
              w.Put(value.Below(2) ? "yes" : "no");
              break;
            case 2:
              PutPath(lex, value, w);
              break;
            case 3:
              w.Put(lex.Phrase(value));
              break;
            default:
              w.Put(lex.Word(value));
          }
        }
        w.Byte('\n');
      }
      break;
    }
    case kLog: {
      // Syslog lines; a block covers a few minutes of one host's log.
      uint64_t t = rng.Below(365u * 86400u);
      const std::string& host = lex.words[64 + (file_seed % 256)];
      uint32_t pids[4];
      for (uint32_t& p : pids) p = 300 + rng.Below(60000);
      while (!w.full()) {
        t += rng.Below(4) == 0 ? rng.Below(60) : 0;
        const uint32_t day = static_cast<uint32_t>(t / 86400);
        w.Put(kMonths[(day / 31) % 12]);
        w.Byte(' ');
        w.Dec(1 + day % 28, 2);
        w.Byte(' ');
        w.Dec(t / 3600 % 24, 2);
        w.Byte(':');
        w.Dec(t / 60 % 60, 2);
        w.Byte(':');
        w.Dec(t % 60, 2);
        w.Byte(' ');
        w.Put(host);
        w.Byte(' ');
        const uint32_t svc = rng.Below(4);
        w.Put(lex.services[(file_seed >> 8 >> (svc * 5)) % kNumServices]);
        w.Byte('[');
        w.Dec(pids[svc]);
        w.Put("]: ");
        PutTemplate(lex, lex.templates[lex.template_zipf[rng.Next() & 0xFFFF]], rng, w);
        w.Byte('\n');
      }
      break;
    }
    case kCode: {
      uint32_t indent = 0;
      while (!w.full()) {
        w.Fill(' ', 4 * indent);
        switch (rng.Below(10)) {
          case 0:
            w.Put("def ");
            w.Put(lex.Word(rng));
            w.Byte('_');
            w.Put(lex.Word(rng));
            w.Put("(self, ");
            w.Put(lex.Word(rng));
            w.Put("):");
            indent = 1;
            break;
          case 1:
            w.Put("if ");
            w.Put(lex.Word(rng));
            w.Put(" == ");
            w.Dec(rng.Below(64));
            w.Byte(':');
            if (indent < 4) ++indent;
            break;
          case 2:
            w.Put("return self.");
            w.Put(lex.Word(rng));
            w.Byte('(');
            w.Put(lex.Word(rng));
            w.Byte(')');
            if (indent > 1) --indent;
            break;
          case 3:
            w.Put("# ");
            w.Put(lex.Phrase(rng));
            break;
          case 4:
            w.Put("for ");
            w.Put(lex.Word(rng));
            w.Put(" in self.");
            w.Put(lex.Word(rng));
            w.Put(":");
            if (indent < 4) ++indent;
            break;
          default:
            w.Put(lex.Word(rng));
            w.Put(" = self.");
            w.Put(lex.Word(rng));
            w.Byte('.');
            w.Put(lex.Word(rng));
            w.Byte('(');
            w.Put(lex.Word(rng));
            w.Put(", ");
            w.Dec(rng.Below(16));
            w.Byte(')');
        }
        w.Byte('\n');
      }
      break;
    }
    default: {  // kCsv: rows of a table export
      uint64_t id = rng.Below(1u << 30);
      uint64_t t = rng.Below(365u * 86400u);
      while (!w.full()) {
        w.Dec(++id);
        w.Put(",2024-");
        const uint32_t day = static_cast<uint32_t>(t / 86400);
        w.Dec(1 + day / 31 % 12, 2);
        w.Byte('-');
        w.Dec(1 + day % 28, 2);
        w.Byte('T');
        w.Dec(t / 3600 % 24, 2);
        w.Byte(':');
        w.Dec(t / 60 % 60, 2);
        w.Byte(':');
        w.Dec(t % 60, 2);
        t += rng.Below(8);
        w.Put("Z,");
        w.Put(lex.Word(rng));
        w.Byte(',');
        w.Put(lex.Word(rng));
        w.Byte(',');
        w.Dec(rng.Below(3) ? rng.Below(16) : rng.Below(1000));
        w.Byte(',');
        w.Dec(rng.Below(1000));
        w.Put(rng.Below(2) ? ".00," : ".50,");
        if (rng.Below(4) == 0) w.Hex(rng.Next(), 8);
        w.Byte(',');
        w.Put(lex.services[(file_seed >> (rng.Below(4) * 5)) % kNumServices]);
        w.Byte('\n');
      }
    }
  }
}

// An x86-64-like instruction: fixed opcode bytes, then an operand.
enum Operand : uint8_t { kNone, kImm8, kDisp8, kRel32, kImm32 };
struct Op {
  uint8_t bytes[4];
  uint8_t len;
  Operand operand;
};
// Roughly by frequency in compiled code.
constexpr Op kOps[] = {
    {{0x48, 0x89, 0xC7}, 3, kNone},
    {{0x48, 0x8B, 0x45}, 3, kDisp8},
    {{0xE8}, 1, kRel32},
    {{0x48, 0x89, 0x45}, 3, kDisp8},
    {{0x8B, 0x45}, 2, kDisp8},
    {{0x89, 0x45}, 2, kDisp8},
    {{0x48, 0x8D, 0x3D}, 3, kRel32},
    {{0x74}, 1, kImm8},
    {{0x75}, 1, kImm8},
    {{0x31, 0xC0}, 2, kNone},
    {{0x48, 0x85, 0xC0}, 3, kNone},
    {{0x0F, 0x84}, 2, kRel32},
    {{0x48, 0x83, 0xC4}, 3, kImm8},
    {{0x48, 0x83, 0xEC}, 3, kImm8},
    {{0xEB}, 1, kImm8},
    {{0x85, 0xC0}, 2, kNone},
    {{0x83, 0xF8}, 2, kImm8},
    {{0x48, 0x89, 0xDF}, 3, kNone},
    {{0x4C, 0x89, 0xE7}, 3, kNone},
    {{0x48, 0x8B, 0x05}, 3, kRel32},
    {{0xBF}, 1, kImm32},
    {{0xB8}, 1, kImm32},
    {{0x0F, 0x85}, 2, kRel32},
    {{0x48, 0x8D, 0x35}, 3, kRel32},
    {{0x41, 0x89, 0xC4}, 3, kNone},
    {{0x0F, 0xB6, 0x45}, 3, kDisp8},
    {{0xFF, 0x15}, 2, kRel32},
    {{0x48, 0x8B, 0x7D}, 3, kDisp8},
    {{0x48, 0x8B, 0x43}, 3, kDisp8},
    {{0x48, 0x89, 0x43}, 3, kDisp8},
    {{0x5B}, 1, kNone},
    {{0x5D}, 1, kNone},
    {{0x41, 0x5C}, 2, kNone},
    {{0x53}, 1, kNone},
    {{0x41, 0x54}, 2, kNone},
    {{0x48, 0x01, 0xD0}, 3, kNone},
    {{0x48, 0x29, 0xC2}, 3, kNone},
    {{0x48, 0x39, 0xC3}, 3, kNone},
    {{0x0F, 0x1F, 0x40}, 3, kImm8},
    {{0xC7, 0x45}, 2, kDisp8},
    {{0x48, 0xC7, 0xC0}, 3, kImm32},
    {{0x66, 0x0F, 0xEF, 0xC0}, 4, kNone},
};
constexpr uint8_t kImm8Values[] = {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x18, 0x20,
                                   0x28, 0x30, 0x38, 0x40, 0xFF, 0xF8, 0xF0, 0x03};
constexpr uint8_t kPrologue[] = {0x55, 0x48, 0x89, 0xE5, 0x41, 0x57, 0x41, 0x56,
                                 0x41, 0x55, 0x41, 0x54, 0x53, 0x48, 0x83, 0xEC};

const std::array<uint8_t, 256>& OpZipf() {
  static const std::array<uint8_t, 256> table = [] {
    std::array<uint16_t, 65536> wide;
    BuildZipf(wide, std::size(kOps), true);
    std::array<uint8_t, 256> t;
    for (int i = 0; i < 256; ++i) t[i] = static_cast<uint8_t>(wide[i * 256 + 128]);
    return t;
  }();
  return table;
}

void FillCode(Rng& rng, Writer& w, size_t len) {
  const std::array<uint8_t, 256>& zipf = OpZipf();
  const size_t end = std::min(w.pos() + len, w.pos() + w.room());
  uint32_t until_ret = 8 + rng.Below(48);
  while (w.pos() < end) {
    if (until_ret-- == 0) {
      // Function end, padding to 16 bytes, next prologue.
      w.Byte(0xC3);
      w.Fill(rng.Below(2) ? 0xCC : 0x90, (16 - w.pos() % 16) % 16);
      w.Bytes(kPrologue, 4 + 2 * rng.Below(5));
      until_ret = 8 + rng.Below(48);
      continue;
    }
    const uint64_t r = rng.Next();
    const Op& op = kOps[zipf[r & 0xFF]];
    w.Bytes(op.bytes, op.len);
    switch (op.operand) {
      case kImm8:
        w.Byte((r >> 8 & 7) == 0 ? static_cast<uint8_t>(r >> 16) : kImm8Values[r >> 12 & 15]);
        break;
      case kDisp8:
        w.Byte(static_cast<uint8_t>((r >> 8 & 1) ? 0x100 - 8 * (1 + (r >> 9 & 15))
                                                 : 8 * (r >> 9 & 15)));
        break;
      case kRel32: {
        uint8_t b[4];
        const bool back = (r >> 8 & 1) != 0;
        Put16(b, r >> 16);
        b[2] = back ? 0xFF : static_cast<uint8_t>((r >> 32 & 7) == 0 ? 1 : 0);
        b[3] = back ? 0xFF : 0x00;
        w.Bytes(b, 4);
        break;
      }
      case kImm32: {
        uint8_t b[4];
        Put32(b, (r >> 8) % 4096);
        w.Bytes(b, 4);
        break;
      }
      case kNone:
        break;
    }
  }
}

void FillBinary(uint64_t file_seed, uint64_t seed, uint8_t* out, size_t n) {
  const Lexicon& lex = GetLexicon();
  Rng rng(seed);
  Writer w(out, n);
  // Pointers of one file share their high bytes, as in a relocated binary.
  const uint64_t base = 0x0000555555000000ULL + ((file_seed & 0xFFF) << 20);
  while (!w.full()) {
    const uint32_t kind = rng.Below(100);
    const size_t len = 64 + rng.Below(448);
    if (kind < 70) {
      FillCode(rng, w, len);
    } else if (kind < 82) {
      for (size_t i = 0; i < len / 8; ++i) {
        uint8_t b[8];
        Put64(b, rng.Below(8) == 0 ? 0 : base + (rng.Below(1u << 20) & ~7u));
        w.Bytes(b, 8);
      }
    } else if (kind < 94) {
      const size_t end = w.pos() + len;
      while (w.pos() < end && !w.full()) {
        if (rng.Below(3) == 0) w.Put("_ZN");
        w.Put(lex.Word(rng));
        w.Byte('_');
        w.Put(lex.Word(rng));
        w.Byte(0);
      }
    } else if (w.pos() > 0) {
      w.Fill(0, len / 2);  // section alignment
    }
  }
}

void FillRandom(uint64_t seed, uint8_t* out, size_t n) {
  Rng rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) Put64(out + i, rng.Next());
  if (i < n) {
    uint8_t tail[8];
    Put64(tail, rng.Next());
    std::memcpy(out + i, tail, n - i);
  }
}

// Fills `slots` 256-byte ext4-like inodes; each slot depends only on (seed, slot), so a block
// that gains inodes keeps its existing ones.
void FillInodes(uint64_t seed, uint64_t epoch, uint32_t slots, uint8_t* out) {
  for (uint32_t i = 0; i < slots; ++i) {
    uint8_t* p = out + i * kInodeSize;
    Rng rng(Hash(seed, i));
    const uint32_t type = rng.Below(10);
    const uint64_t size = type < 2            ? 4096
                          : rng.Below(4) == 0 ? rng.Below(1u << 22)
                                              : rng.Below(1u << 15);
    const uint64_t t = epoch + rng.Below(86400 * 60);
    Put16(p + 0x00, type < 2 ? 0x41ED : type < 4 ? 0x81ED : type == 4 ? 0xA1FF : 0x81A4);
    Put32(p + 0x04, size);
    Put32(p + 0x08, t + rng.Below(1000));
    Put32(p + 0x0C, t);
    Put32(p + 0x10, t);
    Put16(p + 0x1A, type < 2 ? 2 + rng.Below(8) : 1);
    Put32(p + 0x1C, (size + 4095) / 4096 * 8);
    Put32(p + 0x20, 0x80000);  // EXT4_EXTENTS_FL
    Put16(p + 0x28, 0xF30A);   // extent header: magic, 1 entry, max 4, depth 0
    Put16(p + 0x2A, 1);
    Put16(p + 0x2C, 4);
    Put16(p + 0x34 + 4, (size + 4095) / 4096);
    Put32(p + 0x34 + 8, rng.Below(1u << 22));
    Put32(p + 0x64, rng.Next());  // generation
    Put16(p + 0x7C, rng.Next());  // checksum lo
    Put16(p + 0x80, 32);          // extra isize
    Put16(p + 0x82, rng.Next());  // checksum hi
    Put32(p + 0x84, rng.Next() & 0xFFFFFFFC);
    Put32(p + 0x88, rng.Next() & 0xFFFFFFFC);
    Put32(p + 0x8C, rng.Next() & 0xFFFFFFFC);
    Put32(p + 0x90, t);
    Put32(p + 0x94, rng.Next() & 0xFFFFFFFC);
  }
}

void FillDirectory(uint64_t seed, uint8_t* out, size_t n) {
  const Lexicon& lex = GetLexicon();
  Rng rng(seed);
  const uint32_t base_ino = 12 + rng.Below(100000);
  const uint32_t entries = 2 + rng.Below(100);
  size_t pos = 0;
  size_t last = 0;
  char name[300];
  for (uint32_t e = 0; e < entries; ++e) {
    size_t name_len;
    uint8_t type = 1;
    if (e < 2) {
      name_len = e + 1;
      std::memset(name, '.', name_len);
      type = 2;
    } else {
      const std::string& word = lex.Word(rng);
      name_len = word.size();
      std::memcpy(name, word.data(), name_len);
      if (rng.Below(2)) {
        const char* ext = kExtensions[rng.Below(std::size(kExtensions))];
        std::memcpy(name + name_len, ext, std::strlen(ext));
        name_len += std::strlen(ext);
      } else if (rng.Below(3) == 0) {
        type = 2;
      }
    }
    const size_t rec_len = (8 + name_len + 3) & ~size_t{3};
    if (pos + rec_len > n) break;
    Put32(out + pos, e == 0 ? base_ino : e == 1 ? base_ino / 2 : base_ino + rng.Below(4096));
    Put16(out + pos + 4, rec_len);
    out[pos + 6] = static_cast<uint8_t>(name_len);
    out[pos + 7] = type;
    std::memcpy(out + pos + 8, name, name_len);
    last = pos;
    pos += rec_len;
  }
  Put16(out + last + 4, n - last);  // the last entry spans the rest of the block
}

// ---------------------------------------------------------------------------------------------
// Layouts.

// A run of blocks of one group holding consecutive blocks of one file (or metadata structure).
struct Extent {
  uint32_t start = 0;   // first block, relative to the group
  uint32_t blocks = 0;  // length
  BlockKind kind = BlockKind::kZero;
  uint8_t sub = 0;                   // text flavor; for kBitmap 0 = block bitmap, 1 = inode bitmap
  uint32_t version = 1;              // the version that added it
  uint32_t file_block0 = 0;          // index of `start` within its file
  uint32_t file_blocks = 0;          // blocks in the whole file
  uint32_t last_bytes = kBlockSize;  // bytes of content in the file's last block
  uint64_t seed = 0;                 // the file's content seed
};

struct FileDesc {
  BlockKind kind = BlockKind::kZero;
  uint8_t sub = 0;
  uint32_t blocks = 0;
  uint32_t last_bytes = kBlockSize;
  uint64_t seed = 0;
};

// One group's layout at the spec's version.
struct GroupLayout {
  uint64_t index = ~uint64_t{0};
  uint32_t blocks = 0;
  uint32_t inodes_used = 0;
  std::vector<Extent> extents;     // sorted by start, disjoint
  std::vector<uint64_t> occupied;  // one bit per block
  std::vector<FileDesc> files;     // scratch: files placed so far, for copies

  bool Occupied(uint32_t b) const { return (occupied[b >> 6] >> (b & 63)) & 1; }
  void Occupy(uint32_t start, uint32_t n) {
    for (uint32_t b = start; b < start + n; ++b) occupied[b >> 6] |= uint64_t{1} << (b & 63);
  }
  // Returns the first block in [from, to) whose occupancy is `want`, or `to`.
  uint32_t Find(uint32_t from, uint32_t to, bool want) const {
    uint32_t b = from;
    while (b < to) {
      uint64_t word = occupied[b >> 6];
      if (!want) word = ~word;
      word &= ~uint64_t{0} << (b & 63);
      if (word != 0) return std::min(to, (b & ~63u) + static_cast<uint32_t>(__builtin_ctzll(word)));
      b = (b & ~63u) + 64;
    }
    return to;
  }
};

// Returns a file size in blocks, 1 to kMaxFileBlocks: about 1024^(u^6) for a uniform u (most
// files are one block, most bytes are in files of hundreds of blocks), with 2^x interpolated
// linearly between powers of two so that no libm call can make machines disagree.
uint32_t FileBlocks(Rng& rng) {
  const double u = rng.Unit();
  const double x = 10 * (u * u * u) * (u * u * u);  // log2 of the size, in [0, 10)
  const int whole = static_cast<int>(x);
  const double b = static_cast<double>(1u << whole) * (1 + (x - whole));
  return std::clamp(static_cast<uint32_t>(b), 1u, kMaxFileBlocks);
}

bool HasSuperblockBackup(uint64_t g) {
  if (g <= 1) return true;
  for (uint64_t base : {3, 5, 7}) {
    uint64_t p = base;
    while (p < g) p *= base;
    if (p == g) return true;
  }
  return false;
}

}  // namespace

std::string_view BlockKindName(BlockKind kind) {
  switch (kind) {
    case BlockKind::kZero:
      return "zero";
    case BlockKind::kText:
      return "text";
    case BlockKind::kBinary:
      return "binary";
    case BlockKind::kRandom:
      return "random";
    case BlockKind::kSuperblock:
      return "superblock";
    case BlockKind::kGroupDesc:
      return "group_desc";
    case BlockKind::kBitmap:
      return "bitmap";
    case BlockKind::kInodeTable:
      return "inode_table";
    case BlockKind::kDirectory:
      return "directory";
  }
  return "unknown";
}

absl::Status ValidateSpec(const VolumeSpec& spec) {
  if (spec.kind != VolumeSpec::kRootFs && spec.kind != VolumeSpec::kData) {
    return absl::InvalidArgumentError("VolumeSpec.kind is neither kRootFs nor kData");
  }
  if (spec.size == 0 || spec.size % kBlockSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("VolumeSpec.size ", spec.size, " is not a positive multiple of 4096"));
  }
  if (spec.kind == VolumeSpec::kRootFs && spec.size < 2 * kRegionSize) {
    return absl::InvalidArgumentError(absl::StrCat("VolumeSpec.size ", spec.size,
                                                   " is below 2 MiB, too small for a root volume"));
  }
  if (spec.size / kBlockSize >= (uint64_t{1} << 40)) {
    return absl::InvalidArgumentError("VolumeSpec.size is above 4 EiB");
  }
  if (spec.version < 1 || spec.version > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("VolumeSpec.version ", spec.version, " is not in [1, 100000]"));
  }
  if (!(spec.used_fraction > 0 && spec.used_fraction <= 0.9)) {
    return absl::InvalidArgumentError(
        absl::StrCat("VolumeSpec.used_fraction ", spec.used_fraction, " is not in (0, 0.9]"));
  }
  if (!(spec.rewrite_fraction >= 0 && spec.rewrite_fraction <= 0.3)) {
    return absl::InvalidArgumentError(
        absl::StrCat("VolumeSpec.rewrite_fraction ", spec.rewrite_fraction, " is not in [0, 0.3]"));
  }
  if (!(spec.append_fraction >= 0 && spec.append_fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("VolumeSpec.append_fraction ", spec.append_fraction, " is not in [0, 0.5]"));
  }
  return absl::OkStatus();
}

struct VolumeGenerator::Impl {
  VolumeSpec spec;
  uint64_t seed = 0;  // spec.seed mixed with the volume kind
  uint64_t total_blocks = 0;
  uint64_t groups = 0;
  uint32_t gdt_blocks = 0;
  uint64_t pool_size = 1;
  uint64_t rewrite_threshold = 0;  // a cell is touched when 32 hash bits fall below this
  uint64_t epoch = 0;              // file system creation time
  GroupLayout layout;              // cache of the last group used

  explicit Impl(const VolumeSpec& s) : spec(s) {
    seed = Hash(s.seed, kTagVolume, s.kind);
    total_blocks = s.size / kBlockSize;
    groups = (total_blocks + kBlocksPerGroup - 1) / kBlocksPerGroup;
    gdt_blocks = static_cast<uint32_t>((groups * kGroupDescSize + kBlockSize - 1) / kBlockSize);
    pool_size = std::max<uint64_t>(1, groups / 2);
    rewrite_threshold = static_cast<uint64_t>(
        std::ldexp(std::min(1.0, s.rewrite_fraction * kRewriteCell / kMeanRewriteRun), 32));
    epoch = 1600000000 + seed % 100000000;
  }

  uint32_t GroupBlocks(uint64_t g) const {
    return static_cast<uint32_t>(
        std::min<uint64_t>(kBlocksPerGroup, total_blocks - g * kBlocksPerGroup));
  }

  // Metadata blocks at the start of group g: superblock and descriptors (in backup groups),
  // block bitmap, inode bitmap, inode table.
  uint32_t SuperBlocks(uint64_t g) const { return HasSuperblockBackup(g) ? 1 + gdt_blocks : 0; }
  uint32_t MetaBlocks(uint64_t g) const { return SuperBlocks(g) + 2 + kInodeTableBlocks; }

  // The share of the volume's target use that group g gets: antithetic pairs of groups keep the
  // total on target while single groups range from 0.2x to 1.8x.
  double GroupWeight(uint64_t g) const {
    const double x = static_cast<double>(Hash(seed, kTagWeight, g / 2) >> 11) * 0x1.0p-53;
    const double d = 0.8 * (2 * x - 1);
    return g % 2 == 0 ? 1 + d : 1 - d;
  }

  // Blocks of data that version u > 1 adds to a group whose first version used `used` blocks.
  static uint32_t AppendBlocks(double fraction, double used, Rng& rng) {
    const double x = fraction * used;
    const double whole = std::floor(x);
    return static_cast<uint32_t>(whole) + (rng.Unit() < x - whole ? 1 : 0);
  }

  FileDesc FreshFile(uint64_t file_seed) const {
    Rng rng(file_seed);
    FileDesc f;
    const uint32_t k = rng.Below(100);
    f.kind = k < 42 ? BlockKind::kText : k < 82 ? BlockKind::kBinary : BlockKind::kRandom;
    f.sub = static_cast<uint8_t>(rng.Below(4));  // prose, config, log, code
    f.blocks = FileBlocks(rng);
    f.last_bytes = 1 + rng.Below(kBlockSize);
    f.seed = rng.Next();
    return f;
  }

  FileDesc PickFile(Rng& rng, const GroupLayout& gl) const {
    const uint32_t p = rng.Below(100);
    if (p < 10) {
      FileDesc f;
      f.kind = BlockKind::kDirectory;
      f.blocks = 1;
      f.seed = rng.Next();
      return f;
    }
    if (p < 16 && !gl.files.empty()) {
      return gl.files[rng.Below(static_cast<uint32_t>(gl.files.size()))];  // a copy
    }
    if (p < 20) return FreshFile(Hash(seed, kTagPool, rng.Below(static_cast<uint32_t>(pool_size))));
    return FreshFile(rng.Next());
  }

  // Places up to f.blocks blocks of `f` at the first free blocks from *cursor on (wrapping to
  // `low`), as extents of `version`. Returns the blocks placed (fewer when the group is full).
  uint32_t Place(const FileDesc& f, uint32_t low, uint32_t* cursor, uint32_t version,
                 GroupLayout& gl) const {
    uint32_t done = 0;
    while (done < f.blocks) {
      uint32_t start = gl.Find(*cursor, gl.blocks, false);
      if (start == gl.blocks) {
        start = gl.Find(low, *cursor, false);
        if (start == *cursor) break;  // full
      }
      const uint32_t end = gl.Find(start, std::min(gl.blocks, start + (f.blocks - done)), true);
      Extent e;
      e.start = start;
      e.blocks = end - start;
      e.kind = f.kind;
      e.sub = f.sub;
      e.version = version;
      e.file_block0 = done;
      e.file_blocks = f.blocks;
      e.last_bytes = f.last_bytes;
      e.seed = f.seed;
      gl.extents.push_back(e);
      gl.Occupy(start, e.blocks);
      done += e.blocks;
      *cursor = end == gl.blocks ? low : end;
    }
    return done;
  }

  // Allocates files of about `budget` blocks in total from `cursor` on.
  void AllocateFiles(uint32_t budget, uint32_t low, uint32_t cursor, uint32_t version, Rng& rng,
                     GroupLayout& gl) const {
    uint32_t placed = 0;
    while (placed < budget) {
      FileDesc f = PickFile(rng, gl);
      if (f.blocks > budget - placed) {
        f.blocks = budget - placed;  // truncated: a prefix of the same content
        f.last_bytes = kBlockSize;
      }
      if (rng.Below(10) >= 6) {
        cursor += 1 + rng.Below(16);
        if (cursor >= gl.blocks) cursor = low;
      }
      const uint32_t n = Place(f, low, &cursor, version, gl);
      if (n == 0) break;
      gl.files.push_back(f);
      ++gl.inodes_used;
      placed += n;
    }
  }

  void BuildRootGroup(uint64_t g, GroupLayout& gl) const {
    const uint32_t meta = MetaBlocks(g);
    if (gl.blocks < meta + 64) return;  // a tail too small for a group: left empty
    uint32_t pos = 0;
    if (HasSuperblockBackup(g)) {
      gl.extents.push_back({.start = 0, .blocks = 1, .kind = BlockKind::kSuperblock});
      gl.extents.push_back({.start = 1,
                            .blocks = gdt_blocks,
                            .kind = BlockKind::kGroupDesc,
                            .file_blocks = gdt_blocks});
      pos = 1 + gdt_blocks;
    }
    gl.extents.push_back({.start = pos, .blocks = 1, .kind = BlockKind::kBitmap, .sub = 0});
    gl.extents.push_back({.start = pos + 1, .blocks = 1, .kind = BlockKind::kBitmap, .sub = 1});
    const uint32_t inode_table = pos + 2;
    gl.Occupy(0, meta);  // the whole inode table is reserved, used or not
    gl.inodes_used = g == 0 ? kReservedInodes : 0;

    Rng rng(Hash(seed, kTagGroup, g));
    const double used = spec.used_fraction * gl.blocks * GroupWeight(g);
    const double meta_used =
        SuperBlocks(g) + 2 + std::ceil(used / kMeanFileBlocks / kInodesPerBlock);
    const uint32_t budget = used > meta_used ? static_cast<uint32_t>(used - meta_used) : 0;
    // Files go into a few clusters, as directories spread over a group.
    const uint32_t clusters = 1 + rng.Below(3);
    uint32_t left = budget;
    for (uint32_t c = 0; c < clusters; ++c) {
      const uint32_t share =
          c + 1 == clusters ? left : static_cast<uint32_t>(left * (0.3 + 0.4 * rng.Unit()));
      AllocateFiles(share, meta, meta + rng.Below(gl.blocks - meta), 1, rng, gl);
      left -= share;
    }
    const uint64_t inode_seed = Hash(seed, kTagInode, g);
    auto inode_blocks = [&] { return (gl.inodes_used + kInodesPerBlock - 1) / kInodesPerBlock; };
    uint32_t have = inode_blocks();
    auto add_inode_blocks = [&](uint32_t from, uint32_t to, uint32_t version) {
      if (to > from) {
        gl.extents.push_back({.start = inode_table + from,
                              .blocks = to - from,
                              .kind = BlockKind::kInodeTable,
                              .version = version,
                              .file_block0 = from,
                              .file_blocks = kInodeTableBlocks,
                              .seed = inode_seed});
      }
    };
    add_inode_blocks(0, have, 1);
    for (uint32_t u = 2; u <= spec.version; ++u) {
      Rng urng(Hash(seed, kTagAppend, g, u));
      const uint32_t add = AppendBlocks(spec.append_fraction, used, urng);
      AllocateFiles(add, meta, meta + urng.Below(gl.blocks - meta), u, urng, gl);
      const uint32_t now = std::min(inode_blocks(), kInodeTableBlocks);
      add_inode_blocks(have, now, u);
      have = std::max(have, now);
    }
    gl.inodes_used = std::min(gl.inodes_used, kInodesPerGroup);
  }

  void BuildDataGroup(uint64_t g, GroupLayout& gl) const {
    uint32_t cursor = 0;
    uint32_t used = 0;
    bool has_zero = false;
    for (uint64_t i = 0; cursor < gl.blocks; ++i) {
      const uint64_t h = Hash(seed, kTagData, g, i);
      const uint32_t len =
          std::min(kBlocksPerRegion * static_cast<uint32_t>(1 + h % 8), gl.blocks - cursor);
      uint32_t k = static_cast<uint32_t>((h >> 8) % 3);
      // Every group keeps some empty space, for the data later versions add.
      if (cursor + len == gl.blocks && !has_zero) k = 0;
      has_zero |= k == 0;
      if (k != 0) {
        gl.extents.push_back({.start = cursor,
                              .blocks = len,
                              .kind = k == 1 ? BlockKind::kText : BlockKind::kRandom,
                              .sub = static_cast<uint8_t>((h >> 16) % 2 ? kLog : kCsv),
                              .file_blocks = len,
                              .seed = Hash(h, kTagData)});
        gl.Occupy(cursor, len);
        used += len;
      }
      cursor += len;
    }
    for (uint32_t u = 2; u <= spec.version; ++u) {
      Rng urng(Hash(seed, kTagAppend, g, u));
      FileDesc f;
      f.blocks = AppendBlocks(spec.append_fraction, used, urng);
      f.kind = urng.Below(2) ? BlockKind::kText : BlockKind::kRandom;
      f.sub = urng.Below(2) ? kLog : kCsv;
      f.seed = urng.Next();
      // New data goes to the start of the first empty stretch after a random point, as a file
      // that grows does.
      uint32_t at = urng.Below(gl.blocks);
      const uint32_t free_at = gl.Find(at, gl.blocks, false);
      at = free_at < gl.blocks ? free_at : 0;
      if (f.blocks > 0) Place(f, 0, &at, u, gl);
    }
  }

  const GroupLayout& Layout(uint64_t g) {
    if (layout.index == g) return layout;
    GroupLayout& gl = layout;
    gl.index = g;
    gl.blocks = GroupBlocks(g);
    gl.inodes_used = 0;
    gl.extents.clear();
    gl.files.clear();
    gl.occupied.assign((gl.blocks + 63) / 64, 0);
    if (spec.kind == VolumeSpec::kRootFs) {
      BuildRootGroup(g, gl);
    } else {
      BuildDataGroup(g, gl);
    }
    std::sort(gl.extents.begin(), gl.extents.end(),
              [](const Extent& a, const Extent& b) { return a.start < b.start; });
    return gl;
  }

  static bool Rewritable(BlockKind kind) {
    return kind == BlockKind::kText || kind == BlockKind::kBinary || kind == BlockKind::kRandom ||
           kind == BlockKind::kInodeTable || kind == BlockKind::kDirectory;
  }

  // Returns whether version u rewrites volume block `block` (if it holds data by then).
  bool Rewritten(uint32_t u, uint64_t block) const {
    const uint64_t h = Hash(seed, kTagRewrite, u, block / kRewriteCell);
    if ((h & 0xFFFFFFFF) >= rewrite_threshold) return false;
    const uint32_t offset = static_cast<uint32_t>(h >> 32 & 15);
    const uint32_t r = static_cast<uint32_t>(h >> 36 & 0xFF);
    const uint32_t run = r < 77 ? 1 : 2 + static_cast<uint32_t>((h >> 44) % 11);
    return (block % kRewriteCell + kRewriteCell - offset) % kRewriteCell < run;
  }

  // Returns the last version (> the extent's) that rewrote `block`, or 0.
  uint32_t RewriteVersion(const Extent& e, uint64_t block) const {
    if (!Rewritable(e.kind)) return 0;
    for (uint32_t u = spec.version; u > e.version && u >= 2; --u) {
      if (Rewritten(u, block)) return u;
    }
    return 0;
  }

  void FillSuperblock(uint64_t g, uint8_t* out) const {
    uint8_t* sb = out + (g == 0 ? 1024 : 0);  // group 0 keeps its boot sector
    Rng rng(Hash(seed, kTagSuper, spec.version));
    const uint64_t used_estimate = static_cast<uint64_t>(
        total_blocks * spec.used_fraction * (1 + spec.append_fraction * (spec.version - 1)));
    Put32(sb + 0x00, groups * kInodesPerGroup);
    Put32(sb + 0x04, total_blocks);
    Put32(sb + 0x08, total_blocks / 20);
    Put32(sb + 0x0C, total_blocks - used_estimate);
    Put32(sb + 0x10, groups * kInodesPerGroup - used_estimate / 24);
    Put32(sb + 0x18, 2);
    Put32(sb + 0x1C, 2);
    Put32(sb + 0x20, kBlocksPerGroup);
    Put32(sb + 0x24, kBlocksPerGroup);
    Put32(sb + 0x28, kInodesPerGroup);
    Put32(sb + 0x2C, epoch + 86400 * spec.version);
    Put32(sb + 0x30, epoch + 86400 * spec.version + rng.Below(3600));
    Put16(sb + 0x34, 3 * spec.version);
    Put16(sb + 0x36, 0xFFFF);
    Put16(sb + 0x38, 0xEF53);
    Put16(sb + 0x3A, 1);
    Put16(sb + 0x3C, 1);
    Put32(sb + 0x40, epoch);
    Put32(sb + 0x4C, 1);
    Put32(sb + 0x54, kReservedInodes);
    Put16(sb + 0x58, kInodeSize);
    Put16(sb + 0x5A, g);
    Put32(sb + 0x5C, 0x3C);
    Put32(sb + 0x60, 0x2C2);
    Put32(sb + 0x64, 0x46B);
    Put64(sb + 0x68, Hash(seed, 1));  // uuid
    Put64(sb + 0x70, Hash(seed, 2));
    std::memcpy(sb + 0x78, "rootfs", 6);
    sb[0x88] = '/';
    Put32(sb + 0xE0, 8);  // journal inode
    Put64(sb + 0xEC, Hash(seed, 3));
    Put64(sb + 0xF4, Hash(seed, 4));
    sb[0xFC] = 1;
    Put32(sb + 0x100, 0x0C);
    Put32(sb + 0x108, epoch);
    Put64(sb + 0x150, used_estimate * 8 + rng.Below(1 << 20));  // kbytes written
    sb[0x174] = 4;
    Put32(sb + 0x3FC, rng.Next());  // checksum
  }

  void FillGroupDesc(uint32_t index, uint8_t* out) const {
    const uint64_t per_block = kBlockSize / kGroupDescSize;
    for (uint64_t i = 0; i < per_block; ++i) {
      const uint64_t g = index * per_block + i;
      if (g >= groups) break;
      uint8_t* d = out + i * kGroupDescSize;
      Rng rng(Hash(seed, kTagGroupDesc, g, spec.version));
      const uint64_t first = g * kBlocksPerGroup + SuperBlocks(g);
      const double used = spec.used_fraction * GroupBlocks(g) * GroupWeight(g);
      const uint64_t free_blocks =
          GroupBlocks(g) -
          std::min<uint64_t>(GroupBlocks(g), MetaBlocks(g) + static_cast<uint64_t>(used));
      Put32(d + 0x00, first);
      Put32(d + 0x04, first + 1);
      Put32(d + 0x08, first + 2);
      Put16(d + 0x0C, free_blocks - rng.Below(8));
      Put16(d + 0x0E, kInodesPerGroup - static_cast<uint64_t>(used / kMeanFileBlocks));
      Put16(d + 0x10, 1 + rng.Below(4));
      Put16(d + 0x12, 0x4);         // EXT4_BG_INODE_ZEROED
      Put16(d + 0x1E, rng.Next());  // checksum
    }
  }

  void FillBitmap(const GroupLayout& gl, uint8_t which, uint8_t* out) const {
    // Bits past the group's end are set, as ext4 does.
    std::memset(out, 0xFF, kBlockSize);
    if (which == 0) {
      std::memset(out, 0, kBlocksPerGroup / 8);
      for (uint32_t w = 0; w < gl.occupied.size(); ++w) Put64(out + 8 * w, gl.occupied[w]);
      for (uint32_t b = gl.blocks; b < kBlocksPerGroup; ++b) out[b / 8] |= uint8_t(1u << (b % 8));
    } else {
      std::memset(out, 0, kInodesPerGroup / 8);
      for (uint32_t i = 0; i < gl.inodes_used; ++i) out[i / 8] |= uint8_t(1u << (i % 8));
    }
  }

  // Returns what volume block `block`, which lies inside extent `e`, holds.
  BlockInfo Info(const Extent& e, uint64_t block) const {
    switch (e.kind) {
      case BlockKind::kSuperblock:
      case BlockKind::kGroupDesc:
      case BlockKind::kBitmap:
        return {e.kind, spec.version};
      default: {
        const uint32_t u = RewriteVersion(e, block);
        return {e.kind, u ? u : e.version};
      }
    }
  }

  void FillBlock(const GroupLayout& gl, const Extent& e, uint32_t local, uint8_t* out) const {
    const uint64_t block = gl.index * kBlocksPerGroup + local;
    switch (e.kind) {
      case BlockKind::kSuperblock:
        std::memset(out, 0, kBlockSize);
        FillSuperblock(gl.index, out);
        return;
      case BlockKind::kGroupDesc:
        std::memset(out, 0, kBlockSize);
        FillGroupDesc(local - e.start, out);
        return;
      case BlockKind::kBitmap:
        FillBitmap(gl, e.sub, out);
        return;
      default:
        break;
    }
    const uint32_t j = e.file_block0 + (local - e.start);
    const uint32_t u = RewriteVersion(e, block);
    const uint64_t block_seed = u ? Hash(seed, kTagRewriteContent, u, block) : Hash(e.seed, j);
    const size_t n = j + 1 == e.file_blocks ? e.last_bytes : kBlockSize;
    switch (e.kind) {
      case BlockKind::kText:
        FillText(e.sub, e.seed, block_seed, out, n);
        break;
      case BlockKind::kBinary:
        FillBinary(e.seed, block_seed, out, n);
        break;
      case BlockKind::kRandom:
        FillRandom(block_seed, out, n);
        break;
      case BlockKind::kInodeTable: {
        std::memset(out, 0, kBlockSize);
        const uint32_t slots =
            u ? kInodesPerBlock
              : std::min(kInodesPerBlock,
                         gl.inodes_used - std::min(gl.inodes_used, j * kInodesPerBlock));
        FillInodes(block_seed, epoch, std::max(slots, 1u), out);
        break;
      }
      case BlockKind::kDirectory:
        std::memset(out, 0, kBlockSize);
        FillDirectory(block_seed, out, kBlockSize);
        break;
      default:
        break;
    }
    if (n < kBlockSize) std::memset(out + n, 0, kBlockSize - n);
    if (AllZero(out, n)) out[0] = 1;  // a block with data is never all zero
  }
};

VolumeGenerator::VolumeGenerator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VolumeGenerator::~VolumeGenerator() = default;
VolumeGenerator::VolumeGenerator(VolumeGenerator&&) noexcept = default;
VolumeGenerator& VolumeGenerator::operator=(VolumeGenerator&&) noexcept = default;

absl::StatusOr<VolumeGenerator> VolumeGenerator::Make(const VolumeSpec& spec) {
  CF_RETURN_IF_ERROR(ValidateSpec(spec));
  GetLexicon();  // build the shared tables up front, not inside the first block
  return VolumeGenerator(std::make_unique<Impl>(spec));
}

const VolumeSpec& VolumeGenerator::spec() const { return impl_->spec; }

absl::StatusOr<uint64_t> VolumeGenerator::Generate(uint64_t offset, absl::Span<uint8_t> out,
                                                   std::vector<uint8_t>* nonzero) {
  Impl& m = *impl_;
  if (offset % kBlockSize != 0 || out.size() % kBlockSize != 0 || offset > m.spec.size ||
      out.size() > m.spec.size - offset) {
    return absl::InvalidArgumentError(absl::StrCat("Generate: range [", offset, ", +", out.size(),
                                                   ") is not block-aligned inside a volume of ",
                                                   m.spec.size, " bytes"));
  }
  const uint64_t first = offset / kBlockSize;
  const uint64_t end = first + out.size() / kBlockSize;
  if (nonzero != nullptr) nonzero->assign(end - first, 0);
  uint64_t count = 0;
  uint64_t b = first;
  while (b < end) {
    const uint64_t g = b / kBlocksPerGroup;
    const GroupLayout& gl = m.Layout(g);
    const uint64_t group_first = g * kBlocksPerGroup;
    uint32_t local = static_cast<uint32_t>(b - group_first);
    const uint32_t local_end =
        static_cast<uint32_t>(std::min<uint64_t>(end, group_first + gl.blocks) - group_first);
    auto dest = [&](uint32_t l) { return out.data() + (group_first + l - first) * kBlockSize; };
    auto it = std::partition_point(gl.extents.begin(), gl.extents.end(),
                                   [&](const Extent& e) { return e.start + e.blocks <= local; });
    while (local < local_end) {
      if (it == gl.extents.end() || it->start >= local_end) {
        std::memset(dest(local), 0, size_t{local_end - local} * kBlockSize);
        break;
      }
      if (it->start > local) {
        std::memset(dest(local), 0, size_t{it->start - local} * kBlockSize);
        local = it->start;
      }
      const uint32_t stop = std::min(it->start + it->blocks, local_end);
      for (; local < stop; ++local) {
        m.FillBlock(gl, *it, local, dest(local));
        if (nonzero != nullptr) (*nonzero)[group_first + local - first] = 1;
        ++count;
      }
      ++it;
    }
    b = group_first + local_end;
  }
  return count;
}

absl::StatusOr<BlockInfo> VolumeGenerator::Describe(uint64_t block) {
  Impl& m = *impl_;
  if (block >= m.total_blocks) {
    return absl::OutOfRangeError(
        absl::StrCat("Describe: block ", block, " is past the volume's ", m.total_blocks));
  }
  const uint64_t g = block / kBlocksPerGroup;
  const GroupLayout& gl = m.Layout(g);
  const uint32_t local = static_cast<uint32_t>(block - g * kBlocksPerGroup);
  auto it = std::partition_point(gl.extents.begin(), gl.extents.end(),
                                 [&](const Extent& e) { return e.start + e.blocks <= local; });
  if (it == gl.extents.end() || it->start > local) return BlockInfo{};
  return m.Info(*it, block);
}

namespace {

// Owns a descriptor; closes it on destruction.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports close(2)'s error.
  absl::Status Close(const std::string& path) {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("close ", path));
    return absl::OkStatus();
  }

 private:
  int fd_;
};

absl::Status PwriteAll(int fd, const uint8_t* data, size_t n, uint64_t offset,
                       const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("pwrite ", path, " at ", offset));
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WriteStats> WriteVolume(const VolumeSpec& spec, const std::string& path,
                                       const WriteOptions& options) {
  CF_RETURN_IF_ERROR(ValidateSpec(spec));
  const auto started = std::chrono::steady_clock::now();
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  if (::ftruncate(fd.get(), static_cast<off_t>(spec.size)) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("ftruncate ", path));
  }
  const uint64_t regions = (spec.size + kRegionSize - 1) / kRegionSize;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> nonzero_blocks{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  absl::Status first_error;
  auto work = [&] {
    absl::Status s = [&]() -> absl::Status {
      CF_ASSIGN_OR_RETURN(VolumeGenerator gen, VolumeGenerator::Make(spec));
      std::vector<uint8_t> buf(kRegionSize);
      std::vector<uint8_t> mask;
      uint64_t mine = 0;
      for (uint64_t r = next++; r < regions && !failed.load(); r = next++) {
        const uint64_t offset = r * kRegionSize;
        const size_t len = static_cast<size_t>(std::min(kRegionSize, spec.size - offset));
        CF_ASSIGN_OR_RETURN(const uint64_t count,
                            gen.Generate(offset, absl::MakeSpan(buf.data(), len), &mask));
        mine += count;
        // Write runs of non-zero blocks only: zero blocks stay holes.
        for (size_t i = 0; i < mask.size();) {
          if (!mask[i]) {
            ++i;
            continue;
          }
          size_t j = i;
          while (j < mask.size() && mask[j]) ++j;
          CF_RETURN_IF_ERROR(PwriteAll(fd.get(), buf.data() + i * kBlockSize, (j - i) * kBlockSize,
                                       offset + i * kBlockSize, path));
          i = j;
        }
      }
      nonzero_blocks += mine;
      return absl::OkStatus();
    }();
    if (!s.ok()) {
      failed = true;
      std::lock_guard<std::mutex> lock(mu);
      if (first_error.ok()) first_error = s;
    }
  };
  const int threads = std::max(1, options.threads);
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back(work);
  work();
  for (std::thread& t : workers) t.join();
  CF_RETURN_IF_ERROR(first_error);
  CF_RETURN_IF_ERROR(fd.Close(path));
  WriteStats stats;
  stats.size = spec.size;
  stats.nonzero_bytes = nonzero_blocks.load() * kBlockSize;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return stats;
}

absl::StatusOr<uint64_t> ParseSize(std::string_view text) {
  const std::string original(text);
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (value > (~uint64_t{0} - d) / 10) {
      return absl::InvalidArgumentError(absl::StrCat("size '", original, "' overflows"));
    }
    value = value * 10 + d;
  }
  if (digits == 0) return absl::InvalidArgumentError(absl::StrCat("bad size '", original, "'"));
  const std::string suffix = absl::AsciiStrToUpper(original.substr(digits));
  int shift = 0;
  if (!suffix.empty()) {
    const size_t unit = std::string_view("KMGT").find(suffix[0]);
    const std::string rest = suffix.substr(1);
    if (unit == std::string_view::npos || !(rest.empty() || rest == "B" || rest == "IB")) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad size '", original, "': the suffix must be K, M, G or T"));
    }
    shift = 10 * static_cast<int>(unit + 1);
  }
  if (shift > 0 && value > (~uint64_t{0} >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("size '", original, "' overflows"));
  }
  return value << shift;
}

namespace {

struct BlockId {
  uint64_t lo = 0;
  uint64_t hi = 0;
  friend bool operator==(const BlockId& a, const BlockId& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
  template <typename H>
  friend H AbslHashValue(H h, const BlockId& id) {
    return H::combine(std::move(h), id.lo);  // already uniform
  }
};

// Calls fn(block, offset) for each block of `path` that lies in a data range (SEEK_DATA), in
// order; the last block may be short. Holes are skipped: they read as zero blocks anyway.
template <typename Fn>
absl::Status ForEachDataBlock(const std::string& path, std::vector<uint8_t>& buf, Fn fn) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("fstat ", path));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t pos = 0;
  while (pos < size) {
    uint64_t data = pos;
    uint64_t hole = size;
    const off_t d = ::lseek(fd.get(), static_cast<off_t>(pos), SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      if (errno != EINVAL) return absl::ErrnoToStatus(errno, absl::StrCat("lseek ", path));
    } else {
      data = static_cast<uint64_t>(d) / kBlockSize * kBlockSize;
      const off_t h = ::lseek(fd.get(), d, SEEK_HOLE);
      if (h < 0) return absl::ErrnoToStatus(errno, absl::StrCat("lseek ", path));
      hole = std::min(size, (static_cast<uint64_t>(h) + kBlockSize - 1) / kBlockSize * kBlockSize);
    }
    data = std::max(data, pos);
    while (data < hole) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), hole - data));
      size_t got = 0;
      while (got < want) {
        const ssize_t r =
            ::pread(fd.get(), buf.data() + got, want - got, static_cast<off_t>(data + got));
        if (r < 0) {
          if (errno == EINTR) continue;
          return absl::ErrnoToStatus(errno, absl::StrCat("pread ", path, " at ", data + got));
        }
        if (r == 0) break;
        got += static_cast<size_t>(r);
      }
      if (got == 0) return absl::DataLossError(absl::StrCat(path, " shrank while being read"));
      for (size_t off = 0; off < got; off += kBlockSize) {
        fn(absl::MakeConstSpan(buf.data() + off, std::min<size_t>(kBlockSize, got - off)));
      }
      data += got;
    }
    pos = hole;
  }
  return fd.Close(path);
}

bool IsZeroBlock(absl::Span<const uint8_t> b) {
  size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    if (w != 0) return false;
  }
  return AllZero(b.data() + i, b.size() - i);
}

BlockId IdOf(absl::Span<const uint8_t> b) {
  const XXH128_hash_t h = XXH3_128bits(b.data(), b.size());
  return {h.low64, h.high64};
}

}  // namespace

absl::StatusOr<IdealBytes> MeasureIdealBytes(absl::Span<const std::string> old_images,
                                             absl::Span<const std::string> new_images) {
  absl::flat_hash_set<BlockId> seen;
  std::vector<uint8_t> buf(kIoBufferSize);
  for (const std::string& path : old_images) {
    CF_RETURN_IF_ERROR(ForEachDataBlock(path, buf, [&](absl::Span<const uint8_t> b) {
      if (!IsZeroBlock(b)) seen.insert(IdOf(b));
    }));
  }
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (cctx == nullptr) return absl::ResourceExhaustedError("ZSTD_createCCtx failed");
  size_t rc = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 1);
  if (ZSTD_isError(rc)) return absl::InternalError(ZSTD_getErrorName(rc));
  std::vector<uint8_t> staged;  // unique blocks waiting for the compressor
  staged.reserve(kIoBufferSize);
  std::vector<uint8_t> sink(ZSTD_CStreamOutSize());
  IdealBytes ideal;
  absl::Status zstd_status;
  auto compress = [&](ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{staged.data(), staged.size(), 0};
    for (;;) {
      ZSTD_outBuffer out{sink.data(), sink.size(), 0};
      const size_t left = ZSTD_compressStream2(cctx.get(), &out, &in, mode);
      if (ZSTD_isError(left)) {
        zstd_status = absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(left)));
        return;
      }
      ideal.ideal_zstd1_bytes += out.pos;
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
    }
    staged.clear();
  };
  for (const std::string& path : new_images) {
    CF_RETURN_IF_ERROR(ForEachDataBlock(path, buf, [&](absl::Span<const uint8_t> b) {
      if (IsZeroBlock(b) || !seen.insert(IdOf(b)).second) return;
      ++ideal.new_blocks;
      ideal.new_raw_bytes += b.size();
      staged.insert(staged.end(), b.begin(), b.end());
      if (staged.size() >= kIoBufferSize) compress(ZSTD_e_continue);
    }));
    CF_RETURN_IF_ERROR(zstd_status);
  }
  compress(ZSTD_e_end);
  CF_RETURN_IF_ERROR(zstd_status);
  return ideal;
}

std::string IdealBytesJson(const IdealBytes& ideal) {
  return absl::StrFormat(R"({"new_blocks":%d,"new_raw_bytes":%d,"ideal_zstd1_bytes":%d})",
                         ideal.new_blocks, ideal.new_raw_bytes, ideal.ideal_zstd1_bytes);
}

}  // namespace chunkferry::vmgen
