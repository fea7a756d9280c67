// JSON codec of the peer RPC /lcache.LCache/Get, byte-compatible with the Go
// lru_cache (docs/PROTOCOL.md, section 2): the Go nodes run gRPC with a
// JSON codec built on encoding/json, so these are the bytes of
// json.Marshal / json.Unmarshal of
//
//   request   {"group":"<name>","key":"<key>"}       both fields always present
//   response  {"value":"<base64>","err":"<text>"}    each omitted when empty
//
// with one field of our own beside them, which Go's decoder ignores as it
// ignores every unknown field (so the contract holds both ways):
//
//   "ttl_ms":<n>   after value, only in answers that carry a value with an
//                  expiry: the owner's copy lives at most n more milliseconds
//                  (rounded down, so a copy kept that long never outlives
//                  it). Absent: no expiry known (Go nodes never send it).
//
// Encoding gives exactly json.Marshal's bytes: compact, fields in Go's struct
// order, `value` in standard base64 with padding, and Go's string escaping,
// which nlohmann's serializer alone does not produce:
//   - '<', '>', '&' become \u003c, \u003e, \u0026, and U+2028, U+2029 become
//     \u2028, \u2029 (Go's HTML-safe default);
//   - each byte that starts no valid UTF-8 sequence becomes \ufffd, while a
//     U+FFFD already in the text is written as is;
//   - \b and \f are written short, as Go does since 1.22 (older Go wrote
//     \u0008 and \u000c; every JSON decoder reads both).
// These escapes are applied to nlohmann's compact output, where such bytes can
// only occur inside string literals.
//
// Decoding follows json.Unmarshal: unknown fields are ignored, field order is
// free, a missing field or a JSON null is the empty value (a null `value`
// clears it, a null string field keeps what an earlier duplicate set, as in
// Go), the last of duplicate fields wins, a top-level `null` is the empty
// message, invalid UTF-8 in strings reads as U+FFFD, and nesting deeper than
// Go's limit of kMaxJsonDepth levels is rejected. An empty key is not a decode
// error: the server answers it in-band with kEmptyKeyMessage, as Go does.
// Input the Go decoder accepts and this one rejects, none of which a Go node
// ever sends: field names that match only case-insensitively (Go matches
// "KEY" to `key`), \u escapes of unpaired surrogates (Go reads U+FFFD), and
// numbers out of double's range in ignored fields. nlohmann also skips a
// leading UTF-8 byte-order mark, which Go rejects.
//
// Errors are InvalidArgument with a message that says what was wrong and what
// was expected; no exception leaves the decoders. Encoding throws nothing but
// std::bad_alloc. Decoding is linear in the input and never recursive; it
// holds the fields it keeps and the largest string token, plus a repaired copy
// of the input when that is not valid UTF-8. No document tree is built.
//
// Thread-safety: all functions are pure and safe to call concurrently.

#ifndef LCACHE_JSON_CODEC_H_
#define LCACHE_JSON_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lcache::wire {

// Go's encoding/json nesting limit (its scanner's maxNestingDepth); the
// top-level object counts as level 1.
inline constexpr int kMaxJsonDepth = 10000;

struct GetRequest {
  std::string group;
  std::string key;
};

struct GetResponse {
  std::string value;              // raw bytes, base64-decoded
  std::string err;                // application error text; empty if none
  std::optional<int64_t> ttl_ms;  // the owner's remaining time to live, if it has one
};

// {"group":"...","key":"..."}.
std::string EncodeGetRequest(std::string_view group, std::string_view key);

// Rejects malformed JSON, a top-level value other than an object (or null),
// a `group` or `key` that is neither a string nor null, nesting deeper than
// kMaxJsonDepth, and a key longer than max_key_bytes ("lcache: key too long
// (N bytes, max M)", the text Group::Get uses).
absl::StatusOr<GetRequest> DecodeGetRequest(std::string_view json, size_t max_key_bytes);

// {"value":"<base64>","err":"..."}, each field omitted when empty; with
// `ttl_ms` (clamped at 0) and no `err`, {"value":"<base64>","ttl_ms":n}.
std::string EncodeGetResponse(std::string_view value, std::string_view err,
                              std::optional<int64_t> ttl_ms = std::nullopt);

// Rejects what DecodeGetRequest rejects (for `value` and `err`), a `ttl_ms`
// that is not a non-negative integer (or null), and a `value`
// that is not what Go's base64.StdEncoding accepts: the standard alphabet with
// '=' padding to a multiple of 4 characters ('\r' and '\n' are skipped, as Go
// does). absl's decoder alone would also take unpadded text and whitespace,
// so a truncated value could not be told from a shorter one.
absl::StatusOr<GetResponse> DecodeGetResponse(std::string_view json);

// --- Set, Remove and Invalidate (docs/PROTOCOL.md, section 6) -----------------
//
//   Set request         {"group","key","value"(base64, omitted when empty),
//                        "ttl_ms"(omitted: the group's default; 0: no expiry)}
//   Remove, Invalidate  {"group","key"}: Get's request message
//   response            {} on success; {"err":"<text>"} for bad input;
//                       {"unacked":["host:port",...]} on success when some
//                       nodes did not acknowledge the invalidation

struct SetRequest {
  std::string group;
  std::string key;
  std::string value;              // raw bytes, base64-decoded
  std::optional<int64_t> ttl_ms;  // absent: the group's default
};

struct MutationResponse {
  std::string err;  // application error text; empty if none
  std::vector<std::string> unacked;
};

std::string EncodeSetRequest(std::string_view group, std::string_view key, std::string_view value,
                             std::optional<int64_t> ttl_ms);

// Rejects what DecodeGetRequest rejects, a `value` that is not Go's padded
// standard base64, and a `ttl_ms` that is not a non-negative integer (or
// null). The value's size is the Group's to judge.
absl::StatusOr<SetRequest> DecodeSetRequest(std::string_view json, size_t max_key_bytes);

std::string EncodeMutationResponse(std::string_view err,
                                   const std::vector<std::string>& unacked = {});

// Rejects malformed JSON, an `err` that is not a string, and an `unacked`
// that is not an array of strings (or null).
absl::StatusOr<MutationResponse> DecodeMutationResponse(std::string_view json);

}  // namespace lcache::wire

#endif  // LCACHE_JSON_CODEC_H_
