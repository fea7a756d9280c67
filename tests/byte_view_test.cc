// ByteView: shared, immutable bytes; copies share, the last one frees.

#include "lcache/byte_view.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
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

// The block behind a CopyToOwnLines view starts on a cache line: its 8-byte
// header, then the bytes.
bool StartsOnALine(const ByteView& v) {
  return (reinterpret_cast<uintptr_t>(v.data()) - sizeof(internal::SharedBlock)) % 64 == 0;
}

TEST(ByteViewTest, CopyToOwnLinesCopiesIntoALineAlignedBlock) {
  std::string source(100, 'a');
  ByteView v = ByteView::CopyToOwnLines(source);
  source[0] = 'b';
  EXPECT_EQ(v.view(), std::string(100, 'a'));
  EXPECT_TRUE(StartsOnALine(v));
  ByteView other = ByteView::CopyToOwnLines(std::string(100, 'c'));
  EXPECT_NE(other.data(), v.data());  // a live copy's block is never handed out again
  EXPECT_EQ(v.view(), std::string(100, 'a'));
  EXPECT_EQ(other.view(), std::string(100, 'c'));
  EXPECT_TRUE(ByteView::CopyToOwnLines("").empty());
}

TEST(ByteViewTest, CopyToOwnLinesReusesTheThreadsSpareOfTheSameClass) {
  const char* first = nullptr;
  {
    ByteView v = ByteView::CopyToOwnLines(std::string(100, 'x'));  // 108 bytes: two lines
    first = v.data();
    ByteView shared = v;  // the last of several references keeps it too
  }
  ByteView same_class = ByteView::CopyToOwnLines(std::string(120, 'y'));
  EXPECT_EQ(same_class.data(), first);
  EXPECT_EQ(same_class.view(), std::string(120, 'y'));
  ByteView other_class = ByteView::CopyToOwnLines(std::string(20, 'z'));  // one line
  EXPECT_NE(other_class.data(), first);
  EXPECT_TRUE(StartsOnALine(other_class));
}

TEST(ByteViewTest, CopyToOwnLinesFallsBackToCopyBeyondItsLargestClass) {
  for (size_t size : {size_t{312}, size_t{313}, size_t{4096}}) {
    ByteView v = ByteView::CopyToOwnLines(std::string(size, 'q'));
    EXPECT_EQ(v.view(), std::string(size, 'q')) << size;
    if (size == 312) {
      EXPECT_TRUE(StartsOnALine(v));
    }
  }
}

// A copy made on one thread and dropped on another becomes the second
// thread's spare; each thread's spares are freed when it exits (only ASan's
// leak check can fail that part).
TEST(ByteViewTest, CopyToOwnLinesBlocksCrossThreadsAndAreFreedAtExit) {
  ByteView made_here = ByteView::CopyToOwnLines(std::string(50, 'h'));
  const char* block = made_here.data();
  std::thread([moved = std::move(made_here), block]() mutable {
    EXPECT_EQ(moved.view(), std::string(50, 'h'));
    moved = ByteView();
    ByteView reused = ByteView::CopyToOwnLines(std::string(40, 'r'));
    EXPECT_EQ(reused.data(), block);
    EXPECT_EQ(reused.view(), std::string(40, 'r'));
  }).join();
  ByteView fresh = ByteView::CopyToOwnLines(std::string(50, 'f'));
  EXPECT_EQ(fresh.view(), std::string(50, 'f'));
}

// A view dropped by a thread-local's destructor after the thread's spares
// were released is freed, not kept (it would leak: only ASan's leak check
// can fail this test).
TEST(ByteViewTest, CopyToOwnLinesViewsDroppedLateInThreadExitAreFreed) {
  std::thread([] {
    // Constructed before the spares' releaser, so destroyed after it.
    static thread_local ByteView held;
    held = ByteView::CopyToOwnLines(std::string(30, 'l'));
    ByteView::CopyToOwnLines(std::string(30, 'k'));  // kept as a spare: registers the releaser
    ByteView::CopyToOwnLines(std::string(200, 'k'));
  }).join();
}

// Two threads hold references to one block and drop them together, so either
// may be the last and keep the block as its spare, which its next copy
// reuses at once. A stress test for the sanitizers (TSan: the reuse ordered
// after the other thread's reads; ASan: no block used after it was kept).
// A kept block whose count was left at 0 (when both drops took the count's
// slow path) would be freed again by the first drop of a second reference to
// the next copy, and `next` below would share `copy`'s bytes; the window for
// both drops to take that path is a few ns, so this test seldom sees it.
TEST(ByteViewTest, CopyToOwnLinesBlocksDroppedByTwoThreadsAtOnce) {
  constexpr int kRounds = 20000;
  std::vector<ByteView> refs[2];
  for (int i = 0; i < kRounds; ++i) {
    refs[0].push_back(ByteView::CopyToOwnLines(std::string(40, static_cast<char>('a' + i % 26))));
    refs[1].push_back(refs[0].back());
  }
  std::atomic<int> wrong{0};
  std::atomic<int> arrived{0};
  auto reader = [&](int t) {
    const std::string own(40, static_cast<char>('0' + t)), other(40, '#');
    for (int i = 0; i < kRounds; ++i) {
      ByteView mine = std::move(refs[t][i]);
      if (mine.view() != std::string(40, static_cast<char>('a' + i % 26))) ++wrong;
      // Both threads drop block i together (a spinning barrier per round).
      arrived.fetch_add(1);
      while (arrived.load() < 2 * (i + 1)) {
        std::this_thread::yield();  // the other thread may share this core (ctest -j2)
      }
      mine = ByteView();  // perhaps the last reference: kept as this thread's spare
      ByteView copy = ByteView::CopyToOwnLines(own);
      { ByteView extra = copy; }
      ByteView next = ByteView::CopyToOwnLines(other);
      if (copy.view() != own || next.view() != other || copy.data() == next.data()) ++wrong;
    }
  };
  std::thread first(reader, 0);
  std::thread second(reader, 1);
  first.join();
  second.join();
  EXPECT_EQ(wrong, 0);
}

TEST(ByteViewTest, CopyToOwnLinesViewsPassedBetweenThreads) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 5000;
  std::vector<std::vector<ByteView>> handed(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kRounds; ++i) {
      handed[t].push_back(
          ByteView::CopyToOwnLines(std::string(1 + i % 250, static_cast<char>('a' + t))));
    }
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    // Each thread reads and drops the views made for it on the main thread,
    // interleaved with copies of its own that reuse the blocks it drops.
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        ByteView v = std::move(handed[t][i]);
        ASSERT_EQ(v.view(), std::string(1 + i % 250, static_cast<char>('a' + t)));
        v = ByteView();
        ByteView own = ByteView::CopyToOwnLines(std::string(1 + (i * 7) % 250, 'o'));
        ASSERT_EQ(own.view(), std::string(1 + (i * 7) % 250, 'o'));
      }
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace
}  // namespace lcache
