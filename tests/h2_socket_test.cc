// The lean transport's shared socket helpers: the host:port split that its
// server, its client and lcache-bench's client use.

#include "h2_socket.h"

#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

TEST(SplitHostPortTest, SplitsAtTheLastColon) {
  std::optional<HostPort> v4 = SplitHostPort("127.0.0.1:9001");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, "9001");

  std::optional<HostPort> v6 = SplitHostPort("[::1]:9001");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->host, "::1");  // without its brackets
  EXPECT_EQ(v6->port, "9001");

  std::optional<HostPort> any = SplitHostPort(":0");
  ASSERT_TRUE(any.has_value());
  EXPECT_EQ(any->host, "");
  EXPECT_EQ(any->port, "0");

  std::optional<HostPort> no_port = SplitHostPort("localhost:");
  ASSERT_TRUE(no_port.has_value());
  EXPECT_EQ(no_port->port, "");
}

TEST(SplitHostPortTest, NoColonIsNotAnAddress) {
  EXPECT_FALSE(SplitHostPort("localhost").has_value());
  EXPECT_FALSE(SplitHostPort("").has_value());
}

}  // namespace
}  // namespace lcache::internal
