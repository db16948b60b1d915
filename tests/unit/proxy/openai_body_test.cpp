#include "proxy/openai_body.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "routing/rng.h"

using infergate::proxy::parse_request;
using infergate::proxy::RequestInfo;
using infergate::proxy::required_field_for_path;
using infergate::proxy::rewrite_request_model;
using infergate::proxy::rewrite_response_body;
using infergate::proxy::SseRewriter;
using infergate::proxy::Usage;
using infergate::routing::Rng;

namespace {

constexpr std::string_view kChat = "/v1/chat/completions";
constexpr std::string_view kCompletions = "/v1/completions";
constexpr std::string_view kFixtureModel = "deepseek-r1-distill-llama-8b-l4";

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(INFERGATE_TEST_FIXTURES) + "/openai/" + name, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RequestInfo parse(std::string body, std::string_view path = kChat) {
  return parse_request(body, path);
}

// Expects a 400 whose message starts with `message` and whose param is `param`.
void check_rejected(std::string body, std::string_view message, std::string_view param = "",
                    std::string_view path = kChat) {
  INFO("body: " << body);
  const RequestInfo info = parse_request(body, path);
  CHECK_FALSE(info.ok);
  CHECK_MESSAGE(info.error.rfind(message, 0) == 0, "error was: " << info.error);
  CHECK(info.error_param == param);
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

size_t count(std::string_view s, std::string_view what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string_view::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Feeds `input` in random pieces of 1..max_piece bytes.
std::string feed_in_pieces(SseRewriter& rw, std::string_view input, uint64_t seed,
                           size_t max_piece) {
  Rng rng(seed);
  std::string out;
  size_t at = 0;
  while (at < input.size()) {
    const size_t n = std::min<size_t>(input.size() - at, 1 + rng.below(max_piece));
    rw.feed(input.substr(at, n), out);
    at += n;
  }
  rw.finish(out);
  return out;
}

std::string feed_at_once(SseRewriter& rw, std::string_view input) {
  std::string out;
  rw.feed(input, out);
  rw.finish(out);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// required_field_for_path

TEST_CASE("required field per routed path") {
  CHECK(required_field_for_path("/v1/completions") == "prompt");
  CHECK(required_field_for_path("/v1/chat/completions") == "messages");
  CHECK(required_field_for_path("/v1/embeddings") == "input");
  CHECK(required_field_for_path("/v1/responses") == "input");
  CHECK(required_field_for_path("/v1/chat/completions?x=1") == "messages");
  CHECK(required_field_for_path("/v1/rerank") == "");
  CHECK(required_field_for_path("/v1/chat/completions/") == "");
  CHECK(required_field_for_path("") == "");
}

// ---------------------------------------------------------------------------------------------
// parse_request: accepted bodies

TEST_CASE("parse_request reads model, stream, include_usage and the prompt span") {
  std::string body =
      R"({"model":"llama","messages":[{"role":"user","content":"hi"}],"stream":true,)"
      R"("stream_options":{"include_usage":true},"temperature":0.5})";
  const RequestInfo info = parse_request(body, kChat);
  REQUIRE(info.ok);
  CHECK(info.error.empty());
  CHECK(info.model == "llama");
  CHECK(body.substr(info.model_offset, info.model_length) == "\"llama\"");
  CHECK(info.stream);
  CHECK(info.include_usage);
  CHECK(body.substr(info.prompt_offset, info.prompt_length) ==
        R"([{"role":"user","content":"hi"}])");
  CHECK(body.capacity() >= body.size() + infergate::proxy::kJsonPadding);
}

TEST_CASE("parse_request defaults and prompt kinds") {
  SUBCASE("no stream") {
    const RequestInfo info = parse(R"({"model":"m","prompt":"say hi"})", kCompletions);
    REQUIRE(info.ok);
    CHECK_FALSE(info.stream);
    CHECK_FALSE(info.include_usage);
  }
  SUBCASE("string prompt span") {
    std::string body = R"({"prompt" : "say \"hi\"" , "model":"m"})";
    const RequestInfo info = parse_request(body, kCompletions);
    REQUIRE(info.ok);
    CHECK(body.substr(info.prompt_offset, info.prompt_length) == R"("say \"hi\"")");
  }
  SUBCASE("array of token ids with whitespace inside and around") {
    std::string body = "{\"model\":\"m\",\"prompt\":  [ 1, 2 ,3 ]  \n,\"n\":1}";
    const RequestInfo info = parse_request(body, kCompletions);
    REQUIRE(info.ok);
    CHECK(body.substr(info.prompt_offset, info.prompt_length) == "[ 1, 2 ,3 ]");
  }
  SUBCASE("object prompt as last member") {
    std::string body = "{\"model\":\"m\",\"input\":{\"a\":[{}]}\t}";
    const RequestInfo info = parse_request(body, "/v1/responses");
    REQUIRE(info.ok);
    CHECK(body.substr(info.prompt_offset, info.prompt_length) == R"({"a":[{}]})");
  }
  SUBCASE("scalar prompt") {
    std::string body = R"({"model":"m","input":12 })";
    const RequestInfo info = parse_request(body, "/v1/embeddings");
    REQUIRE(info.ok);
    CHECK(body.substr(info.prompt_offset, info.prompt_length) == "12");
  }
  SUBCASE("other paths need only a model") {
    const RequestInfo info = parse(R"({"model":"m"})", "/v1/rerank");
    REQUIRE(info.ok);
    CHECK(info.prompt_length == 0);
  }
  SUBCASE("stream false and null") {
    CHECK_FALSE(parse(R"({"model":"m","messages":[],"stream":false})").stream);
    const RequestInfo info = parse(R"({"model":"m","messages":[],"stream":null})");
    CHECK(info.ok);
    CHECK_FALSE(info.stream);
  }
  SUBCASE("stream_options without include_usage, or null") {
    CHECK_FALSE(parse(R"({"model":"m","messages":[],"stream_options":{"x":[1]}})").include_usage);
    CHECK(parse(R"({"model":"m","messages":[],"stream_options":null})").ok);
    const RequestInfo info =
        parse(R"({"model":"m","messages":[],"stream_options":{"include_usage":false}})");
    CHECK(info.ok);
    CHECK_FALSE(info.include_usage);
  }
}

TEST_CASE("parse_request handles whitespace everywhere") {
  std::string body =
      " \r\n\t{ \"messages\" : [ ] ,\n  \"model\"\t:\t\"m\"  \r\n , \"stream\" : true }\n\n ";
  const RequestInfo info = parse_request(body, kChat);
  REQUIRE(info.ok);
  CHECK(info.model == "m");
  CHECK(body.substr(info.model_offset, info.model_length) == "\"m\"");
  CHECK(info.stream);
}

TEST_CASE("parse_request unescapes the model and keeps the raw token span") {
  std::string body = R"({"model":"a\"b\\c\u00e9\/\n","messages":[]})";
  const RequestInfo info = parse_request(body, kChat);
  REQUIRE(info.ok);
  CHECK(info.model == "a\"b\\c\xC3\xA9/\n");
  CHECK(body.substr(info.model_offset, info.model_length) == R"("a\"b\\c\u00e9\/\n")");
}

