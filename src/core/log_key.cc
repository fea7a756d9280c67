#include "lcache/log_key.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace lcache {

std::string LogKey(std::string_view key, size_t max_bytes) {
  const std::string_view shown = key.substr(0, max_bytes);
  std::string out = absl::CHexEscape(absl::string_view(shown.data(), shown.size()));
  if (shown.size() < key.size()) absl::StrAppend(&out, "...[", key.size(), " bytes]");
  return out;
}

}  // namespace lcache
