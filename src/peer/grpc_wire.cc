#include "lcache/grpc_wire.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lcache::wire {

void AppendGrpcMessage(std::string_view message, std::string* out) {
  const uint32_t n = static_cast<uint32_t>(message.size());
  const char prefix[kGrpcPrefixBytes] = {0, static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                                         static_cast<char>(n >> 8), static_cast<char>(n)};
  out->append(prefix, kGrpcPrefixBytes);
  out->append(message);
}

absl::StatusOr<std::string_view> SingleGrpcMessage(std::string_view body) {
  if (body.size() < kGrpcPrefixBytes) {
    return absl::InvalidArgumentError("lcache: expected one request message");
  }
  const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(body[i])); };
  if (byte(0) != 0) {
    return absl::InvalidArgumentError("lcache: compressed messages are not accepted");
  }
  const uint32_t n = byte(1) << 24 | byte(2) << 16 | byte(3) << 8 | byte(4);
  if (body.size() - kGrpcPrefixBytes != n) {
    return absl::InvalidArgumentError(absl::StrCat("lcache: expected one request message of ", n,
                                                   " bytes, got ", body.size() - kGrpcPrefixBytes,
                                                   " bytes of body"));
  }
  return body.substr(kGrpcPrefixBytes);
}

std::optional<absl::Duration> ParseGrpcTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (value.back()) {
    case 'H':
      return absl::Hours(n);
    case 'M':
      return absl::Minutes(n);
    case 'S':
      return absl::Seconds(n);
    case 'm':
      return absl::Milliseconds(n);
    case 'u':
      return absl::Microseconds(n);
    case 'n':
      return absl::Nanoseconds(n);
    default:
      return std::nullopt;
  }
}

std::string GrpcTimeoutHeader(absl::Duration timeout) {
  const int64_t ms =
      timeout >= absl::Milliseconds(99'999'999)
          ? 99'999'999
          : std::max<int64_t>(1, (absl::ToInt64Nanoseconds(timeout) + 999'999) / 1'000'000);
  return absl::StrCat(ms, "m");
}

absl::StatusCode GrpcStatusFromHttp(int http_status) {
  switch (http_status) {
    case 400:
      return absl::StatusCode::kInternal;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

std::string PercentEncode(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (char ch : message) {
    const auto c = static_cast<uint8_t>(ch);
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string PercentDecode(std::string_view message) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  out.reserve(message.size());
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '%' && i + 2 < message.size() && hex(message[i + 1]) >= 0 &&
        hex(message[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(message[i + 1]) << 4 | hex(message[i + 2])));
      i += 2;
    } else {
      out.push_back(message[i]);
    }
  }
  return out;
}

absl::StatusCode GrpcStatusCode(std::string_view value) {
  int code = 0;
  if (value.empty() || value.size() > 2) return absl::StatusCode::kUnknown;
  for (char c : value) {
    if (c < '0' || c > '9') return absl::StatusCode::kUnknown;
    code = code * 10 + (c - '0');
  }
  return code <= 16 ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown;
}

std::optional<HostPort> SplitHostPort(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return HostPort{std::string(host), std::string(address.substr(colon + 1))};
}

}  // namespace lcache::wire