TEST_CASE("parse_request keeps raw UTF-8 and surrogate pairs") {
  const RequestInfo raw =
      parse("{\"model\":\"\xE6\xA8\xA1\xE5\x9E\x8B-\xF0\x9F\xA6\x99\",\"messages\":[]}");
  REQUIRE(raw.ok);
  CHECK(raw.model == "\xE6\xA8\xA1\xE5\x9E\x8B-\xF0\x9F\xA6\x99");
  const RequestInfo escaped = parse(R"({"model":"\ud83e\udd99","messages":[]})");
  REQUIRE(escaped.ok);
  CHECK(escaped.model == "\xF0\x9F\xA6\x99");
}

TEST_CASE("parse_request compares unescaped keys") {
  const RequestInfo info = parse(R"({"mod\u0065l":"m","\u006dessages":[],"str\u0065am":true})");
  REQUIRE(info.ok);
  CHECK(info.model == "m");
  CHECK(info.stream);
  // A key that only looks like "model" once unescaped wrongly is not it.
  check_rejected(R"({"model\u0000":"m","messages":[]})", "you must provide a model parameter",
                 "model");
}

TEST_CASE("parse_request does not confuse nested model keys with the top-level one") {
  std::string body =
      R"({"messages":[{"role":"user","content":"x","model":"inner"}],)"
      R"("metadata":{"model":"meta","stream":true},"model":"outer","extra":["model"]})";
  const RequestInfo info = parse_request(body, kChat);
  REQUIRE(info.ok);
  CHECK(info.model == "outer");
  CHECK_FALSE(info.stream);
  CHECK(body.substr(info.model_offset, info.model_length) == "\"outer\"");
  check_rejected(R"({"messages":[{"model":"inner"}]})", "you must provide a model parameter",
                 "model");
}

