#include "origin/http_caching.h"

#include <curl/curl.h>

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace lcache::internal {
namespace {

absl::string_view Absl(std::string_view s) { return {s.data(), s.size()}; }

// A delta-seconds value; nullopt when malformed. Values too large for int64
// are capped, as RFC 9111 asks.
std::optional<int64_t> DeltaSeconds(absl::string_view text) {
  text = absl::StripAsciiWhitespace(absl::StripPrefix(absl::StripSuffix(text, "\""), "\""));
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) return std::nullopt;
  int64_t n = 0;
  if (!absl::SimpleAtoi(text, &n)) return int64_t{1} << 31;  // digits, but too many
  return n;
}

// An HTTP date (curl_getdate reads the three formats RFC 9110 allows).
std::optional<absl::Time> HttpDate(const std::string& text) {
  const time_t t = curl_getdate(text.c_str(), nullptr);
  if (t == -1) return std::nullopt;
  return absl::FromTimeT(t);
}

}  // namespace

void CachingHeaders::Add(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return;
  const absl::string_view name = absl::StripAsciiWhitespace(Absl(line.substr(0, colon)));
  const std::string value(absl::StripAsciiWhitespace(Absl(line.substr(colon + 1))));
  if (absl::EqualsIgnoreCase(name, "cache-control")) {
    cache_control = cache_control.empty() ? value : cache_control + ", " + value;
  } else if (absl::EqualsIgnoreCase(name, "expires")) {
    expires = value;
  } else if (absl::EqualsIgnoreCase(name, "date")) {
    date = value;
  } else if (absl::EqualsIgnoreCase(name, "age")) {
    age = value;
  } else if (absl::EqualsIgnoreCase(name, "vary")) {
    for (absl::string_view field : absl::StrSplit(value, ',')) {
      if (absl::StripAsciiWhitespace(field) == "*") vary_any = true;
    }
  }
}

Freshness FreshnessOf(const CachingHeaders& headers, absl::Time now) {
  if (headers.vary_any) return {.cacheable = false, .ttl = std::nullopt};
  std::optional<int64_t> max_age;
  std::optional<int64_t> s_maxage;
  for (absl::string_view directive : absl::StrSplit(headers.cache_control, ',')) {
    directive = absl::StripAsciiWhitespace(directive);
    const size_t eq = directive.find('=');
    const absl::string_view name = directive.substr(0, eq);
    const absl::string_view arg = eq == absl::string_view::npos ? "" : directive.substr(eq + 1);
    if (absl::EqualsIgnoreCase(name, "no-store") || absl::EqualsIgnoreCase(name, "no-cache") ||
        absl::EqualsIgnoreCase(name, "private")) {
      return {.cacheable = false, .ttl = std::nullopt};
    }
    // A malformed max-age makes the answer stale (RFC 9111, 4.2.1).
    if (absl::EqualsIgnoreCase(name, "max-age")) max_age = DeltaSeconds(arg).value_or(0);
    if (absl::EqualsIgnoreCase(name, "s-maxage")) s_maxage = DeltaSeconds(arg).value_or(0);
  }
  std::optional<absl::Duration> lifetime;
  if (s_maxage || max_age) {
    lifetime = absl::Seconds(s_maxage ? *s_maxage : *max_age);
  } else if (headers.expires) {
    const std::optional<absl::Time> expires = HttpDate(*headers.expires);
    if (!expires) return {.cacheable = false, .ttl = std::nullopt};  // "0", "-1": already expired
    const std::optional<absl::Time> date = headers.date ? HttpDate(*headers.date) : std::nullopt;
    lifetime = *expires - date.value_or(now);
  } else {
    return {};
  }
  if (headers.age) lifetime = *lifetime - absl::Seconds(DeltaSeconds(*headers.age).value_or(0));
  if (*lifetime <= absl::ZeroDuration()) return {.cacheable = false, .ttl = std::nullopt};
  return {.cacheable = true, .ttl = *lifetime};
}

}  // namespace lcache::internal
