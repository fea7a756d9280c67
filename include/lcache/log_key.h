// How a key appears in a log line. Keys are client bytes: a newline in one
// would forge a line, an escape sequence would drive the operator's terminal,
// and a 4 KB key would make a 4 KB line. So every byte that is not printable
// ASCII (and the backslash and quotes) is escaped C-style (\n, \x01, \"), and
// a key longer than `max_bytes` shows its first `max_bytes` bytes, then
// "...[N bytes]" with its whole size. The result has no spaces other than the
// key's own (escaped keys keep the space character), and no control bytes.

#ifndef LCACHE_LOG_KEY_H_
#define LCACHE_LOG_KEY_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace lcache {

inline constexpr size_t kLogKeyBytes = 128;

std::string LogKey(std::string_view key, size_t max_bytes = kLogKeyBytes);

}  // namespace lcache

#endif  // LCACHE_LOG_KEY_H_