TEST_CASE("duplicate top-level model is rejected") {
  // Python servers keep the last key: routing by the first would run a model the gateway did
  // not choose.
  check_rejected(R"({"model":"first","messages":[],"model":"second"})",
                 "the body has more than one \"model\" field", "model");
  check_rejected(R"({"model":"first","messages":[],"model":7})",
                 "the body has more than one \"model\" field", "model");
  // Invalid JSON still wins over the duplicate.
  check_rejected(R"({"model":"first","messages":[],"model":tru})",
                 "request body is not valid JSON");
}

// ---------------------------------------------------------------------------------------------
// parse_request: every 400

TEST_CASE("parse_request rejects what is not JSON") {
  const char* kMsg = "request body is not valid JSON: ";
  check_rejected("", kMsg);
  check_rejected("   \n", kMsg);
  check_rejected("{", kMsg);
  check_rejected(R"({"model":"m")", kMsg);
  check_rejected(R"({"model":"m",)", kMsg);
  check_rejected(R"({"model":"m","messages":[})", kMsg);
  check_rejected(R"({"model":"m","messages":[]}})", kMsg);
  check_rejected(R"({"model":"m","messages":[]} {})", kMsg);
  check_rejected(R"({"model":"m","messages":[]} x)", kMsg);
  check_rejected(R"({"model":"m" "messages":[]})", kMsg);
  check_rejected(R"({"model" "m","messages":[]})", kMsg);
  check_rejected(R"({model:"m","messages":[]})", kMsg);
  check_rejected(R"({"model":'m',"messages":[]})", kMsg);
  check_rejected(R"({"model":"m","messages":[],})", kMsg);
  check_rejected("{\"model\":\"m\xff\",\"messages\":[]}", kMsg);  // invalid UTF-8
  check_rejected("{\"model\":\"m\x01\",\"messages\":[]}", kMsg);  // raw control char
  check_rejected(R"({"model":"m\q","messages":[]})", kMsg);       // bad escape
  check_rejected(R"({"model":"\ud800","messages":[]})", kMsg);    // lone surrogate
  check_rejected(R"({"mo\qdel":"m","messages":[]})", kMsg);       // bad escape in key
}

TEST_CASE("parse_request validates values it does not use") {
  const char* kMsg = "request body is not valid JSON: ";
  const std::string head = R"({"model":"m","messages":[],"x":)";
  for (const char* bad :
       {"tru",     "nul",   "falsey",    "01",   "1.",       ".5",         "-",          "1e",
        "+1",      "[1 2]", "[1,]",      "[,1]", "{\"a\"}",  "{\"a\":}",   "{\"a\":1,}", "{1:2}",
        "\"\\x\"", "[1}",   "{\"a\":[}", "NaN",  "Infinity", "[\"\\u12\"]"}) {
    CAPTURE(bad);
    check_rejected(head + bad + "}", kMsg);
  }
  for (const char* good : {"true", "false", "null", "0", "-0", "1.5e-7", "1E+2",
                           "123456789012345678901234567890", "1e400", "[]", "{}", "[[[[]]]]",
                           "{\"a\":{\"b\":[1,\"\\u00e9\",null]}}", "\"\\ud83e\\udd99\""}) {
    CAPTURE(good);
    CHECK(parse(head + good + "}").ok);
  }
  // Invalid JSON inside the prompt and the stream_options is caught as well.
  check_rejected(R"({"model":"m","messages":[{"role":x}]})", kMsg);
  check_rejected(R"({"model":"m","messages":[],"stream_options":{"include_usage":tru}})", kMsg);
  check_rejected(R"({"model":"m","messages":[],"stream_options":{"other":[1,}})", kMsg);
}

TEST_CASE("parse_request bounds nesting") {
  std::string deep =
      R"({"model":"m","messages":)" + std::string(5000, '[') + std::string(5000, ']') + "}";
  check_rejected(deep, "request body is not valid JSON: ");
  std::string ok =
      R"({"model":"m","messages":)" + std::string(500, '[') + std::string(500, ']') + "}";
  CHECK(parse(ok).ok);
}

TEST_CASE("parse_request rejects bodies that are not objects") {
  for (const char* body : {"[]", "[{\"model\":\"m\"}]", "\"model\"", "42", "null", "true",
                           " [ 1 , [ ] ] \n", "-1.5e3 ", "\"\\u00e9\""}) {
    CAPTURE(body);
    check_rejected(body, "request body is not a JSON object");
  }
  // ...unless they are not JSON at all.
  for (const char* body : {"[1,]", "[] []", "0\"model\":\"m\"}", "\"model\":\"m\"}", "tru", "nulll",
                           "01", "\"\\x\"", "[{\"model\":}]", "1 2", "\"a\" \"b\""}) {
    CAPTURE(body);
    check_rejected(body, "request body is not valid JSON: ");
  }
}

