#include "engine/wire/key_ring.h"

#include <sys/stat.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/wire/key_authority.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace chunkferry::engine {
namespace {

using ::chunkferry::testing::TempDir;

std::string Hex(char c) { return std::string(64, c); }

AuthKey KeyOf(uint8_t fill) {
  AuthKey key;
  key.bytes.fill(fill);
  return key;
}

void WriteText(const std::string& path, const std::string& text, mode_t mode) {
  ::chunkferry::testing::WriteFile(path,
                                   {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

TEST(KeyRingTest, ParsesNamesRightsSecretsAndLimits) {
  const std::string text = absl::StrCat(
      "# the keys of node a\n"
      "\n"
      "replica-b  append  ",
      Hex('1'), "  connections=4 inflight=32MiB quota=2T  # comment\n", "restore-1\tread\t",
      Hex('2'), "\r\n", "ops admin ", Hex('3'), "\n", "janitor read,delete ", Hex('4'));
  absl::StatusOr<KeyRing> ring = KeyRing::Parse(text);
  ASSERT_TRUE(ring.ok()) << ring.status();
  ASSERT_EQ(ring->keys().size(), 4u);

  const ClientKey* replica = ring->Find("replica-b");
  ASSERT_NE(replica, nullptr);
  EXPECT_EQ(replica->rights, kRightAppend);
  EXPECT_EQ(replica->key.bytes, KeyOf(0x11).bytes);
  EXPECT_EQ(replica->key.name, "replica-b");
  EXPECT_EQ(replica->max_connections, 4u);
  EXPECT_EQ(replica->max_inflight, 32u << 20);
  EXPECT_EQ(replica->quota_bytes, 2ull << 40);

  EXPECT_EQ(ring->Find("restore-1")->rights, kRightRead);
  EXPECT_EQ(ring->Find("restore-1")->quota_bytes, 0u);
  EXPECT_EQ(ring->Find("ops")->rights, kAllRights);
  EXPECT_EQ(ring->Find("janitor")->rights, kRightRead | kRightDelete);
  EXPECT_EQ(ring->Find("nobody"), nullptr);
  EXPECT_EQ(FormatRights(ring->Find("janitor")->rights), "read,delete");
  EXPECT_EQ(FormatRights(kAllRights), "admin");
  EXPECT_EQ(FormatRights(0), "none");
}

TEST(KeyRingTest, RefusesMalformedLinesWithoutQuotingTheSecret) {
  const std::string secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeZ";
  struct Case {
    std::string text;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"", "holds no key"},
      {"# only a comment\n", "holds no key"},
      {absl::StrCat("a read\n"), "line 1: expected: name rights key"},
      {absl::StrCat("a write ", Hex('1')), "unknown right 'write'"},
      {absl::StrCat("a read,,append ", Hex('1')), "unknown right ''"},
      {absl::StrCat("b/c read ", Hex('1')), "may hold only letters"},
      {absl::StrCat(std::string(65, 'n'), " read ", Hex('1')), "1 to 64 characters"},
      {absl::StrCat("a read ", secret), "character 64 is not a hex digit"},
      {absl::StrCat("a read ", Hex('1').substr(1)), "found 63 hex characters"},
      {absl::StrCat("a read ", Hex('1'), " quota=lots"), "quota: 'lots' is not a size"},
      {absl::StrCat("a read ", Hex('1'), " quota=0"), "quota must be positive"},
      {absl::StrCat("a read ", Hex('1'), " connections=0"), "connections must be from 1"},
      {absl::StrCat("a read ", Hex('1'), " inflight=1M"), "inflight must be at least"},
      {absl::StrCat("a read ", Hex('1'), " speed=1M"), "unknown limit 'speed'"},
      {absl::StrCat("a read ", Hex('1'), " quota"), "'quota' is not limit=value"},
      {absl::StrCat("a read ", Hex('1'), "\na append ", Hex('2')), "line 2: key name 'a' is used"},
      {absl::StrCat("a read ", Hex('1'), "\nb append ", Hex('1')),
       "the key of 'b' is also the key of 'a'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<KeyRing> ring = KeyRing::Parse(c.text, "keys");
    ASSERT_FALSE(ring.ok()) << c.text;
    EXPECT_EQ(ring.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(ring.status().message(), c.fragment))
        << ring.status() << " lacks " << c.fragment;
    EXPECT_FALSE(absl::StrContains(ring.status().message(), "0123456789abcdef")) << ring.status();
    EXPECT_FALSE(absl::StrContains(ring.status().message(), Hex('1'))) << ring.status();
  }
}

TEST(KeyRingTest, LoadRefusesAFileOthersCanRead) {
  TempDir dir;
  const std::string path = dir.Sub("keys");
  WriteText(path, absl::StrCat("a read ", Hex('1'), "\n"), 0640);
  absl::StatusOr<KeyRing> loose = KeyRing::Load(path);
  EXPECT_EQ(loose.status().code(), absl::StatusCode::kPermissionDenied) << loose.status();
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  absl::StatusOr<KeyRing> ring = KeyRing::Load(path);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_NE(ring->Find("a"), nullptr);
}

TEST(KeyRingTest, EachRightAllowsExactlyItsMessages) {
  struct Row {
    MsgType type;
    bool read, append, del;
  };
  const Row rows[] = {
      {MsgType::kHave, true, true, false},
      {MsgType::kRead, true, false, false},
      {MsgType::kOpenManifest, true, false, false},
      {MsgType::kGetGroup, true, true, false},
      {MsgType::kListGroups, true, true, false},
      {MsgType::kAppend, false, true, false},
      {MsgType::kFlush, false, true, false},
      {MsgType::kPutManifest, false, true, false},
      {MsgType::kPutManifestDelta, false, true, false},
      {MsgType::kPutGroup, false, true, false},
      {MsgType::kDelete, false, false, true},
      {MsgType::kGc, false, false, false},
  };
  for (const Row& r : rows) {
    const uint32_t need = RightsFor(r.type);
    EXPECT_EQ((need & kRightRead) != 0, r.read) << MsgTypeName(r.type);
    EXPECT_EQ((need & kRightAppend) != 0, r.append) << MsgTypeName(r.type);
    EXPECT_EQ((need & kRightDelete) != 0, r.del) << MsgTypeName(r.type);
    EXPECT_NE(need & kRightAdmin, 0u) << MsgTypeName(r.type);  // admin may do everything
  }
  EXPECT_EQ(RightsFor(MsgType::kBye), 0u);
}

TEST(KeyAuthorityTest, ChecksRightsAgainstTheKeysInForceNow) {
  absl::StatusOr<KeyRing> ring =
      KeyRing::Parse(absl::StrCat("r read ", Hex('1'), "\nw append ", Hex('2'), "\n"));
  ASSERT_TRUE(ring.ok()) << ring.status();
  KeyAuthority authority(*ring, "");
  EXPECT_TRUE(authority.Check("r", KeyOf(0x11), MsgType::kRead).ok());
  absl::Status denied = authority.Check("r", KeyOf(0x11), MsgType::kAppend);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(denied.message(), "key 'r' (rights: read) may not send APPEND"))
      << denied;
  EXPECT_TRUE(authority.Check("w", KeyOf(0x22), MsgType::kAppend).ok());

  // A reload that takes "w" away and gives "r" another secret revokes both.
  authority.Replace(*KeyRing::Parse(absl::StrCat("r read,append ", Hex('3'), "\n")));
  EXPECT_EQ(authority.Check("w", KeyOf(0x22), MsgType::kAppend).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(authority.Check("r", KeyOf(0x11), MsgType::kRead).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(authority.Check("r", KeyOf(0x33), MsgType::kAppend).ok());
}

TEST(KeyAuthorityTest, QuotaUsageSurvivesARestart) {
  TempDir dir;
  const std::string usage = dir.Sub("usage");
  const KeyRing ring = *KeyRing::Parse(absl::StrCat("w append ", Hex('2'), " quota=1000\n"));
  {
    KeyAuthority authority(ring, usage);
    ASSERT_TRUE(authority.LoadUsage().ok());
    EXPECT_TRUE(authority.CheckQuota("w", 1000).ok());
    authority.Charge("w", 600);
    EXPECT_TRUE(authority.CheckQuota("w", 400).ok());
    absl::Status over = authority.CheckQuota("w", 401);
    EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_TRUE(absl::StrContains(over.message(), "added 600 of its 1000 bytes")) << over;
    ASSERT_TRUE(authority.SaveUsage().ok());
  }
  KeyAuthority again(ring, usage);
  ASSERT_TRUE(again.LoadUsage().ok());
  EXPECT_EQ(again.used("w"), 600u);
  EXPECT_EQ(again.CheckQuota("w", 401).code(), absl::StatusCode::kResourceExhausted);
  // A key without a quota is never refused.
  EXPECT_TRUE(again.CheckQuota("other", 1ull << 60).ok());

  WriteText(usage, "w lots\n", 0600);
  KeyAuthority broken(ring, usage);
  EXPECT_EQ(broken.LoadUsage().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace chunkferry::engine
