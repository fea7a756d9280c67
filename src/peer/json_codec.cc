// The Get RPC's JSON codec: nlohmann's parser and serializer, with Go's
// encoding/json policies (UTF-8 repair, HTML-safe escapes, base64 grammar,
// nesting limit) added around them. See json_codec.h.

#include "lcache/json_codec.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace lcache::wire {
namespace {

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// Length of the UTF-8 sequence that starts `s`, or 0 if its first byte starts
// no valid one. Valid as Go's utf8.DecodeRuneInString has it (and as
// nlohmann's serializer has it): no overlong forms, no surrogates, nothing
// above U+10FFFF. REQUIRES: !s.empty().
size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto continuation = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  const unsigned char c = byte(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return continuation(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    const unsigned char hi = c == 0xED ? 0x9F : 0xBF;  // no surrogates
    return continuation(1, lo, hi) && continuation(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned char lo = c == 0xF0 ? 0x90 : 0x80;  // no overlong forms
    const unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
    return continuation(1, lo, hi) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// `s` with each byte that starts no valid UTF-8 sequence replaced by U+FFFD,
// which is what Go's encoding/json does to strings both ways. If
// `fffd_replaced` is not null, appends to it, for each U+FFFD of the result in
// order, whether it replaced a byte (true) or was in `s` (false).
std::string ReplaceInvalidUtf8(std::string_view s, std::vector<bool>* fffd_replaced) {
  std::string out;
  out.reserve(s.size());
  size_t run = 0;  // start of the bytes not yet copied
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s.substr(i));
    if (n == 0) {
      out.append(s.substr(run, i - run)).append(kReplacementChar);
      if (fffd_replaced != nullptr) fffd_replaced->push_back(true);
      run = ++i;
      continue;
    }
    if (fffd_replaced != nullptr && s.substr(i, n) == kReplacementChar) {
      fffd_replaced->push_back(false);
    }
    i += n;
  }
  out.append(s.substr(run));
  return out;
}

// Go's json.Marshal string policy on top of nlohmann's serializer. Pass each
// string through Sanitize in the order the strings appear in the output, then
// the serialized document through Escape.
class GoStrings {
 public:
  std::string Sanitize(std::string_view s) { return ReplaceInvalidUtf8(s, &fffd_replaced_); }

  // Writes the escapes Go makes and nlohmann does not. Sound on nlohmann's
  // compact output of sanitized strings: that output is valid UTF-8, so a
  // lead byte found here starts a character; outside string literals it holds
  // only ASCII punctuation and our field names, which contain none of these
  // characters; and nlohmann writes them unescaped inside literals.
  std::string Escape(std::string json) const {
    const bool any_replaced =
        std::find(fffd_replaced_.begin(), fffd_replaced_.end(), true) != fffd_replaced_.end();
    if (!any_replaced && json.find_first_of("<>&\xE2") == std::string::npos) return json;

    std::string out;
    out.reserve(json.size() + 16);
    size_t fffd = 0;  // index into fffd_replaced_
    for (size_t i = 0; i < json.size(); ++i) {
      const std::string_view rest = std::string_view(json).substr(i);
      switch (json[i]) {
        case '<':
          out += "\\u003c";
          continue;
        case '>':
          out += "\\u003e";
          continue;
        case '&':
          out += "\\u0026";
          continue;
        default:
          break;
      }
      if (rest.starts_with("\xE2\x80\xA8") || rest.starts_with("\xE2\x80\xA9")) {
        out += rest[2] == '\xA8' ? "\\u2028" : "\\u2029";
        i += 2;
      } else if (rest.starts_with(kReplacementChar)) {
        // Go writes a repaired byte as the escape, a real U+FFFD as itself.
        const bool replaced = fffd < fffd_replaced_.size() && fffd_replaced_[fffd];
        ++fffd;
        out += replaced ? std::string_view("\\ufffd") : std::string_view(kReplacementChar);
        i += 2;
      } else {
        out += json[i];
      }
    }
    return out;
  }

 private:
  std::vector<bool> fffd_replaced_;
};

// Compact, like json.Marshal. The strings are sanitized already, so the
// replace handler never fires; it is there so that dump() cannot throw.
std::string Dump(const nlohmann::ordered_json& j) {
  return j.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                nlohmann::ordered_json::error_handler_t::replace);
}

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Go decodes a []byte field with base64.StdEncoding.Decode: '\r' and '\n' are
// skipped; the rest must be groups of 4 characters of the standard alphabet,
// the last group possibly ending in "=" or "=="; unused low bits of the last
// character are not checked. absl::Base64Unescape takes a superset of that
// (no padding, '.' as padding, any whitespace), and decodes the common part to
// the same bytes; so check Go's grammar, then let absl decode.
absl::Status DecodeStdBase64(absl::string_view message, std::string_view in, std::string* out) {
  std::string without_newlines;
  // Two memchr scans: find_first_of would call memchr once per byte.
  if (in.find('\n') != std::string_view::npos || in.find('\r') != std::string_view::npos) {
    without_newlines = std::string(in);
    std::erase_if(without_newlines, [](char c) { return c == '\r' || c == '\n'; });
    in = without_newlines;
  }
  const auto bad = [message](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: ", message, " field \"value\" must be standard base64 with padding: ", why));
  };
  if (in.size() % 4 != 0) {
    return bad(absl::StrCat("length ", in.size(), " is not a multiple of 4"));
  }
  size_t padding = 0;
  if (in.ends_with("==")) {
    padding = 2;
  } else if (in.ends_with('=')) {
    padding = 1;
  }
  for (size_t i = 0; i + padding < in.size(); ++i) {
    const char c = in[i];
    const bool alphabet = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!alphabet) {
      const auto u = static_cast<unsigned char>(c);
      return bad(u >= 0x20 && u < 0x7F
                     ? absl::StrFormat("unexpected '%c' at offset %d", c, i)
                     : absl::StrFormat("unexpected byte 0x%02x at offset %d", u, i));
    }
  }
  if (!absl::Base64Unescape(ToAbsl(in), out)) return bad("rejected by the decoder");
  return absl::OkStatus();
}