TEST_CASE("parse_request model errors") {
  check_rejected(R"({"messages":[]})", "you must provide a model parameter", "model");
  check_rejected(R"({})", "you must provide a model parameter", "model");
  for (const char* value : {"null", "1", "true", "[\"m\"]", "{\"name\":\"m\"}"}) {
    CAPTURE(value);
    check_rejected(std::string(R"({"messages":[],"model":)") + value + "}",
                   "model must be a string", "model");
  }
  CHECK(parse(R"({"model":"","messages":[]})").ok);  // a string: resolution decides (404)
}

TEST_CASE("parse_request stream errors") {
  for (const char* value : {"\"true\"", "1", "0", "[]", "{}"}) {
    CAPTURE(value);
    check_rejected(std::string(R"({"model":"m","messages":[],"stream":)") + value + "}",
                   "stream must be a boolean", "stream");
  }
}

TEST_CASE("parse_request required field errors") {
  check_rejected(R"({"model":"m"})", "missing required parameter: 'messages'", "messages", kChat);
  check_rejected(R"({"model":"m","prompt":"x"})", "missing required parameter: 'messages'",
                 "messages", kChat);
  check_rejected(R"({"model":"m","messages":[]})", "missing required parameter: 'prompt'", "prompt",
                 kCompletions);
  check_rejected(R"({"model":"m"})", "missing required parameter: 'input'", "input",
                 "/v1/embeddings");
  check_rejected(R"({"model":"m","nested":{"input":1}})", "missing required parameter: 'input'",
                 "input", "/v1/responses");
  // A model problem is reported before the missing field.
  check_rejected(R"({"model":1})", "model must be a string", "model", kChat);
}

TEST_CASE("parse_request accepts a body without padding capacity and one with it") {
  std::string body = R"({"model":"m","messages":[]})";
  body.shrink_to_fit();
  CHECK(parse_request(body, kChat).ok);
  std::string padded;
  padded.reserve(200);
  padded = R"({"model":"m","messages":[]})";
  const char* before = padded.data();
  CHECK(parse_request(padded, kChat).ok);
  CHECK(padded.data() == before);  // no reallocation when the caller reserved the padding
}

// ---------------------------------------------------------------------------------------------
// rewrite_request_model

TEST_CASE("rewrite_request_model round-trips") {
  const std::string original =
      R"({"messages":[{"role":"user","content":"model"}], "model" : "short" ,"stream":true})";
  for (const std::string& target :
       {std::string("a-much-longer-target-model-name/v2"), std::string("x"), std::string(""),
        std::string("quote\"back\\slash"), std::string("ctl\x01\x1f\n\t"),
        std::string("\xE6\xA8\xA1\xE5\x9E\x8B\xF0\x9F\xA6\x99"), std::string("\x7f")}) {
    CAPTURE(target);
    std::string body = original;
    const RequestInfo info = parse_request(body, kChat);
    REQUIRE(info.ok);
    rewrite_request_model(body, info, target);
    const RequestInfo again = parse_request(body, kChat);
    REQUIRE(again.ok);
    CHECK(again.model == target);
    CHECK(again.stream);
    // Everything around the model token is untouched; Content-Length follows the new size.
    CHECK(body.substr(0, info.model_offset) == original.substr(0, info.model_offset));
    CHECK(body.substr(again.model_offset + again.model_length) ==
          original.substr(info.model_offset + info.model_length));
    CHECK(body.size() == original.size() - info.model_length + again.model_length);
  }
}

TEST_CASE("rewrite_request_model encodes control characters as \\u00XX") {
  std::string body = R"({"model":"m","messages":[]})";
  const RequestInfo info = parse_request(body, kChat);
  rewrite_request_model(body, info, std::string("a\nb\x01\"", 5));
  CHECK(body == R"({"model":"a\u000ab\u0001\"","messages":[]})");
}

TEST_CASE("rewrite_request_model ignores a failed parse") {
  std::string body = R"({"messages":[]})";
  const RequestInfo info = parse_request(body, kChat);
  REQUIRE_FALSE(info.ok);
  rewrite_request_model(body, info, "x");
  CHECK(body == R"({"messages":[]})");
}

// ---------------------------------------------------------------------------------------------
// rewrite_response_body

