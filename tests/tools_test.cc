// The programs' shared pieces: Go-style flags and the node's data sources.

#include <string>
#include <vector>

#include "go_flags.h"
#include "gtest/gtest.h"
#include "node_source.h"

namespace lcache::tools {
namespace {

std::vector<std::string> Rewrite(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  GoStyleArgs go(static_cast<int>(argv.size()), argv.data());
  return std::vector<std::string>(go.argv(), go.argv() + go.argc());
}

TEST(GoStyleArgsTest, DashesInFlagNamesBecomeUnderscores) {
  EXPECT_EQ(Rewrite({"prog", "-cache-mb=64", "--expire-ms", "5", "-addr", "a-b:1", "get"}),
            (std::vector<std::string>{"prog", "-cache_mb=64", "--expire_ms", "5", "-addr", "a-b:1",
                                      "get"}));
}

TEST(GoStyleArgsTest, ValuesAndArgumentsAfterDoubleDashStay) {
  EXPECT_EQ(Rewrite({"prog", "-key=a-b", "--", "-not-a-flag"}),
            (std::vector<std::string>{"prog", "-key=a-b", "--", "-not-a-flag"}));
  EXPECT_EQ(Rewrite({"prog", "-", "-5"}), (std::vector<std::string>{"prog", "-", "-5"}));
}

TEST(NodeSourceTest, DemoServesTheScores) {
  absl::StatusOr<Getter> demo = MakeSource("demo");
  ASSERT_TRUE(demo.ok());
  EXPECT_EQ((*demo)("Tom")->value.view(), "630");
  EXPECT_EQ((*demo)("Jack")->value.view(), "589");
  EXPECT_EQ((*demo)("Bob").status(), KeyNotFoundError());
}

TEST(NodeSourceTest, SyntheticIsDeterministicPerKey) {
  absl::StatusOr<Getter> synthetic = MakeSource("synthetic:100");
  ASSERT_TRUE(synthetic.ok());
  ByteView a = (*synthetic)("a")->value;
  EXPECT_EQ(a.size(), 100u);
  EXPECT_EQ(a.view(), SyntheticValue("a", 100));
  EXPECT_NE(a.view(), SyntheticValue("b", 100));
  EXPECT_TRUE(MakeSource("synthetic:10:0").ok());
}

TEST(NodeSourceTest, BadSpecsAreRejectedWithTheExpectedForm) {
  for (const char* bad : {"", "nope", "synthetic", "synthetic:x", "synthetic:1:2:3", "synthetic:-1",
                          "synthetic:10:y"}) {
    absl::StatusOr<Getter> g = MakeSource(bad);
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(MakeSource("nope").status().message().find("synthetic:BYTES[:DELAY_MS]"),
            absl::string_view::npos);
}

TEST(NodeSourceTest, LoadLoggingFlag) {
  EXPECT_EQ(*ParseLoadLogging("all"), LoadLogging::kAll);
  EXPECT_EQ(*ParseLoadLogging("sampled"), LoadLogging::kSampled);
  EXPECT_EQ(*ParseLoadLogging("none"), LoadLogging::kNone);
  EXPECT_EQ(ParseLoadLogging("every").status().code(), absl::StatusCode::kInvalidArgument);
  for (LoadLogging logging : {LoadLogging::kAll, LoadLogging::kSampled, LoadLogging::kNone}) {
    absl::StatusOr<Getter> demo = MakeSource("demo", logging);
    ASSERT_TRUE(demo.ok());
    EXPECT_EQ((*demo)("Sam")->value.view(), "567");
  }
}

}  // namespace
}  // namespace lcache::tools
