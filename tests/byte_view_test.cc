// ByteView: shared, immutable bytes; copies share, the last one frees.

#include "lcache/byte_view.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lcache {
namespace {

TEST(ByteViewTest, CopyOwnsItsBytes) {
  std::string source = "hello";
  ByteView v = ByteView::Copy(source);
  source[0] = 'j';
  EXPECT_EQ(v.view(), "hello");
  EXPECT_EQ(v.size(), 5u);
  EXPECT_EQ(v.ToString(), "hello");
}

TEST(ByteViewTest, AdoptDoesNotCopy) {
  std::string s(100, 'x');
  const char* bytes = s.data();
  ByteView v = ByteView::Adopt(std::move(s));
  EXPECT_EQ(v.data(), bytes);
  EXPECT_EQ(v.size(), 100u);
}

TEST(ByteViewTest, CopiesShareAndOutliveTheOriginal) {
  ByteView copy;
  {
    ByteView original = ByteView::Copy("shared");
    copy = original;
    EXPECT_EQ(copy.data(), original.data());
  }
  EXPECT_EQ(copy.view(), "shared");  // ASan would flag a use after free
  ByteView moved = std::move(copy);
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(moved.view(), "shared");
}

TEST(ByteViewTest, EmptyViews) {
  EXPECT_TRUE(ByteView().empty());
  EXPECT_TRUE(ByteView::Copy("").empty());
  EXPECT_TRUE(ByteView::Adopt(std::string()).empty());
  EXPECT_EQ(ByteView(), "");
}

TEST(ByteViewTest, ConcurrentCopiesAndDestruction) {
  ByteView v = ByteView::Copy(std::string(64, 'z'));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([v] {
      for (int i = 0; i < 10000; ++i) {
        ByteView c = v;
        ASSERT_EQ(c.size(), 64u);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(v.view(), std::string(64, 'z'));
}

}  // namespace
}  // namespace lcache
