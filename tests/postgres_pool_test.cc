// PostgresOrigin's connection pool when opening a connection throws: the
// only exception there is std::bad_alloc, which this binary's operator new
// raises on request. The pool counts a connection from the moment it starts
// opening it, so a throw that skipped the count's release would leave the
// pool one connection short for good. The real server paths are in
// origin_test.py; this needs none (nothing listens on port 1).

#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/postgres_origin.h"

namespace {
thread_local bool t_fail_next_allocation = false;
}  // namespace

void* operator new(std::size_t n) {
  if (t_fail_next_allocation) {
    t_fail_next_allocation = false;
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC 12 takes the free() in a replaced operator delete for a mismatch with
// the new expressions it inlines: it is the pair this binary defines.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace lcache {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PostgresPoolTest, AConnectThatThrowsGivesItsConnectionBack) {
  absl::StatusOr<std::shared_ptr<PostgresOrigin>> origin =
      PostgresOrigin::Create({.url = "postgres://app@127.0.0.1:1/shop",
                              .query = "SELECT v FROM t WHERE k = $1",
                              .connections = 1,
                              .timeout = absl::Seconds(3)});
  ASSERT_TRUE(origin.ok()) << origin.status();
  // Check takes no memory before it starts a connection: the first
  // allocation is the connect's own. (Were one added before the pool counts
  // the connection, the throw would land there and this test would pass
  // with or without the fix: it fails without it today.)
  t_fail_next_allocation = true;
  EXPECT_THROW((void)(*origin)->Check(), std::bad_alloc);
  EXPECT_FALSE(t_fail_next_allocation) << "Check allocated nothing: the test tests nothing";
  t_fail_next_allocation = false;
  // The pool's one connection is free again: the next Check tries to
  // connect and is refused, instead of waiting out its timeout for a
  // connection no one holds ("all 1 connections stayed busy").
  const absl::Status s = (*origin)->Check();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("stayed busy")));
}

}  // namespace
}  // namespace lcache
