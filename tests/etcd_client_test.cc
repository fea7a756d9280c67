// EtcdClient and EtcdDiscovery without an etcd: the option checks and the
// prefix arithmetic. Everything that talks to etcd is in tests/etcd_test.py,
// against a real etcd server.

#include "etcd/etcd_client.h"

#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/etcd_discovery.h"

namespace lcache {
namespace {

using ::testing::HasSubstr;

TEST(EtcdClientTest, PrefixEndIsTheFirstKeyAfterThePrefix) {
  EXPECT_EQ(EtcdClient::PrefixEnd("lcache/"), "lcache0");  // '/' + 1 == '0'
  EXPECT_EQ(EtcdClient::PrefixEnd("a"), "b");
  EXPECT_EQ(EtcdClient::PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(EtcdClient::PrefixEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(EtcdClient::PrefixEnd(""), std::string(1, '\0'));
}

TEST(EtcdClientTest, RejectsOptionsThatCannotWork) {
  EXPECT_THAT(EtcdClient::Create({}).status().message(), HasSubstr("no etcd endpoint"));
  EXPECT_THAT(
      EtcdClient::Create({.endpoints = {"127.0.0.1:2379"}, .user = "root"}).status().message(),
      HasSubstr("both a user and a password"));
  EXPECT_THAT(EtcdClient::Create({.endpoints = {"127.0.0.1:2379"}, .ca_file = "/nonexistent/ca"})
                  .status()
                  .message(),
              HasSubstr("cannot read the etcd CA file /nonexistent/ca"));
  EXPECT_THAT(
      EtcdClient::Create({.endpoints = {"127.0.0.1:2379"}, .cert_file = "c"}).status().message(),
      HasSubstr("both its cert and key file"));
  EXPECT_TRUE(EtcdClient::Create({.endpoints = {"127.0.0.1:2379", "127.0.0.1:2380"}}).ok());
}

TEST(EtcdDiscoveryTest, RejectsBadOptionsWithoutConnecting) {
  auto ignore = [](const std::vector<std::string>&) {};
  const absl::Time start = absl::Now();
  EXPECT_THAT(EtcdDiscovery::Start({.endpoints = {"127.0.0.1:1"}, .service = ""}, "a:1", ignore)
                  .status()
                  .message(),
              HasSubstr("empty etcd service name"));
  EXPECT_THAT(EtcdDiscovery::Start(
                  {.endpoints = {"127.0.0.1:1"}, .lease_ttl = absl::ZeroDuration()}, "a:1", ignore)
                  .status()
                  .message(),
              HasSubstr("must be positive"));
  EXPECT_THAT(
      EtcdDiscovery::Start({.endpoints = {"127.0.0.1:1"}}, "a:1", nullptr).status().message(),
      HasSubstr("callback"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(EtcdDiscoveryTest, GivesUpOnAnUnreachableEtcdWithinTheStartTimeout) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<EtcdDiscovery>> d =
      EtcdDiscovery::Start({.endpoints = {"127.0.0.1:1"}, .start_timeout = absl::Milliseconds(300)},
                           "a:1", [](const std::vector<std::string>&) {});
  EXPECT_TRUE(absl::IsUnavailable(d.status())) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("etcd [127.0.0.1:1] unreachable"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

}  // namespace
}  // namespace lcache
