#include "lcache/http_origin.h"

#include <curl/curl.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "origin/http_caching.h"

namespace lcache {
namespace {

constexpr char kKeyPlaceholder[] = "{key}";
constexpr size_t kKeyPlaceholderSize = sizeof kKeyPlaceholder - 1;

void InitCurlOnce() {
  // curl_global_init is not thread-safe before curl 7.84; once is enough.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// scheme://host:port of `url`; InvalidArgument unless http(s) with a host.
absl::StatusOr<std::string> EndpointOf(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), &curl_url_cleanup);
  const auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("lcache: origin URL ", why));
  };
  if (u == nullptr) return absl::ResourceExhaustedError("lcache: out of memory");
  // Validated with a stand-in key; the real ones are escaped into place.
  const std::string sample = absl::StrReplaceAll(url, {{kKeyPlaceholder, "k"}});
  if (curl_url_set(u.get(), CURLUPART_URL, sample.c_str(), 0) != CURLUE_OK) {
    return bad("is not a URL");
  }
  const auto part = [&](CURLUPart which, unsigned flags) -> std::string {
    char* text = nullptr;
    if (curl_url_get(u.get(), which, &text, flags) != CURLUE_OK) return "";
    std::string out(text);
    curl_free(text);
    return out;
  };
  const std::string scheme = part(CURLUPART_SCHEME, 0);
  if (scheme != "http" && scheme != "https") return bad("must be http:// or https://");
  const std::string host = part(CURLUPART_HOST, 0);
  if (host.empty()) return bad("has no host");
  return absl::StrCat(scheme, "://", host, ":", part(CURLUPART_PORT, CURLU_DEFAULT_PORT));
}

struct Body {
  std::string data;
  size_t max = 0;
  bool too_big = false;
};

size_t OnBody(char* bytes, size_t /*size: always 1*/, size_t n, void* user) {
  Body& body = *static_cast<Body*>(user);
  if (body.data.size() + n > body.max) {
    body.too_big = true;
    return 0;  // any other count than n stops the transfer
  }
  body.data.append(bytes, n);
  return n;
}

size_t OnHeader(char* bytes, size_t /*size: always 1*/, size_t n, void* user) {
  auto& headers = *static_cast<internal::CachingHeaders*>(user);
  const std::string_view line(bytes, n);
  // A status line starts another answer (after a 100 Continue): forget the
  // headers of the last one.
  if (line.starts_with("HTTP/")) headers = {};
  headers.Add(line);
  return n;
}

}  // namespace

// Easy handles kept for reuse, each with its own open connection: a load
// takes one (or makes one) and gives it back.
class HttpOrigin::Handles {
 public:
  explicit Handles(size_t max_idle) : max_idle_(max_idle) {}
  ~Handles() {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  CURL* Take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }

  void GiveBack(CURL* h) {
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < max_idle_) {
        idle_.push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }

 private:
  const size_t max_idle_;
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

absl::StatusOr<std::shared_ptr<HttpOrigin>> HttpOrigin::Create(HttpOriginOptions options) {
  InitCurlOnce();
  const size_t at = options.url.find(kKeyPlaceholder);
  if (at == std::string::npos ||
      options.url.find(kKeyPlaceholder, at + kKeyPlaceholderSize) != std::string::npos) {
    // Not the URL itself: it may hold user:password@.
    return absl::InvalidArgumentError(
        "lcache: origin URL must hold {key} once, where the key goes");
  }
  if (options.timeout <= absl::ZeroDuration() || options.max_value_bytes == 0 ||
      options.max_idle_connections < 0) {
    return absl::InvalidArgumentError(
        "lcache: origin timeout and max_value_bytes must be > 0, max_idle_connections >= 0");
  }
  absl::StatusOr<std::string> endpoint = EndpointOf(options.url);
  if (!endpoint.ok()) return endpoint.status();
  return std::shared_ptr<HttpOrigin>(new HttpOrigin(std::move(options), *std::move(endpoint)));
}

HttpOrigin::HttpOrigin(HttpOriginOptions options, std::string endpoint)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      handles_(std::make_unique<Handles>(static_cast<size_t>(options_.max_idle_connections))) {
  const size_t at = options_.url.find(kKeyPlaceholder);
  url_prefix_ = options_.url.substr(0, at);
  url_suffix_ = options_.url.substr(at + kKeyPlaceholderSize);
}

HttpOrigin::~HttpOrigin() = default;

const std::string& HttpOrigin::endpoint() const { return endpoint_; }

absl::StatusOr<Loaded> HttpOrigin::Load(std::string_view key) {
  return meter_.Measure([&] { return Fetch(key); });
}

absl::StatusOr<Loaded> HttpOrigin::Fetch(std::string_view key) {
  // A group never asks for "", but a caller of Load may; curl would take a
  // length of 0 as "measure it with strlen".
  if (key.empty()) return absl::InvalidArgumentError(kEmptyKeyMessage);
  CURL* h = handles_->Take();
  if (h == nullptr) return absl::ResourceExhaustedError("lcache: curl_easy_init failed");
  // Given back on every path, the connection left open for the next load.
  const std::unique_ptr<CURL, std::function<void(CURL*)>> hold(
      h, [this](CURL* c) { handles_->GiveBack(c); });

  char* escaped = curl_easy_escape(h, key.data(), static_cast<int>(key.size()));
  if (escaped == nullptr) return absl::ResourceExhaustedError("lcache: out of memory");
  const std::string url = absl::StrCat(url_prefix_, escaped, url_suffix_);
  curl_free(escaped);

  Body body{.data = {}, .max = options_.max_value_bytes, .too_big = false};
  internal::CachingHeaders headers;
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // a key "..": sent, not resolved away
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);    // no SIGALRM in a threaded program
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.max_value_bytes));
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");  // whatever curl can decode
  curl_easy_setopt(h, CURLOPT_USERAGENT, "lcache/0.1");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &headers);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
  const CURLcode rc = curl_easy_perform(h);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);  // `error` goes out of scope

  if (body.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
    return absl::OutOfRangeError(absl::StrCat("lcache: origin ", endpoint_,
                                              " sent a value over the limit of ",
                                              options_.max_value_bytes, " bytes"));
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(
        absl::StrCat("lcache: origin ", endpoint_, " did not answer within ",
                     absl::FormatDuration(options_.timeout)));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("lcache: origin ", endpoint_, ": ",
                                               error[0] != '\0' ? error : curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status == 404 || status == 410) return KeyNotFoundError();
  if (status != 200) {
    const std::string what =
        absl::StrCat("lcache: origin ", endpoint_, " answered HTTP ", status);
    if (status == 429 || status >= 500) return absl::UnavailableError(what);
    return absl::InternalError(what);
  }
  const internal::Freshness fresh = internal::FreshnessOf(headers, absl::Now());
  Loaded loaded(ByteView::Adopt(std::move(body.data)));
  loaded.ttl = fresh.ttl;
  loaded.cacheable = fresh.cacheable;
  return loaded;
}

}  // namespace lcache
