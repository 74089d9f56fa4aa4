#include "engine/format/volume_backup.h"

#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "codec/chunk_id.h"
#include "engine/format/byte_io.h"
#include "gtest/gtest.h"

namespace chunkferry::engine {
namespace {

constexpr char kUuidA[] = "0123456789abcdef0123456789abcdef";
constexpr char kUuidB[] = "11111111111111111111111111111111";
constexpr char kUuidC[] = "22222222222222222222222222222222";
constexpr char kUuidD[] = "33333333333333333333333333333333";

TEST(VolumeBackupTest, IsValidUuidAcceptsOnly32LowercaseHex) {
  EXPECT_TRUE(IsValidUuid(kUuidA));
  EXPECT_TRUE(IsValidUuid("ffffffffffffffffffffffffffffffff"));
  EXPECT_TRUE(IsValidUuid("00000000000000000000000000000000"));
  EXPECT_FALSE(IsValidUuid(""));
  EXPECT_FALSE(IsValidUuid("0123456789abcdef0123456789abcde"));    // 31
  EXPECT_FALSE(IsValidUuid("0123456789abcdef0123456789abcdef0"));  // 33
  EXPECT_FALSE(IsValidUuid("0123456789ABCDEF0123456789ABCDEF"));   // uppercase
  EXPECT_FALSE(IsValidUuid("0123456789abcdef0123456789abcdeg"));   // g
  EXPECT_FALSE(IsValidUuid("01234567-89ab-cdef-0123-456789abcdef"));
  EXPECT_FALSE(IsValidUuid("01234567-89ab-cdef-0123-456789ab"));  // 32 with dashes
  EXPECT_FALSE(IsValidUuid(" 123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(
      IsValidUuid(absl::string_view("0123456789abcdef\0"
                                    "123456789abcdef",
                                    32)));
}

TEST(VolumeBackupTest, NewUuidIsValidAndFresh) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string u = NewUuid();
    ASSERT_TRUE(IsValidUuid(u)) << u;
    ASSERT_TRUE(seen.insert(u).second) << "repeated uuid " << u;
  }
}

// A forked process must not repeat its parent's uuids, as a user-space generator copied by the
// fork would (its state is the same on both sides); every nibble takes all 16 values.
TEST(VolumeBackupTest, NewUuidDiffersAcrossForkAndUsesAllBits) {
  (void)NewUuid();  // whatever state a generator keeps exists before the fork
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string u = NewUuid();
    const ssize_t n = ::write(pipe_fds[1], u.data(), u.size());
    ::_exit(n == static_cast<ssize_t>(u.size()) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  const std::string mine = NewUuid();
  char child[32];
  size_t have = 0;
  while (have < sizeof(child)) {
    const ssize_t n = ::read(pipe_fds[0], child + have, sizeof(child) - have);
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_EQ(have, sizeof(child));
  EXPECT_NE(mine, std::string(child, sizeof(child)));

  std::set<char> per_position[32];
  for (int i = 0; i < 2000; ++i) {
    const std::string u = NewUuid();
    for (size_t k = 0; k < 32; ++k) per_position[k].insert(u[k]);
  }
  for (size_t k = 0; k < 32; ++k) EXPECT_EQ(per_position[k].size(), 16u) << "position " << k;
}

VolumeBackupMeta GoodMeta() {
  VolumeBackupMeta m;
  m.uuid = kUuidA;
  m.volume_uuid = kUuidB;
  m.group_uuid = kUuidC;
  return m;
}

void ExpectInvalid(const VolumeBackupMeta& m, absl::string_view field) {
  absl::Status st = ValidateMeta(m);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), field))
      << "message does not name " << field << ": " << st.message();
}

