#include "control/volume_backup_query.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace chunkferry::control {
namespace {

using Params = std::multimap<std::string, std::string>;

Json Inv(const std::string& uuid, const std::string& type, int64_t size,
         const std::vector<std::string>& storages, const char* description = nullptr) {
  Json j;
  j["uuid"] = uuid;
  j["name"] = "backup-" + uuid;
  if (description != nullptr) j["description"] = description;
  j["type"] = type;
  j["size"] = size;
  j["groupUuid"] = "g1";
  Json refs = Json::array();
  for (const auto& s : storages)
    refs.push_back(Json{{"backupStorageUuid", s}, {"status", "Ready"}});
  j["backupStorageRefs"] = refs;
  return j;
}

std::vector<Json> Corpus() {
  return {Inv("a1", "Root", 300, {"s1", "s2"}, "first"), Inv("b2", "Data", 100, {"s1"}),
          Inv("c3", "Data", 200, {"s2"}, "third"), Inv("d4", "Data", 400, {"s3"})};
}

ParsedQuery Parse(const Params& p) { return ParseVolumeBackupQuery(p, std::nullopt); }

// The uuids a query answers, in order; "error:<code>" when it fails.
std::string Answer(const Params& p) {
  const ParsedQuery parsed = Parse(p);
  if (!parsed.bad_request.empty()) return "400";
  const QueryAnswer a = RunVolumeBackupQuery(parsed.query, Corpus());
  if (a.error.has_value()) return "error:" + a.error->code;
  std::string out;
  for (const Json& inv : a.body["inventories"]) out += inv.value("uuid", "?") + " ";
  return out;
}

TEST(VolumeBackupQueryTest, EveryOperator) {
  EXPECT_EQ(Answer({}), "a1 b2 c3 d4 ");
  EXPECT_EQ(Answer({{"q", "uuid=b2"}}), "b2 ");
  EXPECT_EQ(Answer({{"q", "type!=Data"}}), "a1 ");
  EXPECT_EQ(Answer({{"q", "uuid?=a1,c3,zz"}}), "a1 c3 ");
  EXPECT_EQ(Answer({{"q", "uuid!?=a1,c3"}}), "b2 d4 ");
  EXPECT_EQ(Answer({{"q", "name~=%c_"}}), "c3 ");
  EXPECT_EQ(Answer({{"q", "name!~=backup-%"}}), "");
  EXPECT_EQ(Answer({{"q", "size>200"}}), "a1 d4 ");
  EXPECT_EQ(Answer({{"q", "size>=200"}}), "a1 c3 d4 ");
  EXPECT_EQ(Answer({{"q", "size<200"}}), "b2 ");
  EXPECT_EQ(Answer({{"q", "size<=200"}}), "b2 c3 ");
  EXPECT_EQ(Answer({{"q", "description is null"}}), "b2 d4 ");
  EXPECT_EQ(Answer({{"q", "description not null"}}), "a1 c3 ");
  // A null field satisfies no comparison, as in SQL.
  EXPECT_EQ(Answer({{"q", "description!=first"}}), "c3 ");
  // Conditions are ANDed.
  EXPECT_EQ(Answer({{"q", "type=Data"}, {"q", "size>100"}}), "c3 d4 ");
}

TEST(VolumeBackupQueryTest, RefsThroughTheExpandedNames) {
  EXPECT_EQ(Answer({{"q", "backupStorageRef.backupStorageUuid=s1"}}), "a1 b2 ");
  EXPECT_EQ(Answer({{"q", "backupStorage.uuid=s2"}}), "a1 c3 ");
  EXPECT_EQ(Answer({{"q", "backupStorage.uuid?=s2,s3"}}), "a1 c3 d4 ");
  EXPECT_EQ(Answer({{"q", "backupStorageRef.status=Ready"}}), "a1 b2 c3 d4 ");
  // The plural is not an expanded name on the platform either.
  EXPECT_EQ(Answer({{"q", "backupStorageRefs.backupStorageUuid=s1"}}), "error:SYS.1000");
}

TEST(VolumeBackupQueryTest, StoragesTheConditionsConfineTo) {
  EXPECT_TRUE(QueriedStorages(Parse({{"q", "type=Data"}}).query).empty());
  EXPECT_EQ(QueriedStorages(Parse({{"q", "backupStorage.uuid=s1"}}).query),
            std::vector<std::string>{"s1"});
  EXPECT_EQ(QueriedStorages(Parse({{"q", "backupStorage.uuid?=s1,s2"},
                                   {"q", "backupStorageRef.backupStorageUuid?=s2,s3"}})
                                .query),
            std::vector<std::string>{"s2"});
  // Disjoint: no storage at all, not every storage.
  EXPECT_EQ(QueriedStorages(
                Parse({{"q", "backupStorage.uuid=s1"}, {"q", "backupStorage.uuid=s2"}}).query),
            std::vector<std::string>{""});
  // != does not confine.
  EXPECT_TRUE(QueriedStorages(Parse({{"q", "backupStorage.uuid!=s1"}}).query).empty());
}

TEST(VolumeBackupQueryTest, PagesSortsCountsAndPicksFields) {
  EXPECT_EQ(Answer({{"sort", "-size"}}), "d4 a1 c3 b2 ");
  EXPECT_EQ(Answer({{"sort", "+size"}}), "b2 c3 a1 d4 ");
  EXPECT_EQ(Answer({{"sort", " size"}}), "b2 c3 a1 d4 ");  // an unencoded '+' arrives as a space
  EXPECT_EQ(Answer({{"sort", "-size"}, {"limit", "2"}, {"start", "1"}}), "a1 c3 ");
  EXPECT_EQ(Answer({{"start", "9"}}), "");
  EXPECT_EQ(Answer({{"limit", "0"}}), "");
  EXPECT_EQ(Answer({{"sort", "nothing"}}), "error:SYS.1000");

  const auto count =
      RunVolumeBackupQuery(Parse({{"q", "type=Data"}, {"count", "true"}}).query, Corpus());
  EXPECT_EQ(count.body.dump(), R"({"total":3,"schema":{}})");
  const auto with_count = RunVolumeBackupQuery(
      Parse({{"q", "type=Data"}, {"replyWithCount", "true"}, {"limit", "1"}}).query, Corpus());
  ASSERT_EQ(with_count.body["inventories"].size(), 1u);
  EXPECT_EQ(with_count.body["total"], 3);
  EXPECT_EQ(with_count.body["schema"].value("inventories[0]", ""),
            "org.zstack.header.storage.backup.VolumeBackupInventory");
  const auto picked =
      RunVolumeBackupQuery(Parse({{"q", "uuid=a1"}, {"fields", "uuid,size"}}).query, Corpus());
  EXPECT_EQ(picked.body["inventories"][0].dump(), R"({"uuid":"a1","size":300})");
  EXPECT_EQ(Answer({{"fields", "uuid,bogus"}}), "error:SYS.1000");
  // Parameters the platform ignores are ignored.
  EXPECT_EQ(Answer({{"groupBy", "type"}, {"whatever", "1"}}), "a1 b2 c3 d4 ");
}

TEST(VolumeBackupQueryTest, BadRequestsInThePlatformsWords) {
  const ParsedQuery no_op = Parse({{"q", "uuid"}});
  EXPECT_EQ(no_op.bad_request,
            "Invalid query parameter. The 'uuid' in the parameter[q] doesn't contain any query "
            "operator. Valid query operators are [!=, >=, <=, !?=, !~=, ~=, ?=, =, >, <, is null, "
            "not null]");
  EXPECT_NE(Parse({{"q", "=x"}}).bad_request.find("is not a key-value pair split by ="),
            std::string::npos);
  EXPECT_NE(Parse({{"q", "uuid="}}).bad_request, "");
  EXPECT_EQ(Parse({{"limit", "ten"}}).bad_request,
            "Invalid query parameter. 'limit' must be an integer");
  EXPECT_EQ(Parse({{"start", "-1"}}).bad_request,
            "Invalid query parameter. 'start' must be an integer");
  EXPECT_EQ(Answer({{"q", "nothing=1"}}), "error:SYS.1000");
  EXPECT_EQ(Answer({{"q", "size>big"}}), "error:SYS.1007");
  // The first operator found in the platform's order wins, even inside the value.
  const ParsedQuery odd = Parse({{"q", "name=a!=b"}});
  ASSERT_EQ(odd.query.conditions.size(), 1u);
  EXPECT_EQ(odd.query.conditions[0].op, "!=");
  EXPECT_EQ(odd.query.conditions[0].field, "name=a");
}

TEST(VolumeBackupQueryTest, ThePathsUuidIgnoresTheParameters) {
  const ParsedQuery p = ParseVolumeBackupQuery({{"q", "bad"}, {"limit", "x"}}, "c3");
  EXPECT_TRUE(p.bad_request.empty());
  const QueryAnswer a = RunVolumeBackupQuery(p.query, Corpus());
  ASSERT_EQ(a.body["inventories"].size(), 1u);
  EXPECT_EQ(a.body["inventories"][0]["uuid"], "c3");
  const QueryAnswer none = RunVolumeBackupQuery(ParseVolumeBackupQuery({}, "zz").query, Corpus());
  EXPECT_EQ(none.body.dump(), R"({"inventories":[],"schema":{}})");
}

}  // namespace
}  // namespace chunkferry::control