TEST_CASE("rewrite_response_body on vLLM fixtures") {
  struct Case {
    const char* file;
    const char* model;
    int64_t prompt, completion;
  };
  for (const Case& c :
       {Case{"vllm-completion.json", "deepseek-r1-distill-llama-8b-l4", 6, 7},
        Case{"vllm-chat-completion-v0.7.2.json", "deepseek-r1-distill-llama-8b-l4", 13, 599},
        Case{"vllm-chat-completion.json", "qwen-vl", 3606, 40},
        Case{"vllm-v1-completion.json", "ibm-granite/granite-3.0-3b-a800m-instruct", 7, 24}}) {
    CAPTURE(c.file);
    const std::string original = fixture(c.file);
    std::string body = original;
    body.shrink_to_fit();  // no padding capacity: must still work
    Usage usage;
    CHECK(rewrite_response_body(body, "client/Model \"x\"", &usage));
    CHECK(usage.prompt_tokens == c.prompt);
    CHECK(usage.completion_tokens == c.completion);
    CHECK(body ==
          replace_all(original, std::string("\"") + c.model + "\"", R"("client/Model \"x\"")"));
    // Already the client's name: nothing to do, usage still read.
    Usage again;
    CHECK_FALSE(rewrite_response_body(body, "client/Model \"x\"", &again));
    CHECK(again.prompt_tokens == c.prompt);
    // No client model: only usage.
    std::string copy = original;
    Usage only;
    CHECK_FALSE(rewrite_response_body(copy, "", &only));
    CHECK(copy == original);
    CHECK(only.completion_tokens == c.completion);
    // Null usage pointer is fine.
    copy = original;
    CHECK(rewrite_response_body(copy, "c", nullptr));
  }
}

TEST_CASE("rewrite_response_body edge cases") {
  SUBCASE("not JSON or not an object: unchanged") {
    for (const char* text : {"", "Internal Server Error", "[{\"model\":\"m\"}]", "{\"model\":\"m\"",
                             "{\"model\":\"m\"} trailing", "\"model\""}) {
      CAPTURE(text);
      std::string body = text;
      Usage usage;
      CHECK_FALSE(rewrite_response_body(body, "c", &usage));
      CHECK(body == text);
      CHECK_FALSE(usage.seen());
    }
  }
  SUBCASE("only top-level model, every duplicate of it") {
    std::string body =
        R"({"model":"a","choices":[{"model":"nested"}],"meta":{"model":"x"},"model":"b","model":3})";
    CHECK(rewrite_response_body(body, "c", nullptr));
    CHECK(
        body ==
        R"({"model":"c","choices":[{"model":"nested"}],"meta":{"model":"x"},"model":"c","model":3})");
  }
  SUBCASE("escaped key and value") {
    std::string body = R"({"m\u006fdel":"x\u0041","usage":{"prompt_tokens":1}})";
    Usage usage;
    CHECK(rewrite_response_body(body, "xA2", &usage));
    CHECK(body == R"({"m\u006fdel":"xA2","usage":{"prompt_tokens":1}})");
    CHECK(usage.prompt_tokens == 1);
    CHECK(usage.completion_tokens == -1);
    std::string same = R"({"model":"x\u0041"})";
    CHECK_FALSE(rewrite_response_body(same, "xA", nullptr));  // equal once unescaped
  }
  SUBCASE("odd usage values are ignored") {
    std::string body =
        R"({"usage":{"prompt_tokens":1.5,"completion_tokens":"7","total_tokens":9}})";
    Usage usage;
    CHECK_FALSE(rewrite_response_body(body, "c", &usage));
    CHECK_FALSE(usage.seen());
    body = R"({"usage":{"prompt_tokens":-3,"completion_tokens":99999999999999999999}})";
    CHECK_FALSE(rewrite_response_body(body, "c", &usage));
    CHECK_FALSE(usage.seen());
    body = R"({"usage":null,"model":null})";
    CHECK_FALSE(rewrite_response_body(body, "c", &usage));
    CHECK_FALSE(usage.seen());
  }
  SUBCASE("error object from upstream has no model: unchanged") {
    std::string body =
        R"({"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404})";
    const std::string before = body;
    CHECK_FALSE(rewrite_response_body(body, "c", nullptr));
    CHECK(body == before);
  }
}

// ---------------------------------------------------------------------------------------------
// SseRewriter

