// The Get RPC's JSON codec: the exact bytes Go's json.Marshal writes, and
// json.Unmarshal's reading rules, errors included.

#include "lcache/json_codec.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "lcache/group.h"

namespace lcache::wire {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using std::string_literals::operator""s;  // keeps embedded NULs

constexpr size_t kMaxKey = 4096;

// As std::string: Debian's absl::string_view does not compare with std's.
std::string Message(const absl::Status& status) { return std::string(status.message()); }

std::string AllByteValues() {
  std::string s;
  for (int b = 0; b < 256; ++b) s.push_back(static_cast<char>(b));
  return s;
}

// --- Encoding: exact bytes ---------------------------------------------------

TEST(EncodeGetResponseTest, ValueOnlyIsBase64WithErrOmitted) {
  EXPECT_EQ(EncodeGetResponse("630", ""), R"({"value":"NjMw"})");
}

TEST(EncodeGetResponseTest, ErrOnlyWithValueOmitted) {
  EXPECT_EQ(EncodeGetResponse("", kKeyNotFoundMessage), R"({"err":"lru_cache: key not found"})");
  EXPECT_EQ(EncodeGetResponse("", kEmptyKeyMessage), R"({"err":"lru_cache: empty key"})");
}

TEST(EncodeGetResponseTest, BothEmptyIsEmptyObject) { EXPECT_EQ(EncodeGetResponse("", ""), "{}"); }

TEST(EncodeGetResponseTest, BothFieldsInGoStructOrder) {
  EXPECT_EQ(EncodeGetResponse("630", "boom"), R"({"value":"NjMw","err":"boom"})");
}

TEST(EncodeGetResponseTest, Base64IsStandardWithPadding) {
  EXPECT_EQ(EncodeGetResponse("a", ""), R"({"value":"YQ=="})");
  EXPECT_EQ(EncodeGetResponse("ab", ""), R"({"value":"YWI="})");
  EXPECT_EQ(EncodeGetResponse("abc", ""), R"({"value":"YWJj"})");
  // '+' and '/' (not the URL-safe '-' and '_').
  EXPECT_EQ(EncodeGetResponse("\xfb\xff", ""), R"({"value":"+/8="})");
  EXPECT_EQ(EncodeGetResponse("\0"s, ""), R"({"value":"AA=="})");
}

TEST(EncodeGetRequestTest, BothFieldsAlwaysPresentInGoStructOrder) {
  EXPECT_EQ(EncodeGetRequest("scores", "Tom"), R"({"group":"scores","key":"Tom"})");
  EXPECT_EQ(EncodeGetRequest("", ""), R"({"group":"","key":""})");
}

// Plain keys are written directly, the others through Go's escaping: both
// must give Go's bytes.
TEST(EncodeGetRequestTest, KeysThatNeedEscapingGetGosEscapes) {
  EXPECT_EQ(EncodeGetRequest("g", "a b~!#$%'()*+,-./:;=?@[]^_`{|}"),
            R"({"group":"g","key":"a b~!#$%'()*+,-./:;=?@[]^_`{|}"})");
  EXPECT_EQ(EncodeGetRequest("g", "a\"b\\c\n"), R"({"group":"g","key":"a\"b\\c\n"})");
  EXPECT_EQ(EncodeGetRequest("g", "\x7f\u00e9"), "{\"group\":\"g\",\"key\":\"\x7f\u00e9\"}");
  EXPECT_EQ(EncodeGetRequest("g", "\xff"), R"({"group":"g","key":"\ufffd"})");
  EXPECT_EQ(EncodeGetRequest("<g>", "k"), R"({"group":"\u003cg\u003e","key":"k"})");
}

// --- Encoding: Go's string escaping ------------------------------------------

TEST(GoEscapingTest, HtmlCharactersAreEscaped) {
  EXPECT_EQ(EncodeGetRequest("a<b>c", "x&y"), R"({"group":"a\u003cb\u003ec","key":"x\u0026y"})");
  EXPECT_EQ(EncodeGetResponse("", "<script>&amp;"), R"({"err":"\u003cscript\u003e\u0026amp;"})");
}

TEST(GoEscapingTest, LineAndParagraphSeparatorsAreEscaped) {
  EXPECT_EQ(EncodeGetResponse("", "a\u2028b\u2029c"), R"({"err":"a\u2028b\u2029c"})");
}

TEST(GoEscapingTest, ControlCharactersQuoteAndBackslash) {
  EXPECT_EQ(EncodeGetResponse("", "\"\\\n\r\t"), R"({"err":"\"\\\n\r\t"})");
  // Short forms for \b and \f, as Go writes them since 1.22.
  EXPECT_EQ(EncodeGetResponse("", "\b\f"), R"({"err":"\b\f"})");
  // Other control characters as \u00xx with lowercase hex, as Go.
  EXPECT_EQ(EncodeGetResponse("", "\x00\x01\x1f"s), R"({"err":"\u0000\u0001\u001f"})");
}

