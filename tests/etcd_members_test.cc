// What discovery makes of etcd's answers (src/etcd/etcd_members.h): only
// plausible addresses under the prefix reach the ring, in key order, and no
// answer can make the next watch's revision overflow.

#include "etcd/etcd_members.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

etcdserverpb::WatchResponse Events(
    std::initializer_list<std::tuple<mvccpb::Event::EventType, std::string, int64_t>> events) {
  etcdserverpb::WatchResponse response;
  for (const auto& [type, key, revision] : events) {
    mvccpb::Event* e = response.add_events();
    e->set_type(type);
    e->mutable_kv()->set_key(key);
    e->mutable_kv()->set_mod_revision(revision);
  }
  return response;
}

TEST(PlausiblePeerAddressTest, HostAndPortOnly) {
  for (const char* good : {"10.0.0.1:9000", "[::1]:9000", "node-1.svc:1", "h:65535"}) {
    EXPECT_TRUE(PlausiblePeerAddress(good)) << good;
  }
  for (const char* bad : {"", ":9000", "host", "host:", "host:0", "host:65536", "host:90a",
                          "host:123456", "a b:9000", "a\n:9000", "a\x01:9000"}) {
    EXPECT_FALSE(PlausiblePeerAddress(bad)) << bad;
  }
  EXPECT_FALSE(PlausiblePeerAddress(std::string(251, 'h') + ":9000"));
}

TEST(EtcdMembersTest, AListingKeepsPlausibleKeysUnderThePrefixInKeyOrder) {
  EtcdMembers members("lcache/");
  members.Reset({{"lcache/10.0.0.2:9000", ""},
                 {"lcache/10.0.0.1:9000", ""},
                 {"lcache/", ""},              // no address
                 {"lca", ""},                  // shorter than the prefix
                 {"other/10.0.0.3:9000", ""},  // outside it
                 {"lcache/bad\naddr:1", ""}},  // a newline
                7);
  EXPECT_THAT(members.Peers(), ElementsAre("10.0.0.1:9000", "10.0.0.2:9000"));
  EXPECT_EQ(members.ignored(), 4u);
  EXPECT_EQ(members.NextRevision(), 8);
}

TEST(EtcdMembersTest, WatchEventsAddAndRemove) {
  EtcdMembers members("lcache/");
  members.Reset({{"lcache/a:1", ""}}, 3);
  EXPECT_TRUE(members.Apply(Events({{mvccpb::Event::PUT, "lcache/b:2", 4},
                                    {mvccpb::Event::DELETE, "lcache/a:1", 5},
                                    {mvccpb::Event::PUT, "x", 6}})));
  EXPECT_THAT(members.Peers(), ElementsAre("b:2"));
  EXPECT_EQ(members.NextRevision(), 7);
  EXPECT_FALSE(members.Apply(Events({})));
  EXPECT_TRUE(members.Apply(Events({{mvccpb::Event::DELETE, "lcache/b:2", 8}})));
  EXPECT_THAT(members.Peers(), IsEmpty());
}

TEST(EtcdMembersTest, RevisionsThatCannotBeWatchedFromAreIgnored) {
  EtcdMembers members("lcache/");
  members.Reset({}, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(members.NextRevision(), 1);
  members.Apply(Events({{mvccpb::Event::PUT, "lcache/a:1", -5},
                        {mvccpb::Event::PUT, "lcache/b:1", 10},
                        {mvccpb::Event::PUT, "lcache/c:1", std::numeric_limits<int64_t>::max()},
                        {mvccpb::Event::PUT, "lcache/d:1", 3}}));
  EXPECT_EQ(members.NextRevision(), 11);  // never goes back, never overflows
  EXPECT_EQ(members.Peers().size(), 4u);
}

}  // namespace
}  // namespace lcache::internal