TEST_CASE("SseRewriter rewrites every event of the vLLM streams, in any piece sizes") {
  for (const char* file : {"vllm-chat-stream.sse", "vllm-completion-stream.sse"}) {
    CAPTURE(file);
    const std::string input = fixture(file);
    const std::string expected =
        replace_all(input, "\"model\":\"deepseek-r1-distill-llama-8b-l4\"", "\"model\":\"client\"");
    const size_t n_events = count(input, "\n\n");
    REQUIRE(count(input, std::string("\"") + std::string(kFixtureModel) + "\"") == n_events - 1);

    SseRewriter whole("client");
    CHECK(feed_at_once(whole, input) == expected);
    CHECK(whole.events() == n_events);
    CHECK(whole.saw_done());
    CHECK_FALSE(whole.usage().seen());  // no usage requested in these streams

    for (uint64_t seed = 1; seed <= 20; ++seed) {
      for (size_t max_piece : {size_t{1}, size_t{7}, size_t{64}, size_t{1000}}) {
        CAPTURE(seed);
        CAPTURE(max_piece);
        SseRewriter pieces("client");
        CHECK(feed_in_pieces(pieces, input, seed, max_piece) == expected);
        CHECK(pieces.events() == n_events);
        CHECK(pieces.saw_done());
      }
    }
  }
}

TEST_CASE("SseRewriter emits each event as soon as it is complete") {
  const std::string input = fixture("vllm-completion-stream.sse");
  SseRewriter rw("c");
  std::string out;
  const size_t first_end = input.find("\n\n") + 2;
  rw.feed(std::string_view(input).substr(0, first_end - 1), out);
  CHECK(out.empty());
  rw.feed(std::string_view(input).substr(first_end - 1, 1), out);
  CHECK(out.size() == first_end - kFixtureModel.size() + 1);
  CHECK(rw.events() == 1);
}

TEST_CASE("SseRewriter reads the include_usage chunk") {
  const std::string input = fixture("openai-chat-stream-include-usage.sse");
  const std::string expected =
      replace_all(input, "\"model\":\"gpt-5-nano-2025-08-07\"", "\"model\":\"my-model\"");
  for (uint64_t seed = 0; seed < 30; ++seed) {
    SseRewriter rw("my-model");
    const std::string out =
        seed == 0 ? feed_at_once(rw, input) : feed_in_pieces(rw, input, seed, 50);
    CHECK(out == expected);
    CHECK(rw.usage().prompt_tokens == 12);
    CHECK(rw.usage().completion_tokens == 100);
    CHECK(rw.saw_done());
    CHECK(rw.events() == 4);
  }
  // Usage is read even with no model to rewrite (fast path only skips usage-free events).
  SseRewriter no_model("");
  CHECK(feed_at_once(no_model, input) == input);
  CHECK(no_model.usage().completion_tokens == 100);
}

TEST_CASE("SseRewriter with CRLF and CR terminators") {
  const std::string lf = fixture("vllm-completion-stream.sse");
  const std::string expected_lf =
      replace_all(lf, "\"model\":\"deepseek-r1-distill-llama-8b-l4\"", "\"model\":\"c\"");
  for (const char* eol : {"\r\n", "\r"}) {
    CAPTURE(std::string_view(eol).size());
    const std::string input = replace_all(lf, "\n", eol);
    const std::string expected = replace_all(expected_lf, "\n", eol);
    SseRewriter whole("c");
    CHECK(feed_at_once(whole, input) == expected);
    CHECK(whole.events() == 8);
    CHECK(whole.saw_done());
    for (uint64_t seed = 1; seed <= 50; ++seed) {
      CAPTURE(seed);
      SseRewriter pieces("c");
      CHECK(feed_in_pieces(pieces, input, seed, 5) == expected);
      CHECK(pieces.events() == 8);
    }
  }
  // A CR that ends an event at the end of a read, then the LF of that CRLF in the next read.
  SseRewriter rw("c");
  std::string out;
  rw.feed("data: {\"model\":\"m\"}\r\n\r", out);
  CHECK(out == "data: {\"model\":\"c\"}\r\n\r");
  CHECK(rw.events() == 1);
  rw.feed("\ndata: [DONE]\r\n\r\n", out);
  CHECK(out == "data: {\"model\":\"c\"}\r\n\r\ndata: [DONE]\r\n\r\n");
  CHECK(rw.events() == 2);
  CHECK(rw.saw_done());
}