TEST(GoEscapingTest, OtherCharactersAreWrittenAsThemselves) {
  // DEL, '/', non-ASCII (2, 3 and 4 bytes), and U+2027 next to U+2028.
  EXPECT_EQ(EncodeGetResponse("", "\x7f/\u00e9\u65e5\U0001F600\u2027"),
            "{\"err\":\"\x7f/\u00e9\u65e5\U0001F600\u2027\"}");
}

TEST(GoEscapingTest, InvalidUtf8EncodesWithoutThrowingAsOneReplacementPerByte) {
  std::string out;
  EXPECT_NO_THROW(out = EncodeGetResponse("",
                                          "a\xff"
                                          "b"));
  EXPECT_EQ(out, R"({"err":"a\ufffdb"})");
  // A truncated sequence is two bad bytes to Go, so two replacements.
  EXPECT_EQ(EncodeGetResponse("", "\xe2\x82"), R"({"err":"\ufffd\ufffd"})");
  EXPECT_EQ(EncodeGetResponse("", "\xe2\x82Z"), R"({"err":"\ufffd\ufffdZ"})");
  // Encoded surrogate and overlong '/': invalid, byte by byte.
  EXPECT_EQ(EncodeGetResponse("", "\xed\xa0\x80"), R"({"err":"\ufffd\ufffd\ufffd"})");
  EXPECT_EQ(EncodeGetResponse("", "\xc0\xaf"), R"({"err":"\ufffd\ufffd"})");
  // Above U+10FFFF.
  EXPECT_EQ(EncodeGetResponse("", "\xf4\x90\x80\x80"), R"({"err":"\ufffd\ufffd\ufffd\ufffd"})");
}

TEST(GoEscapingTest, RealReplacementCharacterStaysRawNextToRepairedBytes) {
  // Go writes a U+FFFD that was in the text as is, a repaired byte as \ufffd.
  EXPECT_EQ(EncodeGetResponse("", "\xef\xbf\xbd"), "{\"err\":\"\xef\xbf\xbd\"}");
  EXPECT_EQ(EncodeGetResponse("", "\xef\xbf\xbd\xff\xef\xbf\xbd"),
            "{\"err\":\"\xef\xbf\xbd\\ufffd\xef\xbf\xbd\"}");
  // Across fields, in output order.
  EXPECT_EQ(EncodeGetRequest("\xef\xbf\xbd", "\xff\xef\xbf\xbd"),
            "{\"group\":\"\xef\xbf\xbd\",\"key\":\"\\ufffd\xef\xbf\xbd\"}");
  EXPECT_EQ(EncodeGetRequest("\xff", "\xef\xbf\xbd<"),
            "{\"group\":\"\\ufffd\",\"key\":\"\xef\xbf\xbd\\u003c\"}");
}

// --- Round trips ---------------------------------------------------------------

