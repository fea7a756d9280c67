#include "go_flags.h"

#include <algorithm>
#include <string_view>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace lcache::tools {

GoStyleArgs::GoStyleArgs(int argc, char** argv) : args_(argv, argv + argc) {
  bool flags_ended = false;
  for (size_t i = 1; i < args_.size(); ++i) {
    std::string& arg = args_[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') continue;
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    const size_t name_begin = arg.find_first_not_of('-');
    const size_t name_end = std::min(arg.find('='), arg.size());
    if (name_begin == std::string::npos || name_begin >= name_end) continue;
    std::replace(arg.begin() + static_cast<std::ptrdiff_t>(name_begin),
                 arg.begin() + static_cast<std::ptrdiff_t>(name_end), '-', '_');
  }
  for (std::string& a : args_) pointers_.push_back(a.data());
  pointers_.push_back(nullptr);
}

std::vector<std::string> ParseGoStyleCommandLine(int argc, char** argv, const char* usage,
                                                 const char* main_file) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [main_file](absl::string_view file) {
    return absl::EndsWith(file, main_file);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  GoStyleArgs args(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(args.argc(), args.argv());
  return std::vector<std::string>(positional.begin(), positional.end());
}

}  // namespace lcache::tools