TEST_CASE("SseRewriter leaves other fields and lines alone") {
  const std::string input =
      ": keep-alive comment\n\n"
      "event: message\nid: 7\nretry: 1000\ndata:{\"model\":\"m\",\"x\":1}\n\n"
      "data: {\"choices\":[{\"model\":\"nested\"}]}\n\n"
      "data: {\"model\":\"m\"}\ndata: {\"model\":\"m\"}\n\n"  // two data lines: unchanged
      "data: not json \"model\"\n\n"
      "data: {\"model\":\"m\"\n\n"    // truncated JSON: unchanged
      "data:  {\"model\":\"m\"}\n\n"  // two spaces: the second belongs to the value
      "data: {\"model\":\"c\",\"usage\":null}\n\n"
      "data: [DONE]\n\n";
  const std::string expected =
      ": keep-alive comment\n\n"
      "event: message\nid: 7\nretry: 1000\ndata:{\"model\":\"c\",\"x\":1}\n\n"
      "data: {\"choices\":[{\"model\":\"nested\"}]}\n\n"
      "data: {\"model\":\"m\"}\ndata: {\"model\":\"m\"}\n\n"
      "data: not json \"model\"\n\n"
      "data: {\"model\":\"m\"\n\n"
      "data:  {\"model\":\"m\"}\n\n"
      "data: {\"model\":\"c\",\"usage\":null}\n\n"
      "data: [DONE]\n\n";
  SseRewriter rw("c");
  CHECK(feed_at_once(rw, input) == expected);
  CHECK(rw.events() == 9);
  CHECK(rw.saw_done());
  CHECK_FALSE(rw.usage().seen());
}

TEST_CASE("SseRewriter passes an oversized event through and recovers") {
  const std::string big = "data: {\"model\":\"m\",\"pad\":\"" + std::string(500, 'x') + "\"}\n\n";
  const std::string small = "data: {\"model\":\"m\"}\n\n";
  const std::string input = small + big + small + "data: [DONE]\n\n";
  const std::string expected =
      "data: {\"model\":\"c\"}\n\n" + big + "data: {\"model\":\"c\"}\n\ndata: [DONE]\n\n";
  SseRewriter whole("c", 100);
  CHECK(feed_at_once(whole, input) == expected);
  CHECK(whole.events() == 4);
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    SseRewriter pieces("c", 100);
    CHECK(feed_in_pieces(pieces, input, seed, 40) == expected);
    CHECK(pieces.events() == 4);
    CHECK(pieces.saw_done());
  }
  // The oversized event's bytes flow before its end arrives.
  SseRewriter rw("c", 100);
  std::string out;
  rw.feed(std::string_view(big).substr(0, 300), out);
  CHECK(out == big.substr(0, 300));
}

TEST_CASE("SseRewriter: a stream that never delimits still flows, finish flushes the rest") {
  SseRewriter rw("c", 64);
  std::string out;
  const std::string noise(1000, 'z');
  rw.feed(noise, out);
  CHECK(out == noise);
  rw.feed("data: {\"model\":\"m\"}", out);  // continues the oversized event
  rw.finish(out);
  CHECK(out == noise + "data: {\"model\":\"m\"}");

  SseRewriter tail("c");
  std::string out2;
  tail.feed("data: {\"model\":\"m\"}\n", out2);
  CHECK(out2.empty());
  tail.finish(out2);
  CHECK(out2 == "data: {\"model\":\"m\"}\n");  // incomplete event: unmodified
  CHECK(tail.events() == 0);
}

TEST_CASE("SseRewriter keeps the last usage of a stream with continuous usage") {
  SseRewriter rw("c");
  std::string out;
  rw.feed("data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n",
          out);
  rw.feed("data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
          out);
  rw.feed("data: {\"model\":\"m\",\"usage\":null}\n\n", out);
  CHECK(rw.usage().prompt_tokens == 5);
  CHECK(rw.usage().completion_tokens == 2);
  CHECK(count(out, "\"model\":\"c\"") == 3);
}

// ---------------------------------------------------------------------------------------------
// Robustness: deterministic mutations (stands in for the libFuzzer targets).

namespace {

std::string mutate(std::string s, Rng& rng) {
  static constexpr char kInteresting[] = "{}[]\",:\\\r\n 0-eE.tfnu\x00\xff\xc3";
  const int edits = 1 + static_cast<int>(rng.below(4));
  for (int e = 0; e < edits; ++e) {
    const size_t at = s.empty() ? 0 : rng.below(s.size());
    const auto pick = [&] {
      return rng.below(2) == 0 ? static_cast<char>(rng.below(256))
                               : kInteresting[rng.below(sizeof(kInteresting) - 1)];
    };
    switch (rng.below(4)) {
      case 0:  // flip bits
        if (!s.empty()) s[at] = static_cast<char>(s[at] ^ (1 << rng.below(8)));
        break;
      case 1:  // replace
        if (!s.empty()) s[at] = pick();
        break;
      case 2:  // insert
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), pick());
        break;
      default:  // delete a short run
        if (!s.empty()) s.erase(at, 1 + rng.below(std::min<size_t>(8, s.size() - at)));
        break;
    }
  }
  return s;
}

}  // namespace