TEST(RoundTripTest, AllByteValuesInValue) {
  const std::string all = AllByteValues();
  absl::StatusOr<GetResponse> r = DecodeGetResponse(EncodeGetResponse(all, ""));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, all);
  EXPECT_EQ(r->err, "");
}

TEST(RoundTripTest, EveryValueLengthAroundPadding) {
  const std::string all = AllByteValues();
  for (size_t n = 0; n <= 7; ++n) {
    const std::string value = all.substr(250 - n, n);
    absl::StatusOr<GetResponse> r = DecodeGetResponse(EncodeGetResponse(value, "e"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->value, value) << n;
    EXPECT_EQ(r->err, "e");
  }
}

TEST(RoundTripTest, ValidUtf8TextWithEveryEscape) {
  const std::string text = "\0<>&\u2028\u2029\"\\/\b\f\n\r\t\x01\x7f \u00e9\U0001F600\xef\xbf\xbd"s;
  absl::StatusOr<GetRequest> req = DecodeGetRequest(EncodeGetRequest(text, text), kMaxKey);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->group, text);
  EXPECT_EQ(req->key, text);
  absl::StatusOr<GetResponse> resp = DecodeGetResponse(EncodeGetResponse(text, text));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->value, text);
  EXPECT_EQ(resp->err, text);
}

TEST(RoundTripTest, InvalidUtf8InTextComesBackRepaired) {
  absl::StatusOr<GetRequest> req = DecodeGetRequest(EncodeGetRequest("g", "a\xff"), kMaxKey);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->key, "a\xef\xbf\xbd");
}

// --- ttl_ms: the owner's remaining time to live, our field beside Go's -------

TEST(TtlTest, WrittenAfterTheValueOnlyWhenGiven) {
  EXPECT_EQ(EncodeGetResponse("630", "", 1500), R"({"value":"NjMw","ttl_ms":1500})");
  EXPECT_EQ(EncodeGetResponse("630", "", 0), R"({"value":"NjMw","ttl_ms":0})");
  EXPECT_EQ(EncodeGetResponse("630", "", -5), R"({"value":"NjMw","ttl_ms":0})");  // clamped
  EXPECT_EQ(EncodeGetResponse("", "", 7), R"({"ttl_ms":7})");  // an empty value that expires
  // Without an expiry the bytes are Go's, and an error carries none.
  EXPECT_EQ(EncodeGetResponse("630", "", std::nullopt), R"({"value":"NjMw"})");
  EXPECT_EQ(EncodeGetResponse("", "boom", 1500), R"({"err":"boom"})");
}

TEST(TtlTest, ReadBackWhereverItIs) {
  for (std::string_view json :
       {R"({"value":"NjMw","ttl_ms":1500})", R"({"ttl_ms":1500,"value":"NjMw"})",
        R"({ "value" : "NjMw" , "ttl_ms" : 1500 })",
        R"({"value":"NjMw","ttl_ms":99,"ttl_ms":1500})"}) {
    absl::StatusOr<GetResponse> r = DecodeGetResponse(json);
    ASSERT_TRUE(r.ok()) << json << ": " << r.status();
    EXPECT_EQ(r->value, "630") << json;
    EXPECT_EQ(r->ttl_ms, 1500) << json;
  }
  EXPECT_EQ(DecodeGetResponse(R"({"value":"NjMw"})")->ttl_ms, std::nullopt);
  EXPECT_EQ(DecodeGetResponse(R"({"value":"NjMw","ttl_ms":null})")->ttl_ms, std::nullopt);
  EXPECT_EQ(DecodeGetResponse(R"({"value":"NjMw","ttl_ms":0})")->ttl_ms, 0);
  EXPECT_EQ(DecodeGetResponse(R"({"value":"NjMw","ttl_ms":9223372036854775807})")->ttl_ms,
            INT64_MAX);
  // What we write, we read.
  EXPECT_EQ(DecodeGetResponse(EncodeGetResponse(AllByteValues(), "", 42))->ttl_ms, 42);
  EXPECT_EQ(DecodeGetResponse(EncodeGetResponse(AllByteValues(), "", 42))->value, AllByteValues());
}

