// Go-style command lines for absl flags.
//
// The Go lru_cache's flags have dashes (-cache-mb, -expire-ms) and operators
// type them with one dash or two. absl flags are C identifiers and take both
// dash spellings, but not dashes inside names. This rewrites each flag's
// name (the part before any '=') from dashes to underscores, leaving values
// and positional arguments alone, so `-cache-mb=64`, `--cache-mb 64` and
// `-cache_mb=64` all reach absl as the flag cache_mb. Everything after "--"
// is left as is.

#ifndef LCACHE_TOOLS_GO_FLAGS_H_
#define LCACHE_TOOLS_GO_FLAGS_H_

#include <string>
#include <vector>

namespace lcache::tools {

class GoStyleArgs {
 public:
  GoStyleArgs(int argc, char** argv);

  int argc() { return static_cast<int>(pointers_.size()) - 1; }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> pointers_;  // into args_, null-terminated like argv
};

// Parses a Go-style command line into absl flags, with `usage` as the
// program's usage message, and returns the positional arguments (argv[0]
// first). -help lists the flags defined in the file named `main_file`: absl
// matches files to the program's name, which has a dash where the file has
// an underscore.
std::vector<std::string> ParseGoStyleCommandLine(int argc, char** argv, const char* usage,
                                                 const char* main_file);

}  // namespace lcache::tools

#endif  // LCACHE_TOOLS_GO_FLAGS_H_
