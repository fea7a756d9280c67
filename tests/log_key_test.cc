#include "lcache/log_key.h"

#include <string>

#include "gtest/gtest.h"

namespace lcache {
namespace {

TEST(LogKeyTest, PrintableKeysAreShownAsTheyAre) {
  EXPECT_EQ(LogKey("Tom"), "Tom");
  EXPECT_EQ(LogKey("user:42/a b"), "user:42/a b");
}

TEST(LogKeyTest, ControlBytesCannotForgeALine) {
  const std::string forged = LogKey("k\n2026-12-03T00:00:00 error forged");
  EXPECT_EQ(forged.find('\n'), std::string::npos);
  EXPECT_EQ(forged, "k\\n2026-12-03T00:00:00 error forged");
  // \xNN for every other byte (and a hex-digit letter right after one, so
  // that the escape cannot be read as longer).
  EXPECT_EQ(LogKey(std::string("a\0z\x1b[31m\xff", 9)), "a\\x00z\\x1b[31m\\xff");
  EXPECT_EQ(LogKey(std::string("\x01"
                               "b",
                               2)),
            "\\x01\\x62");
  EXPECT_EQ(LogKey("quote\"back\\slash"), "quote\\\"back\\\\slash");
}

TEST(LogKeyTest, LongKeysAreCutAndSayTheirLength) {
  const std::string key(4096, 'k');
  const std::string shown = LogKey(key);
  EXPECT_EQ(shown, std::string(kLogKeyBytes, 'k') + "...[4096 bytes]");
  EXPECT_EQ(LogKey("abcdef", 3), "abc...[6 bytes]");
  EXPECT_EQ(LogKey("abc", 3), "abc");
}

}  // namespace
}  // namespace lcache
