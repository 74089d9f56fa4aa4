#include "engine/wire/auth.h"

#include <sys/stat.h>

#include <array>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::FileExists;
using ::chunkferry::testing::ReadFile;
using ::chunkferry::testing::TempDir;

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Hex(absl::Span<const uint8_t> bytes) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

void WriteText(const std::string& path, absl::string_view text, mode_t mode) {
  ::chunkferry::testing::WriteFile(path, Bytes(text));
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

std::string ReadText(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFile(path);
  return std::string(bytes.begin(), bytes.end());
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

AuthKey KeyOf(uint8_t fill) {
  AuthKey key;
  key.bytes.fill(fill);
  return key;
}

constexpr char kUuid[] = "0123456789abcdef0123456789abcdef";

// RFC 4231, test cases 1 and 2.
TEST(AuthTest, HmacSha256MatchesRfc4231Vectors) {
  const std::string key1(20, '\x0b');
  EXPECT_EQ(Hex(HmacSha256(Bytes(key1), Bytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(Hex(HmacSha256(Bytes("Jefe"), Bytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(AuthTest, ProofIsHmacOfLabelNoncesAndUuid) {
  const AuthKey key = KeyOf(0x42);
  Nonce cn, sn;
  for (size_t i = 0; i < cn.size(); ++i) {
    cn[i] = static_cast<uint8_t>(i);
    sn[i] = static_cast<uint8_t>(0xff - i);
  }
  std::string message(kServerProofLabel);
  message.append(reinterpret_cast<const char*>(cn.data()), cn.size());
  message.append(reinterpret_cast<const char*>(sn.data()), sn.size());
  message.append(kUuid);
  const AuthProof expected = HmacSha256(key.bytes, Bytes(message));
  EXPECT_EQ(Proof(key, kServerProofLabel, cn, sn, kUuid), expected);
}

TEST(AuthTest, LabelsSeparateServerAndClientProofs) {
  EXPECT_NE(kServerProofLabel, kClientProofLabel);
  EXPECT_EQ(kServerProofLabel.size(), kClientProofLabel.size());
  const AuthKey key = KeyOf(7);
  const Nonce cn = RandomNonce(), sn = RandomNonce();
  EXPECT_NE(Proof(key, kServerProofLabel, cn, sn, kUuid),
            Proof(key, kClientProofLabel, cn, sn, kUuid));
  // Swapping the nonces (the other side's roles) gives another proof too.
  EXPECT_NE(Proof(key, kServerProofLabel, cn, sn, kUuid),
            Proof(key, kServerProofLabel, sn, cn, kUuid));
}

TEST(AuthTest, EveryInputChangesTheProof) {
  const AuthKey key = KeyOf(9);
  const Nonce cn = RandomNonce(), sn = RandomNonce();
  const AuthProof base = Proof(key, kClientProofLabel, cn, sn, kUuid);
  std::set<AuthProof> seen = {base};
  for (size_t i = 0; i < kAuthKeySize; ++i) {
    AuthKey k = key;
    k.bytes[i] ^= 1;
    EXPECT_TRUE(seen.insert(Proof(k, kClientProofLabel, cn, sn, kUuid)).second) << "key " << i;
  }
  for (size_t i = 0; i < kNonceSize; ++i) {
    Nonce c = cn, s = sn;
    c[i] ^= 0x80;
    s[i] ^= 0x80;
    EXPECT_TRUE(seen.insert(Proof(key, kClientProofLabel, c, sn, kUuid)).second) << "cn " << i;
    EXPECT_TRUE(seen.insert(Proof(key, kClientProofLabel, cn, s, kUuid)).second) << "sn " << i;
  }
  std::string uuid = kUuid;
  uuid[31] = 'e';
  EXPECT_TRUE(seen.insert(Proof(key, kClientProofLabel, cn, sn, uuid)).second);
  EXPECT_TRUE(seen.insert(Proof(key, kClientProofLabel, cn, sn, "")).second);
}

TEST(AuthTest, ProofEqualsRejectsAnyTamperedByte) {
  const AuthProof p = Proof(KeyOf(1), kServerProofLabel, RandomNonce(), RandomNonce(), kUuid);
  EXPECT_TRUE(ProofEquals(p, p));
  for (size_t i = 0; i < p.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      AuthProof q = p;
      q[i] ^= mask;
      EXPECT_FALSE(ProofEquals(p, q)) << "byte " << i;
    }
  }
  EXPECT_FALSE(ProofEquals(p, absl::MakeConstSpan(p).first(31)));
  EXPECT_FALSE(ProofEquals({}, {}));
}

TEST(AuthTest, RandomNoncesDiffer) {
  std::set<Nonce> seen;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.insert(RandomNonce()).second);
  EXPECT_EQ(seen.count(Nonce{}), 0u);
}

TEST(AuthTest, NewKeyFileHasMode0600AndLoadsBack) {
  TempDir dir;
  const std::string path = dir.Sub("key");
  ASSERT_TRUE(WriteNewKeyFile(path).ok());
  EXPECT_EQ(Mode(path), 0600u);
  const std::string text = ReadText(path);
  ASSERT_EQ(text.size(), 65u);
  EXPECT_EQ(text.back(), '\n');
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_TRUE(absl::ascii_isdigit(text[i]) || (text[i] >= 'a' && text[i] <= 'f')) << i;
  }
  absl::StatusOr<AuthKey> key = LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(FormatKeyFile(*key), text);

  // A second key is another key.
  ASSERT_TRUE(WriteNewKeyFile(dir.Sub("key2")).ok());
  EXPECT_NE(ReadText(dir.Sub("key2")), text);
}

TEST(AuthTest, NewKeyFileNeverOverwrites) {
  TempDir dir;
  const std::string path = dir.Sub("key");
  WriteText(path, "precious\n", 0600);
  absl::Status st = WriteNewKeyFile(path);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), path)) << st;
  EXPECT_EQ(ReadText(path), "precious\n");
}

TEST(AuthTest, NewKeyFileInMissingDirectoryFailsAndLeavesNothing) {
  TempDir dir;
  absl::Status st = WriteNewKeyFile(dir.Sub("no/such/key"));
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(FileExists(dir.Sub("no")));
}

TEST(AuthTest, LoadKeyFileRefusesGroupOrOtherAccess) {
  TempDir dir;
  const std::string path = dir.Sub("key");
  const std::string text = FormatKeyFile(KeyOf(0xab));
  for (mode_t mode : {0640, 0604, 0620, 0602, 0644, 0666, 0601}) {
    WriteText(path, text, mode);
    absl::StatusOr<AuthKey> key = LoadKeyFile(path);
    ASSERT_FALSE(key.ok()) << std::oct << mode;
    EXPECT_EQ(key.status().code(), absl::StatusCode::kPermissionDenied) << key.status();
    EXPECT_TRUE(absl::StrContains(key.status().message(), "chmod 600")) << key.status();
  }
  for (mode_t mode : {0600, 0400}) {
    WriteText(path, text, mode);
    absl::StatusOr<AuthKey> key = LoadKeyFile(path);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(key->bytes, KeyOf(0xab).bytes);
  }
}

TEST(AuthTest, LoadKeyFileRefusesMissingAndMalformedFiles) {
  TempDir dir;
  absl::StatusOr<AuthKey> missing = LoadKeyFile(dir.Sub("absent"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "does not exist"));

  const std::string good = FormatKeyFile(KeyOf(0x5c)).substr(0, 64);
  struct Case {
    std::string text;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"", "found 0 hex characters"},
      {absl::StrCat(good.substr(0, 63), "\n"), "found 63 hex characters"},
      {good.substr(0, 62), "found 62 hex characters"},
      {absl::StrCat(good, "0\n"), "found 65 hex characters"},
      {absl::StrCat(good, "\r\n"), "found 65 hex characters"},
      {absl::StrCat(good, " "), "found 0 hex characters"},
      {absl::StrCat("g", good.substr(1), "\n"), "character 1 is not a hex digit"},
      {absl::StrCat(good.substr(0, 40), "-", good.substr(41), "\n"),
       "character 41 is not a hex digit"},
      {absl::StrCat(good.substr(0, 63), " \n"), "found 0 hex characters"},
      {absl::StrCat(std::string(64, '\0'), "\n"), "character 1 is not a hex digit"},
      {std::string(65, '\0'), "found 65 hex characters"},
      {absl::StrCat("bad/name ", good, "\n"), "may hold only letters"},
      {absl::StrCat(std::string(65, 'n'), " ", good, "\n"), "found more than 130 bytes"},
      {absl::StrCat("name  ", good, "\n"), "found 65 hex characters"},
  };
  for (const Case& c : cases) {
    const std::string path = dir.Sub("bad");
    WriteText(path, c.text, 0600);
    absl::StatusOr<AuthKey> key = LoadKeyFile(path);
    ASSERT_FALSE(key.ok()) << absl::CHexEscape(c.text);
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument) << key.status();
    EXPECT_TRUE(absl::StrContains(key.status().message(), c.fragment))
        << key.status() << " lacks " << c.fragment;
    EXPECT_TRUE(absl::StrContains(key.status().message(), path)) << key.status();
  }

  // A directory or a FIFO is not a key file (and opening the FIFO does not hang).
  absl::StatusOr<AuthKey> dir_key = LoadKeyFile(dir.path());
  EXPECT_EQ(dir_key.status().code(), absl::StatusCode::kInvalidArgument) << dir_key.status();
  const std::string fifo = dir.Sub("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  absl::StatusOr<AuthKey> fifo_key = LoadKeyFile(fifo);
  EXPECT_EQ(fifo_key.status().code(), absl::StatusCode::kInvalidArgument) << fifo_key.status();
  EXPECT_TRUE(absl::StrContains(fifo_key.status().message(), "not a regular file"));
}

TEST(AuthTest, AKeyFileMayNameItsKey) {
  TempDir dir;
  const std::string path = dir.Sub("key");
  AuthKey named = KeyOf(0x3c);
  named.name = "replica-b";
  EXPECT_EQ(FormatKeyFile(named), absl::StrCat("replica-b ", FormatKeyFile(KeyOf(0x3c))));
  WriteText(path, FormatKeyFile(named), 0600);
  absl::StatusOr<AuthKey> key = LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->name, "replica-b");
  EXPECT_EQ(key->bytes, named.bytes);
  // The longest name fits the bounded read.
  named.name = std::string(64, 'n');
  WriteText(path, FormatKeyFile(named), 0600);
  key = LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->name, named.name);
}

TEST(AuthTest, LoadKeyFileAcceptsUppercaseAndNoFinalNewline) {
  TempDir dir;
  const std::string path = dir.Sub("key");
  WriteText(path, std::string(64, 'A'), 0600);
  absl::StatusOr<AuthKey> key = LoadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->bytes, KeyOf(0xaa).bytes);
}

}  // namespace
}  // namespace chunkferry::engine