TEST_CASE("robustness: 20000 mutated bodies and streams") {
  const std::vector<std::string> requests = {
      R"({"model":"llama","messages":[{"role":"user","content":"hi \u00e9"}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"n":1})",
      R"({"model":"m","prompt":[1,2,3],"max_tokens":16,"logit_bias":{"50256":-100}})",
      R"({"input":["a","b"],"model":"embed","encoding_format":"float"})",
  };
  const std::vector<std::string> paths = {"/v1/chat/completions", "/v1/completions",
                                          "/v1/embeddings", "/v1/responses", "/other"};
  const std::vector<std::string> responses = {fixture("vllm-completion.json"),
                                              fixture("vllm-chat-completion.json"),
                                              fixture("vllm-v1-completion.json")};
  const std::string chat_stream = fixture("vllm-chat-stream.sse");
  const std::vector<std::string> streams = {
      fixture("vllm-completion-stream.sse"), fixture("openai-chat-stream-include-usage.sse"),
      chat_stream.substr(0, 3000),
      replace_all(fixture("vllm-completion-stream.sse"), "\n", "\r\n")};

  Rng rng(0xF022);
  size_t accepted = 0, rewritten = 0;
  for (int i = 0; i < 20000; ++i) {
    switch (i % 3) {
      case 0: {
        const size_t which = rng.below(requests.size());
        std::string body = mutate(requests[which], rng);
        // Mostly the path the body was written for, sometimes any.
        const std::string& path = paths[rng.below(4) != 0 ? which : rng.below(paths.size())];
        RequestInfo info = parse_request(body, path);
        if (info.ok) {
          ++accepted;
          REQUIRE(info.model_offset + info.model_length <= body.size());
          REQUIRE(info.prompt_offset + info.prompt_length <= body.size());
          rewrite_request_model(body, info, "target\"model");
          const RequestInfo again = parse_request(body, path);
          REQUIRE(again.ok);
          CHECK(again.model == "target\"model");
        } else {
          CHECK_FALSE(info.error.empty());
        }
        break;
      }
      case 1: {
        std::string body = mutate(responses[rng.below(responses.size())], rng);
        const std::string before = body;
        Usage usage;
        if (rewrite_response_body(body, "client", &usage)) {
          ++rewritten;
          Usage again;
          CHECK_FALSE(rewrite_response_body(body, "client", &again));
        } else {
          CHECK(body == before);
        }
        break;
      }
      default: {
        const std::string input = mutate(streams[rng.below(streams.size())], rng);
        const size_t max_event = rng.below(2) == 0 ? 1u << 20 : 1 + rng.below(300);
        SseRewriter whole("client", max_event);
        SseRewriter pieces("client", max_event);
        const std::string a = feed_at_once(whole, input);
        const std::string b = feed_in_pieces(pieces, input, rng.next(), 1 + rng.below(100));
        if (a != b) {
          size_t d = 0;
          while (d < a.size() && d < b.size() && a[d] == b[d]) ++d;
          MESSAGE("diff at " << d << " of " << a.size() << "/" << b.size() << " max_event "
                             << max_event << "\nA: " << a.substr(d > 60 ? d - 60 : 0, 160)
                             << "\nB: " << b.substr(d > 60 ? d - 60 : 0, 160));
        }
        CHECK(a == b);
        CHECK(whole.events() == pieces.events());
        SseRewriter same_name("", max_event);
        CHECK(feed_at_once(same_name, input) == input);  // nothing to rewrite: byte-identical
        break;
      }
    }
  }
  // The mutations must leave a fair share valid, or the test exercises only the error paths.
  CHECK(accepted > 500);
  CHECK(rewritten > 500);
}

TEST_CASE("parse_request records the tools span for prefix hashing") {
  std::string body =
      R"({"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"messages":[]})";
  const RequestInfo info = parse_request(body, kChat);
  REQUIRE(info.ok);
  CHECK(body.substr(info.tools_offset, info.tools_length) ==
        R"([{"type":"function","function":{"name":"f"}}])");
  CHECK(body.substr(info.prompt_offset, info.prompt_length) == "[]");

  std::string no_tools = R"({"model":"m","messages":[]})";
  const RequestInfo none = parse_request(no_tools, kChat);
  REQUIRE(none.ok);
  CHECK(none.tools_length == 0);
}
