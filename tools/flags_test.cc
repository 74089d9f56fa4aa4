#include "tools/flags.h"

#include "gtest/gtest.h"

namespace chunkferry::tools {
namespace {

const std::vector<FlagSpec> kSpecs = {
    {"store", "dir"}, {"size", "a size", true, "64k"}, {"force", "flag", false, ""}};

TEST(FlagsTest, ParsesBothValueFormsAndBooleans) {
  auto f = Flags::Parse(kSpecs, {"--store", "/s", "--size=1M", "--force"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Get("store"), "/s");
  EXPECT_EQ(*f->GetSize("size"), 1u << 20);
  EXPECT_TRUE(f->GetBool("force"));
}

TEST(FlagsTest, DefaultsApplyWhenAbsent) {
  auto f = Flags::Parse(kSpecs, {});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f->GetSize("size"), 64u << 10);
  EXPECT_FALSE(f->GetBool("force"));
  EXPECT_FALSE(f->Require("store").ok());
}

TEST(FlagsTest, RejectsUnknownMissingRepeatedAndStray) {
  EXPECT_FALSE(Flags::Parse(kSpecs, {"--stor", "/s"}).ok());
  EXPECT_FALSE(Flags::Parse(kSpecs, {"--store"}).ok());
  EXPECT_FALSE(Flags::Parse(kSpecs, {"--store=a", "--store=b"}).ok());
  EXPECT_FALSE(Flags::Parse(kSpecs, {"stray"}).ok());
  EXPECT_FALSE(Flags::Parse(kSpecs, {"--force=yes"}).ok());
}

TEST(FlagsTest, ParsesSizes) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("4k"), 4096u);
  EXPECT_EQ(*ParseSize("2G"), 2ull << 30);
  EXPECT_FALSE(ParseSize("").ok());
  EXPECT_FALSE(ParseSize("k").ok());
  EXPECT_FALSE(ParseSize("12x").ok());
  EXPECT_FALSE(ParseSize("-1").ok());
  EXPECT_FALSE(ParseSize("99999999999999999999").ok());
}

}  // namespace
}  // namespace chunkferry::tools
