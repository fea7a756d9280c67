// The gRPC-over-HTTP/2 details the lean transport and lcache-bench write
// themselves, and the host:port split of peer addresses.

#include "lcache/grpc_wire.h"

#include <string>

#include "gtest/gtest.h"

namespace lcache::wire {
namespace {

TEST(GrpcWireTest, MessagePrefixRoundTrip) {
  std::string out;
  AppendGrpcMessage("hello", &out);
  EXPECT_EQ(out, std::string("\0\0\0\0\5hello", 10));
  absl::StatusOr<std::string_view> m = SingleGrpcMessage(out);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, "hello");

  std::string empty;
  AppendGrpcMessage("", &empty);
  EXPECT_EQ(*SingleGrpcMessage(empty), "");
}

TEST(GrpcWireTest, SingleMessageRejectsWhatIsNotExactlyOne) {
  EXPECT_FALSE(SingleGrpcMessage("").ok());
  EXPECT_FALSE(SingleGrpcMessage(std::string("\0\0\0\0", 4)).ok());
  EXPECT_FALSE(SingleGrpcMessage(std::string("\0\0\0\0\5hell", 9)).ok());  // truncated
  EXPECT_FALSE(SingleGrpcMessage(std::string("\0\0\0\0\1ab", 7)).ok());    // two
  absl::StatusOr<std::string_view> compressed = SingleGrpcMessage(std::string("\1\0\0\0\1a", 6));
  EXPECT_EQ(compressed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(compressed.status().message().find("compressed"), absl::string_view::npos);
}

TEST(GrpcWireTest, GrpcTimeout) {
  EXPECT_EQ(ParseGrpcTimeout("1S"), absl::Seconds(1));
  EXPECT_EQ(ParseGrpcTimeout("250m"), absl::Milliseconds(250));
  EXPECT_EQ(ParseGrpcTimeout("99999999u"), absl::Microseconds(99999999));
  EXPECT_EQ(ParseGrpcTimeout("2H"), absl::Hours(2));
  EXPECT_EQ(ParseGrpcTimeout("3M"), absl::Minutes(3));
  EXPECT_EQ(ParseGrpcTimeout("7n"), absl::Nanoseconds(7));
  EXPECT_EQ(ParseGrpcTimeout(""), std::nullopt);
  EXPECT_EQ(ParseGrpcTimeout("S"), std::nullopt);
  EXPECT_EQ(ParseGrpcTimeout("123456789S"), std::nullopt);  // 9 digits
  EXPECT_EQ(ParseGrpcTimeout("1x"), std::nullopt);
  EXPECT_EQ(ParseGrpcTimeout("-1S"), std::nullopt);
}

TEST(GrpcWireTest, PercentEncoding) {
  EXPECT_EQ(PercentEncode("plain text: ok"), "plain text: ok");
  EXPECT_EQ(PercentEncode("100%\n\xc3\xa9"), "100%25%0A%C3%A9");
  EXPECT_EQ(PercentDecode("100%25%0A%C3%A9"), "100%\n\xc3\xa9");
  EXPECT_EQ(PercentDecode("bad %zz and %4"), "bad %zz and %4");  // kept as is
}

TEST(GrpcWireTest, StatusCodes) {
  EXPECT_EQ(GrpcStatusCode("0"), absl::StatusCode::kOk);
  EXPECT_EQ(GrpcStatusCode("14"), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GrpcStatusCode("16"), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(GrpcStatusCode("17"), absl::StatusCode::kUnknown);
  EXPECT_EQ(GrpcStatusCode(""), absl::StatusCode::kUnknown);
  EXPECT_EQ(GrpcStatusCode("x"), absl::StatusCode::kUnknown);
}

TEST(GrpcWireTest, TimeoutHeaderRoundsUpToTheMillisecond) {
  EXPECT_EQ(GrpcTimeoutHeader(absl::Seconds(2)), "2000m");
  // Never shorter than the client's own deadline.
  EXPECT_EQ(GrpcTimeoutHeader(absl::Microseconds(1500)), "2m");
  EXPECT_EQ(GrpcTimeoutHeader(absl::Nanoseconds(1)), "1m");
  EXPECT_EQ(GrpcTimeoutHeader(absl::ZeroDuration()), "1m");
  EXPECT_EQ(GrpcTimeoutHeader(absl::Hours(1000)), "99999999m");  // 8 digits at most
  EXPECT_EQ(ParseGrpcTimeout(GrpcTimeoutHeader(absl::Milliseconds(250))), absl::Milliseconds(250));
}

TEST(GrpcWireTest, StatusOfAnHttpErrorWithoutGrpcStatus) {
  EXPECT_EQ(GrpcStatusFromHttp(404), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(GrpcStatusFromHttp(503), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GrpcStatusFromHttp(401), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(GrpcStatusFromHttp(500), absl::StatusCode::kUnknown);
}

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
}  // namespace lcache::wire