// nlohmann's exception text without its "[json.exception.parse_error.101] "
// prefix, cut to a length fit for a log line: it quotes the offending token,
// which a peer can make megabytes long. The cut falls on a character
// boundary, so the message stays valid UTF-8 (the parsed text is).
std::string ParserMessage(const std::exception& e) {
  constexpr size_t kMaxBytes = 256;
  absl::string_view what = e.what();
  if (absl::StartsWith(what, "[json.exception.")) {
    const size_t end = what.find("] ");
    if (end != absl::string_view::npos) what.remove_prefix(end + 2);
  }
  if (what.size() <= kMaxBytes) return std::string(what);
  size_t cut = kMaxBytes;
  while (cut > 0 && (static_cast<unsigned char>(what[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(what.substr(0, cut), "...");
}

enum class FieldKind {
  kString,  // Go string: null leaves it as it was
  kBytes,   // Go []byte: base64 text; null empties it
  kCount,   // a non-negative integer (our ttl_ms): null leaves it as it was
  kStrings,  // an array of strings (our unacked): null empties it
};

// absl::string_view where text goes into absl::StrCat: Debian's abseil has its
// own string_view type, which std::string_view does not convert to.
struct Field {
  absl::string_view name;
  FieldKind kind;
  std::string* out = nullptr;               // kString, kBytes
  std::optional<int64_t>* count = nullptr;  // kCount
  std::vector<std::string>* strings = nullptr;  // kStrings
};

// SAX handler (nlohmann's interface) that reads the named fields of a
// top-level object and skips everything else, without building a document:
// nlohmann's SAX parser keeps its own nesting stack on the heap, so memory is
// bounded by the input and depth by kMaxJsonDepth, not by the call stack.
// Returning false stops the parse; status() then says why.
class FieldReader {
 public:
  using Json = nlohmann::json;

  // `message` names the document in errors: "request" or "response".
  FieldReader(absl::string_view message, std::span<const Field> fields)
      : message_(message), fields_(fields) {}

  const absl::Status& status() const { return status_; }

  bool null() {
    if (InList()) return WrongType("null");
    if (InField() && current_->kind == FieldKind::kBytes) current_->out->clear();
    if (InField() && current_->kind == FieldKind::kStrings) current_->strings->clear();
    return true;  // a top-level null is the empty message, as in Go
  }
  bool boolean(bool) { return Scalar("boolean"); }
  bool number_integer(Json::number_integer_t n) {
    if (!InCountField()) return Scalar("number");
    return n >= 0 ? Count(n) : WrongType("negative number");
  }
  bool number_unsigned(Json::number_unsigned_t n) {
    if (!InCountField()) return Scalar("number");
    if (n > static_cast<Json::number_unsigned_t>(std::numeric_limits<int64_t>::max())) {
      return WrongType("number out of range");
    }
    return Count(static_cast<int64_t>(n));
  }
  // Go will not read 1.0 or 1e3 into an integer field either.
  bool number_float(Json::number_float_t, const Json::string_t&) {
    return InCountField() ? WrongType("non-integer number") : Scalar("number");
  }
  bool binary(Json::binary_t&) { return Scalar("binary"); }  // not produced by the JSON parser

  bool string(Json::string_t& s) {
    if (depth_ == 0) return NotAnObject("string");
    if (InList()) {
      current_->strings->push_back(std::move(s));
      return true;
    }
    if (!InField()) return true;
    if (current_->kind == FieldKind::kCount) return WrongType("string");
    if (current_->kind == FieldKind::kStrings) return WrongType("string");
    if (current_->kind == FieldKind::kString) {
      *current_->out = std::move(s);
      return true;
    }
    // Decoded at once, as Go does, so an invalid value fails even when a
    // later duplicate would replace it.
    absl::Status st = DecodeStdBase64(message_, s, current_->out);
    if (!st.ok()) return Fail(std::move(st));
    return true;
  }

  bool start_object(std::size_t) {
    if (InField() || InList()) return WrongType("object");
    return Enter();
  }
  bool start_array(std::size_t) {
    if (depth_ == 0) return NotAnObject("array");
    if (InList()) return WrongType("nested array");
    if (InField() && current_->kind == FieldKind::kStrings) {
      current_->strings->clear();  // the last of duplicate fields wins
      list_ = true;
      return Enter();
    }
    if (InField()) return WrongType("array");
    return Enter();
  }
  bool end_object() { return Leave(); }
  bool end_array() {
    list_ = false;
    return Leave();
  }

  bool key(Json::string_t& name) {
    if (depth_ == 1) {
      current_ = nullptr;
      for (const Field& f : fields_) {
        if (f.name == name) current_ = &f;
      }
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const Json::exception& e) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("lcache: ", message_, " is not valid JSON: ", ParserMessage(e))));
  }

 private:
  // At depth 1 every value follows a key, which set current_; deeper values
  // belong to fields we skip.
  bool InField() const { return depth_ == 1 && current_ != nullptr; }
  // Inside the array of a kStrings field, whose elements must be strings.
  bool InList() const { return list_ && depth_ == 2; }
  bool InCountField() const { return InField() && current_->kind == FieldKind::kCount; }

  bool Scalar(absl::string_view type) {
    if (depth_ == 0) return NotAnObject(type);
    if (InField() || InList()) return WrongType(type);
    return true;
  }

  bool Enter() {
    if (++depth_ > kMaxJsonDepth) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("lcache: ", message_, " nests deeper than ", kMaxJsonDepth, " levels")));
    }
    return true;
  }
  bool Leave() {
    --depth_;
    return true;
  }

  bool NotAnObject(absl::string_view type) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("lcache: ", message_, " must be a JSON object, got ", type)));
  }
  bool WrongType(absl::string_view type) {
    const absl::string_view expected = current_->kind == FieldKind::kCount ? "a non-negative integer"
                                       : current_->kind == FieldKind::kStrings
                                           ? "an array of strings"
                                           : "a string";
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("lcache: ", message_, " field \"", current_->name,
                                                "\" must be ", expected, ", got ", type)));
  }
  bool Count(int64_t n) {
    *current_->count = n;
    return true;
  }
  bool Fail(absl::Status status) {
    status_ = std::move(status);
    return false;
  }

  const absl::string_view message_;
  const std::span<const Field> fields_;
  const Field* current_ = nullptr;
  int depth_ = 0;  // 1 inside the top-level object
  bool list_ = false;  // inside a kStrings field's array
  absl::Status status_;
};