TEST(VolumeBackupTest, ValidateMetaAcceptsGoodMeta) {
  VolumeBackupMeta m = GoodMeta();
  EXPECT_TRUE(ValidateMeta(m).ok());
  m.vm_instance_uuid = kUuidD;
  for (const char* type : {"Root", "Data", "Memory", "Cache"}) {
    m.type = type;
    EXPECT_TRUE(ValidateMeta(m).ok()) << type;
  }
  for (const char* mode : {"full", "incremental", "auto"}) {
    m.mode = mode;
    EXPECT_TRUE(ValidateMeta(m).ok()) << mode;
  }
}

TEST(VolumeBackupTest, ValidateMetaNamesTheBadField) {
  {
    VolumeBackupMeta m = GoodMeta();
    m.uuid = "not-a-uuid";
    ExpectInvalid(m, "uuid 'not-a-uuid'");
  }
  {
    VolumeBackupMeta m = GoodMeta();
    m.uuid.clear();
    ExpectInvalid(m, "uuid");
  }
  {
    VolumeBackupMeta m = GoodMeta();
    m.volume_uuid = "0123456789ABCDEF0123456789ABCDEF";
    ExpectInvalid(m, "volumeUuid");
  }
  {
    VolumeBackupMeta m = GoodMeta();
    m.group_uuid = "";
    ExpectInvalid(m, "groupUuid");
  }
  {
    VolumeBackupMeta m = GoodMeta();
    m.vm_instance_uuid = "vm";
    ExpectInvalid(m, "vmInstanceUuid");
  }
  {
    VolumeBackupMeta m = GoodMeta();
    m.type = "root";
    ExpectInvalid(m, "type 'root'");
  }
  {
    VolumeBackupMeta m = GoodMeta();
    m.mode = "differential";
    ExpectInvalid(m, "mode 'differential'");
  }
}

TEST(VolumeBackupTest, MetaKvRoundTrip) {
  VolumeBackupMeta m = GoodMeta();
  m.name = "n";
  m.metadata = "{}";
  m.size = 5ull << 40;
  m.create_date = 1;
  m.last_op_date = 2;
  m.install_path = DefaultInstallPath(m.group_uuid, m.uuid);
  m.chunker = "cdc:2048:8192:65536";
  m.extra = {{"x", "y"}};
  auto back = MetaFromKv(MetaToKv(m), "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->uuid, m.uuid);
  EXPECT_EQ(back->name, m.name);
  EXPECT_FALSE(back->description.has_value());
  EXPECT_EQ(back->metadata, m.metadata);
  EXPECT_EQ(back->size, m.size);
  EXPECT_EQ(back->create_date, 1);
  EXPECT_EQ(back->last_op_date, 2);
  EXPECT_EQ(back->install_path, m.install_path);
  EXPECT_EQ(back->chunker, m.chunker);
  EXPECT_EQ(back->extra, m.extra);
}

TEST(VolumeBackupTest, MetaFromKvRefusesMissingOrBadNumbers) {
  KvPairs kv = MetaToKv(GoodMeta());
  {
    KvPairs no_size;
    for (const auto& p : kv) {
      if (p.first != "size") no_size.push_back(p);
    }
    EXPECT_EQ(MetaFromKv(no_size, "t").status().code(), absl::StatusCode::kDataLoss);
  }
  {
    KvPairs no_uuid;
    for (const auto& p : kv) {
      if (p.first != "uuid") no_uuid.push_back(p);
    }
    EXPECT_EQ(MetaFromKv(no_uuid, "t").status().code(), absl::StatusCode::kDataLoss);
  }
  for (const char* key : {"size", "createDate", "lastOpDate"}) {
    KvPairs bad = kv;
    for (auto& p : bad) {
      if (p.first == key) p.second = "12x";
    }
    auto st = MetaFromKv(bad, "where").status();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << key;
    EXPECT_TRUE(absl::StrContains(st.message(), "where")) << st;
  }
}

TEST(VolumeBackupTest, DefaultInstallPathNamesGroupAndBackup) {
  const std::string p = DefaultInstallPath(kUuidC, kUuidA);
  EXPECT_TRUE(absl::StrContains(p, kUuidC)) << p;
  EXPECT_TRUE(absl::StrContains(p, kUuidA)) << p;
  EXPECT_NE(p, DefaultInstallPath(kUuidC, kUuidB));
}

TEST(VolumeBackupTest, GroupRoundTrip) {
  GroupRecord g;
  g.group_uuid = kUuidC;
  g.vm_instance_uuid = kUuidD;
  g.volume_uuids = {kUuidA, kUuidB, "44444444444444444444444444444444"};
  g.create_date = 1510698057;
  auto back = DecodeGroup(EncodeGroup(g), "g");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->group_uuid, g.group_uuid);
  EXPECT_EQ(back->vm_instance_uuid, g.vm_instance_uuid);
  EXPECT_EQ(back->volume_uuids, g.volume_uuids);  // order kept: Root first
  EXPECT_EQ(back->create_date, g.create_date);

  GroupRecord bare;
  bare.group_uuid = kUuidC;
  auto back2 = DecodeGroup(EncodeGroup(bare), "g");
  ASSERT_TRUE(back2.ok()) << back2.status();
  EXPECT_FALSE(back2->vm_instance_uuid.has_value());
  EXPECT_TRUE(back2->volume_uuids.empty());
  EXPECT_EQ(back2->create_date, 0);
}

