// HttpOrigin: a group's values from an HTTP service, over libcurl.
//
//   auto origin = lcache::HttpOrigin::Create(
//       {.url = "http://127.0.0.1:8000/items/{key}", .timeout = absl::Seconds(1)});
//   registry.NewGroup({.name = "items", .cache_bytes = 64 << 20, .origin = *origin});
//
// A load is one GET of the URL with {key} replaced by the key, percent-escaped
// (every byte but A-Z a-z 0-9 - . _ ~; dot segments are sent as they are,
// never resolved). Connections are kept and reused: one per load thread at
// most, up to `max_idle_connections`.
//
//   200             the body is the value; its lifetime from Cache-Control,
//                   Age and Expires (no-store, no-cache, private: served, not
//                   kept; nothing said: the group's default TTL)
//   404, 410        KeyNotFoundError()
//   429, 5xx        Unavailable "lcache: origin answered HTTP 503 ..."
//   anything else   Internal, naming the status (redirects are not followed)
//   too slow        DeadlineExceeded after `timeout` (connecting included)
//   unreachable     Unavailable, with curl's reason
//   body too big    OutOfRange, past `max_value_bytes` (the transfer stops)
//
// Thread-safety: as Origin.

#ifndef LCACHE_HTTP_ORIGIN_H_
#define LCACHE_HTTP_ORIGIN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/origin.h"

namespace lcache {

struct HttpOriginOptions {
  // http:// or https://, with {key} once, where the key goes.
  std::string url = {};
  absl::Duration timeout = absl::Milliseconds(1500);
  size_t max_value_bytes = size_t{16} << 20;
  int max_idle_connections = 16;
  // https: a CA bundle to trust instead of the system's; empty: the system's.
  std::string ca_file = {};
};

class HttpOrigin final : public Origin {
 public:
  // InvalidArgument for a URL that is not http(s), has no host, or has no
  // (or two) {key}; for a timeout <= 0 or max_value_bytes 0.
  static absl::StatusOr<std::shared_ptr<HttpOrigin>> Create(HttpOriginOptions options);
  ~HttpOrigin() override;

  absl::StatusOr<Loaded> Load(std::string_view key) override;
  std::string_view kind() const override { return "http"; }
  OriginStats stats() const override { return meter_.Snapshot(); }
  // scheme://host:port of the URL (no credentials, no path).
  const std::string& endpoint() const override;

 private:
  class Handles;
  HttpOrigin(HttpOriginOptions options, std::string endpoint);
  absl::StatusOr<Loaded> Fetch(std::string_view key);

  const HttpOriginOptions options_;
  const std::string endpoint_;
  std::string url_prefix_, url_suffix_;  // around {key}
  std::unique_ptr<Handles> handles_;
  OriginMeter meter_;
};

}  // namespace lcache

#endif  // LCACHE_HTTP_ORIGIN_H_