// Parses `json` into `fields`. nlohmann reports JSON errors to the handler
// rather than throwing, but anything it or the handler might still throw
// (allocation failure) is turned into a status here.
absl::Status ReadFields(absl::string_view message, std::string_view json,
                        std::span<const Field> fields) {
  try {
    // nlohmann rejects invalid UTF-8 in strings, Go reads it as U+FFFD. The
    // repair changes nothing outside strings: there any non-ASCII byte is a
    // syntax error either way.
    std::string repaired;
    if (!IsValidUtf8(json)) {
      repaired = ReplaceInvalidUtf8(json, nullptr);
      json = repaired;
    }
    FieldReader reader(message, fields);
    const bool ok = nlohmann::json::sax_parse(json.data(), json.data() + json.size(), &reader);
    if (!ok && reader.status().ok()) {
      return absl::InvalidArgumentError(absl::StrCat("lcache: ", message, " is not valid JSON"));
    }
    return reader.status();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("lcache: out of memory decoding a ", message));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("lcache: decoding a ", message, " failed: ", ParserMessage(e)));
  }
}

}  // namespace

namespace {

// Whether Go's encoder writes `s` as it is between quotes: printable ASCII
// without the characters it escapes ('"', '\\', and the HTML-safe '<', '>',
// '&'). Keys and group names almost always are, and then the message is
// written directly: the bytes are the same, the cost a fraction.
bool IsPlainJsonString(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&') {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string EncodeGetRequest(std::string_view group, std::string_view key) {
  if (IsPlainJsonString(group) && IsPlainJsonString(key)) {
    std::string out;
    out.reserve(group.size() + key.size() + 22);
    out.append(R"({"group":")").append(group).append(R"(","key":")").append(key).append(R"("})");
    return out;
  }
  GoStrings go;
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["group"] = go.Sanitize(group);
  j["key"] = go.Sanitize(key);
  return go.Escape(Dump(j));
}

namespace {

// The string literal at the start of `*in` if it needs no decoding: ASCII
// without control characters, '"' or '\\' up to the closing quote. Consumes
// it and the quote. Anything else is left to the full parser.
std::optional<std::string_view> TakeVerbatimString(std::string_view* in) {
  for (size_t i = 0; i < in->size(); ++i) {
    const auto c = static_cast<unsigned char>((*in)[i]);
    if (c == '"') {
      std::string_view s = in->substr(0, i);
      in->remove_prefix(i + 1);
      return s;
    }
    if (c < 0x20 || c >= 0x7f || c == '\\') return std::nullopt;
  }
  return std::nullopt;
}

// The decimal digits at the start of `*in` as a number, consumed; nullopt,
// consuming nothing, when there are none, a leading zero starts a longer
// number, or the value is out of range (the parser then decides).
std::optional<int64_t> TakeCount(std::string_view* in) {
  size_t n = 0;
  while (n < in->size() && (*in)[n] >= '0' && (*in)[n] <= '9') ++n;
  if (n == 0 || n > 18 || (n > 1 && (*in)[0] == '0')) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = v * 10 + ((*in)[i] - '0');
  in->remove_prefix(n);
  return v;
}

bool TakePrefix(std::string_view* in, std::string_view prefix) {
  if (!in->starts_with(prefix)) return false;
  in->remove_prefix(prefix.size());
  return true;
}

// Go's own encoding of a request, {"group":"G","key":"K"} with strings that
// need no decoding, read without the parser (the common case by far); nullopt
// for anything else, which the parser then reads with all of Go's rules.
std::optional<GetRequest> DecodeCanonicalRequest(std::string_view json) {
  GetRequest req;
  if (!TakePrefix(&json, R"({"group":")")) return std::nullopt;
  std::optional<std::string_view> group = TakeVerbatimString(&json);
  if (!group || !TakePrefix(&json, R"(,"key":")")) return std::nullopt;
  std::optional<std::string_view> key = TakeVerbatimString(&json);
  if (!key || json != "}") return std::nullopt;
  req.group = *group;
  req.key = *key;
  return req;
}

}  // namespace

absl::StatusOr<GetRequest> DecodeGetRequest(std::string_view json, size_t max_key_bytes) {
  GetRequest req;
  if (std::optional<GetRequest> canonical = DecodeCanonicalRequest(json)) {
    req = *std::move(canonical);
  } else {
    const Field fields[] = {
        {.name = "group", .kind = FieldKind::kString, .out = &req.group},
        {.name = "key", .kind = FieldKind::kString, .out = &req.key},
    };
    if (absl::Status st = ReadFields("request", json, fields); !st.ok()) return st;
  }
  if (req.key.size() > max_key_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: key too long (", req.key.size(), " bytes, max ", max_key_bytes, ")"));
  }
  return req;
}

std::string EncodeGetResponse(std::string_view value, std::string_view err,
                              std::optional<int64_t> ttl_ms) {
  if (err.empty()) {
    // The hot path: base64 is plain ASCII, so the message is written
    // directly, in one allocation.
    if (value.empty() && !ttl_ms) return "{}";
    const std::string b64 = absl::Base64Escape(ToAbsl(value));
    const absl::string_view open = value.empty() ? "{" : R"({"value":")";
    const absl::string_view close = value.empty() ? "" : "\"";
    if (!ttl_ms) return absl::StrCat(open, b64, close, "}");
    return absl::StrCat(open, b64, close, value.empty() ? "" : ",", R"("ttl_ms":)",
                        std::max<int64_t>(*ttl_ms, 0), "}");
  }
  GoStrings go;
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  // Base64 is ASCII and needs no sanitizing; it is written first, as in Go.
  if (!value.empty()) j["value"] = absl::Base64Escape(ToAbsl(value));
  if (!err.empty()) j["err"] = go.Sanitize(err);
  return go.Escape(Dump(j));
}

absl::StatusOr<GetResponse> DecodeGetResponse(std::string_view json) {
  GetResponse resp;
  // Go's own encoding of a found value, {"value":"BASE64"}, and ours with an
  // expiry, {"value":"BASE64","ttl_ms":N}, without the parser.
  if (std::string_view rest = json; TakePrefix(&rest, R"({"value":")")) {
    std::optional<std::string_view> b64 = TakeVerbatimString(&rest);
    std::optional<int64_t> ttl_ms;
    bool well_formed = b64.has_value();
    if (well_formed && TakePrefix(&rest, R"(,"ttl_ms":)")) {
      ttl_ms = TakeCount(&rest);
      well_formed = ttl_ms.has_value();
    }
    if (well_formed && rest == "}") {
      if (absl::Status st = DecodeStdBase64("response", *b64, &resp.value); !st.ok()) return st;
      resp.ttl_ms = ttl_ms;
      return resp;
    }
  }
  const Field fields[] = {
      {.name = "value", .kind = FieldKind::kBytes, .out = &resp.value},
      {.name = "err", .kind = FieldKind::kString, .out = &resp.err},
      {.name = "ttl_ms", .kind = FieldKind::kCount, .count = &resp.ttl_ms},
  };
  if (absl::Status st = ReadFields("response", json, fields); !st.ok()) return st;
  return resp;
}

std::string EncodeSetRequest(std::string_view group, std::string_view key, std::string_view value,
                             std::optional<int64_t> ttl_ms) {
  GoStrings go;
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["group"] = go.Sanitize(group);
  j["key"] = go.Sanitize(key);
  if (!value.empty()) j["value"] = absl::Base64Escape(ToAbsl(value));
  if (ttl_ms) j["ttl_ms"] = std::max<int64_t>(*ttl_ms, 0);
  return go.Escape(Dump(j));
}

absl::StatusOr<SetRequest> DecodeSetRequest(std::string_view json, size_t max_key_bytes) {
  SetRequest req;
  const Field fields[] = {
      {.name = "group", .kind = FieldKind::kString, .out = &req.group},
      {.name = "key", .kind = FieldKind::kString, .out = &req.key},
      {.name = "value", .kind = FieldKind::kBytes, .out = &req.value},
      {.name = "ttl_ms", .kind = FieldKind::kCount, .count = &req.ttl_ms},
  };
  if (absl::Status st = ReadFields("request", json, fields); !st.ok()) return st;
  if (req.key.size() > max_key_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: key too long (", req.key.size(), " bytes, max ", max_key_bytes, ")"));
  }
  return req;
}

std::string EncodeMutationResponse(std::string_view err, const std::vector<std::string>& unacked) {
  if (err.empty() && unacked.empty()) return "{}";
  GoStrings go;
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!err.empty()) j["err"] = go.Sanitize(err);
  if (!unacked.empty()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const std::string& address : unacked) list.push_back(go.Sanitize(address));
    j["unacked"] = std::move(list);
  }
  return go.Escape(Dump(j));
}

absl::StatusOr<MutationResponse> DecodeMutationResponse(std::string_view json) {
  MutationResponse resp;
  if (json == "{}") return resp;
  const Field fields[] = {
      {.name = "err", .kind = FieldKind::kString, .out = &resp.err},
      {.name = "unacked", .kind = FieldKind::kStrings, .strings = &resp.unacked},
  };
  if (absl::Status st = ReadFields("response", json, fields); !st.ok()) return st;
  return resp;
}

}  // namespace lcache::wire