bool IsRefusal(const absl::Status& st) {
  return st.code() == absl::StatusCode::kDataLoss ||
         st.code() == absl::StatusCode::kFailedPrecondition;
}

TEST(VolumeBackupTest, DamagedGroupBytesAreRefused) {
  GroupRecord g;
  g.group_uuid = kUuidC;
  g.vm_instance_uuid = kUuidD;
  g.volume_uuids = {kUuidA, kUuidB};
  g.create_date = 7;
  const std::string good = EncodeGroup(g);
  for (size_t i = 0; i < good.size(); ++i) {
    for (int mask : {0x01, 0x80, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      auto r = DecodeGroup(bad, "g");
      ASSERT_FALSE(r.ok()) << "flip of byte " << i << " accepted";
      EXPECT_TRUE(IsRefusal(r.status())) << i << ": " << r.status();
    }
  }
  for (size_t len = 0; len < good.size(); ++len) {
    auto r = DecodeGroup(good.substr(0, len), "g");
    ASSERT_FALSE(r.ok()) << "truncation to " << len << " accepted";
    EXPECT_TRUE(IsRefusal(r.status())) << len << ": " << r.status();
  }
  auto r = DecodeGroup(good + "x", "g");
  EXPECT_FALSE(r.ok());
}

// Re-seals a group body with a valid checksum, so the checks behind the checksum are reached.
std::string Seal(std::string body) {
  PutU64(&body, codec::Checksum64(AsBytes(body)));
  return body;
}

TEST(VolumeBackupTest, GroupChecksBehindTheChecksum) {
  GroupRecord g;
  g.group_uuid = kUuidC;
  g.volume_uuids = {kUuidA};
  std::string body = EncodeGroup(g);
  body.resize(body.size() - 8);
  {
    std::string newer = body;
    newer[4] = 2;  // version 2
    auto r = DecodeGroup(Seal(newer), "g");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  }
  {
    GroupRecord bad = g;
    bad.volume_uuids = {"NOT-A-UUID"};
    std::string b = EncodeGroup(bad);
    auto r = DecodeGroup(b, "g");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  }
  {
    GroupRecord bad = g;
    bad.group_uuid = "x";
    auto r = DecodeGroup(EncodeGroup(bad), "g");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  }
  {
    // A KV block that claims more pairs than it holds.
    std::string b = body.substr(0, 8);
    PutU32(&b, 1000);
    auto r = DecodeGroup(Seal(b), "g");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  }
  {
    std::string b = body.substr(0, 8);
    PutU32(&b, 0xffffffffu);
    auto r = DecodeGroup(Seal(b), "g");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  }
}

}  // namespace
}  // namespace chunkferry::engine