TEST(TtlTest, AnythingButANonNegativeIntegerIsRejected) {
  for (std::string_view json :
       {R"({"value":"NjMw","ttl_ms":-1})", R"({"value":"NjMw","ttl_ms":1.5})",
        R"({"value":"NjMw","ttl_ms":1e3})", R"({"value":"NjMw","ttl_ms":"1500"})",
        R"({"value":"NjMw","ttl_ms":[1]})", R"({"value":"NjMw","ttl_ms":true})",
        R"({"value":"NjMw","ttl_ms":9223372036854775808})", R"({"value":"NjMw","ttl_ms":})",
        R"({"value":"NjMw","ttl_ms":01})"}) {
    absl::StatusOr<GetResponse> r = DecodeGetResponse(json);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << json;
  }
  EXPECT_THAT(Message(DecodeGetResponse(R"({"value":"NjMw","ttl_ms":-1})").status()),
              HasSubstr(R"(field "ttl_ms" must be a non-negative integer, got negative number)"));
}

// --- Decoding: Go's reading rules ------------------------------------------------

TEST(DecodeTest, ReadsWhatGoWrites) {
  absl::StatusOr<GetResponse> r = DecodeGetResponse(R"({"value":"NjMw"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "630");
  EXPECT_EQ(r->err, "");

  r = DecodeGetResponse(R"({"err":"lru_cache: key not found"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
  EXPECT_EQ(r->err, kKeyNotFoundMessage);

  absl::StatusOr<GetRequest> q = DecodeGetRequest(R"({"group":"scores","key":"Tom"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "scores");
  EXPECT_EQ(q->key, "Tom");
}

// Go's canonical form is read without the parser; every variation of it must
// still read as the parser reads it.
TEST(DecodeTest, CanonicalFormAndItsNeighbours) {
  const auto req = [](std::string_view json) { return DecodeGetRequest(json, 4096); };
  ASSERT_TRUE(req(R"({"group":"scores","key":"Tom"})").ok());
  EXPECT_EQ(req(R"({"group":"scores","key":"Tom"})")->key, "Tom");
  EXPECT_EQ(req(R"({"group":"a<b","key":"x&y"})")->group, "a<b");
  EXPECT_EQ(req(R"({"group":"g","key":"Tom"})")->key, "Tom");
  EXPECT_EQ(req(R"({"group":"g","key":"Tom"} )")->key, "Tom");
  EXPECT_EQ(req(R"({"group":"g","key":"Tom","key":"Sam"})")->key, "Sam");
  EXPECT_FALSE(req(R"({"group":"g","key":"Tom"}x)").ok());
  EXPECT_FALSE(req(R"({"group":"g","key":"Tom")").ok());
  EXPECT_FALSE(req("{\"group\":\"g\",\"key\":\"a\tb\"}").ok());  // raw control character
  EXPECT_EQ(DecodeGetResponse(R"({"value":"NjMw"})")->value, "630");
  EXPECT_FALSE(DecodeGetResponse(R"({"value":"NjM"})").ok());  // unpadded
  EXPECT_EQ(DecodeGetResponse(R"({"value":"NjMw","err":"x"})")->err, "x");
}

TEST(DecodeTest, EscapesAreDecoded) {
  absl::StatusOr<GetRequest> q =
      DecodeGetRequest(R"({"group":"a\u003cb","key":"\ufffd\u00e9\ud83d\ude00\/\n"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "a<b");
  EXPECT_EQ(q->key, "\xef\xbf\xbd\u00e9\U0001F600/\n");
}

TEST(DecodeTest, UnknownFieldsAreIgnored) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(
      R"({"trace":{"id":[1,2,{"key":5}],"key":true},"group":"g","n":1.5e3,"b":false,)"
      R"("z":null,"s":"x","key":"k","a":[]})",
      kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "g");
  EXPECT_EQ(q->key, "k");

  absl::StatusOr<GetResponse> r =
      DecodeGetResponse(R"({"code":14,"value":"NjMw","details":["x"],"err":"e"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "630");
  EXPECT_EQ(r->err, "e");
}

TEST(DecodeTest, FieldOrderIsIrrelevant) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(R"({"key":"k","group":"g"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "g");
  EXPECT_EQ(q->key, "k");

  absl::StatusOr<GetResponse> r = DecodeGetResponse(R"({"err":"e","value":"NjMw"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "630");
  EXPECT_EQ(r->err, "e");
}

TEST(DecodeTest, WhitespaceIsAllowed) {
  absl::StatusOr<GetRequest> q =
      DecodeGetRequest(" \n{ \"group\" : \"g\" ,\r\n\t\"key\": \"k\" }\n ", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "g");
  EXPECT_EQ(q->key, "k");
}

TEST(DecodeTest, MissingFieldsAreEmpty) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest("{}", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "");
  EXPECT_EQ(q->key, "");

  // An empty key is the server's to answer in-band, not a decode error.
  q = DecodeGetRequest(R"({"group":"scores"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "scores");
  EXPECT_EQ(q->key, "");

  absl::StatusOr<GetResponse> r = DecodeGetResponse("{}");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
  EXPECT_EQ(r->err, "");
}

TEST(DecodeTest, NullIsEmpty) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(R"({"group":null,"key":null})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->group, "");
  EXPECT_EQ(q->key, "");

  absl::StatusOr<GetResponse> r = DecodeGetResponse(R"({"value":null,"err":null})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
  EXPECT_EQ(r->err, "");
}

TEST(DecodeTest, TopLevelNullIsTheEmptyMessageAsInGo) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(" null ", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, "");
  absl::StatusOr<GetResponse> r = DecodeGetResponse("null");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
}

TEST(DecodeTest, LastDuplicateWinsAndNullFollowsGoTypes) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(R"({"key":"a","key":"b"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, "b");
  // Go: null leaves a string as it was...
  q = DecodeGetRequest(R"({"key":"a","key":null})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, "a");
  // ...and sets a []byte to nil.
  absl::StatusOr<GetResponse> r = DecodeGetResponse(R"({"value":"NjMw","value":null})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
}

TEST(DecodeTest, FieldNamesAreExact) {
  // Go would also take "Key" for `key`; no Go node sends it (see json_codec.h).
  absl::StatusOr<GetRequest> q = DecodeGetRequest(R"({"Key":"k","key ":"x"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, "");
}

TEST(DecodeTest, InvalidUtf8InInputReadsAsReplacementCharacter) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(
      "{\"key\":\"a\xff"
      "b\xe2\x82\"}",
      kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key,
            "a\xef\xbf\xbd"
            "b\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(DecodeTest, KeyAtTheLimitIsAccepted) {
  const std::string key(kMaxKey, 'k');
  absl::StatusOr<GetRequest> q = DecodeGetRequest(EncodeGetRequest("g", key), kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, key);
}

TEST(DecodeTest, LargeValueAndIgnoredFieldDecode) {
  const std::string value(1 << 20, '\x5a');
  const std::string json =
      R"({"pad":")" + std::string(1 << 18, 'p') + R"(",)" + EncodeGetResponse(value, "").substr(1);
  absl::StatusOr<GetResponse> r = DecodeGetResponse(json);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, value);
}

TEST(DecodeTest, Base64NewlinesAreSkippedAsInGo) {
  absl::StatusOr<GetResponse> r = DecodeGetResponse(R"({"value":"Nj\r\nMw\n"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "630");
  // Go does not check the unused low bits of the last character either.
  r = DecodeGetResponse(R"({"value":"YR=="})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "a");
  r = DecodeGetResponse(R"({"value":""})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
}

// --- Decoding errors -------------------------------------------------------------

void ExpectRequestError(std::string_view json, std::string_view message) {
  absl::StatusOr<GetRequest> q = DecodeGetRequest(json, kMaxKey);
  ASSERT_FALSE(q.ok()) << json;
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << json;
  EXPECT_EQ(Message(q.status()), message) << json;
}

void ExpectResponseError(std::string_view json, std::string_view message) {
  absl::StatusOr<GetResponse> r = DecodeGetResponse(json);
  ASSERT_FALSE(r.ok()) << json;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << json;
  EXPECT_EQ(Message(r.status()), message) << json;
}

// Our prefix, then nlohmann's description without its "[json.exception...]"
// tag. Only its gist is checked: the wording is nlohmann's.
void ExpectNotJson(absl::Status status, std::string_view message, std::string_view gist) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), StartsWith("lcache: " + std::string(message) +
                                          " is not valid JSON: parse error at "));
  EXPECT_THAT(Message(status), HasSubstr(gist));
  EXPECT_THAT(Message(status), Not(HasSubstr("[json.exception")));
}

TEST(DecodeErrorTest, NotJson) {
  ExpectNotJson(DecodeGetRequest("", kMaxKey).status(), "request",
                "column 1: syntax error while parsing value - unexpected end of input");
  ExpectNotJson(DecodeGetRequest(R"({"key":"k")", kMaxKey).status(), "request",
                "column 11: syntax error while parsing object - unexpected end of input");
  ExpectNotJson(DecodeGetRequest(R"({"key":"k"} x)", kMaxKey).status(), "request",
                "column 13: syntax error while parsing value - invalid literal");
  ExpectNotJson(DecodeGetResponse(R"({'err':'x'})").status(), "response",
                "column 2: syntax error while parsing object key - invalid literal");
  ExpectNotJson(DecodeGetResponse(R"({"err":"x",})").status(), "response",
                "column 12: syntax error while parsing object key - unexpected '}'");
  // Raw control characters inside strings are invalid in Go too.
  ExpectNotJson(DecodeGetRequest("{\"key\":\"a\nb\"}", kMaxKey).status(), "request",
                "control character U+000A (LF) must be escaped");
}

TEST(DecodeErrorTest, ParserMessageIsBounded) {
  // nlohmann quotes the offending token; a peer must not size our logs.
  const std::string json = R"({"key":")" + std::string(1 << 20, 'k');
  absl::StatusOr<GetRequest> q = DecodeGetRequest(json, kMaxKey);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(q.status()), HasSubstr("lcache: request is not valid JSON: "));
  EXPECT_LE(Message(q.status()).size(), 400u);
}

TEST(DecodeErrorTest, TopLevelNotAnObject) {
  ExpectRequestError("[]", "lcache: request must be a JSON object, got array");
  ExpectRequestError(R"("k")", "lcache: request must be a JSON object, got string");
  ExpectRequestError("42", "lcache: request must be a JSON object, got number");
  ExpectRequestError("true", "lcache: request must be a JSON object, got boolean");
  ExpectResponseError("[]", "lcache: response must be a JSON object, got array");
}

TEST(DecodeErrorTest, KnownFieldOfWrongType) {
  ExpectRequestError(R"({"key":1})", "lcache: request field \"key\" must be a string, got number");
  ExpectRequestError(R"({"key":-1.5})",
                     "lcache: request field \"key\" must be a string, got number");
  ExpectRequestError(R"({"group":true})",
                     "lcache: request field \"group\" must be a string, got boolean");
  ExpectRequestError(R"({"key":["k"]})",
                     "lcache: request field \"key\" must be a string, got array");
  ExpectRequestError(R"({"group":{}})",
                     "lcache: request field \"group\" must be a string, got object");
  ExpectResponseError(R"({"value":[1]})",
                      "lcache: response field \"value\" must be a string, got array");
  ExpectResponseError(R"({"err":404})",
                      "lcache: response field \"err\" must be a string, got number");
}

TEST(DecodeErrorTest, KeyTooLong) {
  const std::string json = EncodeGetRequest("g", std::string(kMaxKey + 1, 'k'));
  ExpectRequestError(json, "lcache: key too long (4097 bytes, max 4096)");
  absl::StatusOr<GetRequest> q = DecodeGetRequest(R"({"key":"abcd"})", 3);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(Message(q.status()), "lcache: key too long (4 bytes, max 3)");
}

TEST(DecodeErrorTest, ValueNotStandardPaddedBase64) {
  constexpr char kPrefix[] =
      "lcache: response field \"value\" must be standard base64 with padding: ";
  ExpectResponseError(R"({"value":"NjM"})",
                      std::string(kPrefix) + "length 3 is not a multiple of 4");
  // Unpadded (absl alone would take it).
  ExpectResponseError(R"({"value":"YQ"})",
                      std::string(kPrefix) + "length 2 is not a multiple of 4");
  ExpectResponseError(R"({"value":"Nj!w"})", std::string(kPrefix) + "unexpected '!' at offset 2");
  // URL-safe alphabet, '.' padding, spaces, padding in the middle.
  ExpectResponseError(R"({"value":"-_8="})", std::string(kPrefix) + "unexpected '-' at offset 0");
  ExpectResponseError(R"({"value":"YQ.."})", std::string(kPrefix) + "unexpected '.' at offset 2");
  ExpectResponseError(R"({"value":"Nj Mw"})",
                      std::string(kPrefix) + "length 5 is not a multiple of 4");
  ExpectResponseError(R"({"value":" NjM"})", std::string(kPrefix) + "unexpected ' ' at offset 0");
  ExpectResponseError(R"({"value":"YQ==NjMw"})",
                      std::string(kPrefix) + "unexpected '=' at offset 2");
  ExpectResponseError(R"({"value":"Y==="})", std::string(kPrefix) + "unexpected '=' at offset 1");
  ExpectResponseError(R"({"value":"\u00e9AAA"})",
                      std::string(kPrefix) + "length 5 is not a multiple of 4");
  ExpectResponseError(R"({"value":"\u00e9AA"})",
                      std::string(kPrefix) + "unexpected byte 0xc3 at offset 0");
  // Checked where it occurs, even if a later duplicate would replace it.
  ExpectResponseError(R"({"value":"NjM","value":"NjMw"})",
                      std::string(kPrefix) + "length 3 is not a multiple of 4");
}

TEST(DecodeErrorTest, DeepNestingIsRejectedWithoutCrashing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ExpectRequestError(R"({"x":)" + deep + "}", "lcache: request nests deeper than 10000 levels");
  ExpectResponseError(R"({"x":)" + deep + "}", "lcache: response nests deeper than 10000 levels");
  // Unclosed, and objects rather than arrays.
  ExpectRequestError(R"({"x":)" + std::string(100000, '['),
                     "lcache: request nests deeper than 10000 levels");
  std::string objects = "{";
  for (int i = 0; i < 100000; ++i) objects += R"("a":{)";
  ExpectRequestError(objects, "lcache: request nests deeper than 10000 levels");
  // A top-level array is refused before any depth is reached.
  ExpectRequestError(std::string(100000, '['), "lcache: request must be a JSON object, got array");
}

TEST(DecodeErrorTest, NestingUpToGosLimitIsAccepted) {
  // The top-level object is level 1, as in Go.
  const int arrays = kMaxJsonDepth - 1;
  const std::string json =
      R"({"x":)" + std::string(arrays, '[') + std::string(arrays, ']') + R"(,"key":"k"})";
  absl::StatusOr<GetRequest> q = DecodeGetRequest(json, kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, "k");

  const std::string deeper =
      R"({"x":)" + std::string(arrays + 1, '[') + std::string(arrays + 1, ']') + R"(,"key":"k"})";
  ExpectRequestError(deeper, "lcache: request nests deeper than 10000 levels");
}

TEST(DecodeErrorTest, KnownNamesInsideIgnoredFieldsAreNotChecked) {
  absl::StatusOr<GetRequest> q =
      DecodeGetRequest(R"({"x":{"key":1,"group":[]},"key":"k"})", kMaxKey);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->key, "k");
  EXPECT_EQ(q->group, "");
}

// --- Set, Remove and Invalidate ------------------------------------------------

TEST(SetRequestTest, FieldsInOrderValueAndTtlOmittedWhenAbsent) {
  EXPECT_EQ(EncodeSetRequest("g", "k", "v", 1500),
            R"({"group":"g","key":"k","value":"dg==","ttl_ms":1500})");
  EXPECT_EQ(EncodeSetRequest("g", "k", "", std::nullopt), R"({"group":"g","key":"k"})");
  EXPECT_EQ(EncodeSetRequest("g", "<k>", "v", 0),
            R"({"group":"g","key":"\u003ck\u003e","value":"dg==","ttl_ms":0})");
}

TEST(SetRequestTest, RoundTripsEveryByteAndTheTtl) {
  std::string value;
  for (int c = 0; c < 256; ++c) value.push_back(static_cast<char>(c));
  absl::StatusOr<SetRequest> r = DecodeSetRequest(EncodeSetRequest("g", "k", value, 7), 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->group, "g");
  EXPECT_EQ(r->key, "k");
  EXPECT_EQ(r->value, value);
  EXPECT_EQ(r->ttl_ms, 7);
  r = DecodeSetRequest(R"({"key":"k","extra":[1,{"a":2}],"group":"g"})", 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, "");
  EXPECT_EQ(r->ttl_ms, std::nullopt);
}

TEST(SetRequestTest, BadValueTtlOrKeyIsRejectedSayingWhat) {
  const auto error = [](std::string_view json) {
    return std::string(DecodeSetRequest(json, 8).status().message());
  };
  EXPECT_THAT(error(R"({"group":"g","key":"k","value":"dg"})"),
              HasSubstr(R"(request field "value" must be standard base64)"));
  EXPECT_THAT(error(R"({"group":"g","key":"k","ttl_ms":-1})"), HasSubstr("ttl_ms"));
  EXPECT_THAT(error(R"({"group":"g","key":"k","ttl_ms":1.5})"), HasSubstr("non-integer"));
  EXPECT_THAT(error(R"({"group":"g","key":"k","ttl_ms":"1"})"), HasSubstr("ttl_ms"));
  EXPECT_THAT(error(R"({"group":"g","key":"123456789"})"), HasSubstr("key too long"));
  EXPECT_THAT(error(R"({"group":"g","key":"k")"), HasSubstr("not valid JSON"));
}

TEST(MutationResponseTest, EmptyOnSuccessErrOrUnackedOtherwise) {
  EXPECT_EQ(EncodeMutationResponse(""), "{}");
  EXPECT_EQ(EncodeMutationResponse("bad <key>"), R"({"err":"bad \u003ckey\u003e"})");
  EXPECT_EQ(EncodeMutationResponse("", {"a:1", "b:2"}), R"({"unacked":["a:1","b:2"]})");
}

TEST(MutationResponseTest, DecodesWhatItEncodesAndRejectsWrongTypes) {
  absl::StatusOr<MutationResponse> r = DecodeMutationResponse(R"({"unacked":["a:1","b:2"]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unacked, (std::vector<std::string>{"a:1", "b:2"}));
  r = DecodeMutationResponse(R"({"err":"no","unacked":null,"x":[[1]]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->err, "no");
  EXPECT_TRUE(r->unacked.empty());
  r = DecodeMutationResponse(R"({"unacked":["a"],"unacked":["b"]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unacked, std::vector<std::string>{"b"});  // the last duplicate wins
  for (std::string_view bad : {R"({"unacked":"a"})", R"({"unacked":[1]})",
                               R"({"unacked":[["a"]]})", R"({"unacked":[{"a":1}]})",
                               R"({"unacked":[null]})", R"({"err":1})"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeMutationResponse(bad).status())) << bad;
  }
}

}  // namespace
}  // namespace lcache::wire
