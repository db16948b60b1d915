#include "sim/openai_format.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <cmath>
#include <string>
#include <vector>

namespace infergate::sim {
namespace {

const ResponseMeta kMeta{"cmpl-0123456789abcdef0123456789abcdef", 1741831566, "my-model"};

// Parses one document; the parser stays alive for the returned element.
simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::element doc;
  const auto error = parser.parse(json).get(doc);
  INFO(json);
  REQUIRE(error == simdjson::SUCCESS);
  return doc;
}

// Splits "data: X\n\n" events; every event must be exactly that shape.
std::vector<std::string> split_events(const std::string& sse) {
  std::vector<std::string> events;
  size_t pos = 0;
  while (pos < sse.size()) {
    REQUIRE(sse.compare(pos, 6, "data: ") == 0);
    const size_t end = sse.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    events.push_back(sse.substr(pos + 6, end - pos - 6));
    pos = end + 2;
  }
  return events;
}

std::string_view str(simdjson::dom::element e) {
  return e.get_string().value();
}
int64_t num(simdjson::dom::element e) {
  return e.get_int64().value();
}

void check_usage(simdjson::dom::element usage, int64_t prompt, int64_t completion) {
  CHECK(num(usage["prompt_tokens"]) == prompt);
  CHECK(num(usage["completion_tokens"]) == completion);
  CHECK(num(usage["total_tokens"]) == prompt + completion);
}

}  // namespace

TEST_CASE("format: token texts, end-of-sequence empty") {
  CHECK(token_text(1, false).view() == " tok0");
  CHECK(token_text(12, false).view() == " tok11");
  CHECK(token_text(3, true).view().empty());
  CHECK(generated_text(3, FinishReason::kLength) == " tok0 tok1 tok2");
  CHECK(generated_text(3, FinishReason::kStop) == " tok0 tok1");
}

TEST_CASE("format: completion body matches vLLM's keys and order") {
  const std::string body = completion_body(kMeta, " tok0 tok1", FinishReason::kLength, {6, 2});
  CHECK(body ==
        R"({"id":"cmpl-0123456789abcdef0123456789abcdef","object":"text_completion",)"
        R"("created":1741831566,"model":"my-model","choices":[{"index":0,"text":" tok0 tok1",)"
        R"("logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_logprobs":null}],)"
        R"("usage":{"prompt_tokens":6,"total_tokens":8,"completion_tokens":2,)"
        R"("prompt_tokens_details":null}})");
  simdjson::dom::parser parser;
  const auto doc = parse(parser, body);
  check_usage(doc["usage"], 6, 2);
  CHECK(doc["usage"]["prompt_tokens_details"].is_null());
}

TEST_CASE("format: cached prompt tokens as vLLM's prompt_tokens_details") {
  const Usage usage{100, 2, 96};
  simdjson::dom::parser parser;
  const std::string body = completion_body(kMeta, " tok0 tok1", FinishReason::kLength, usage);
  CHECK(body.find(R"("prompt_tokens_details":{"cached_tokens":96})") != std::string::npos);
  const auto doc = parse(parser, body);
  CHECK(num(doc["usage"]["prompt_tokens_details"]["cached_tokens"]) == 96);
  // The streamed usage chunk carries it too (it only drops nulls).
  std::string sse;
  append_usage_event(sse, kMeta, Endpoint::kChatCompletions, usage);
  CHECK(sse.find(R"("prompt_tokens_details":{"cached_tokens":96})") != std::string::npos);
  sse.clear();
  append_usage_event(sse, kMeta, Endpoint::kChatCompletions, {100, 2});
  CHECK(sse.find("prompt_tokens_details") == std::string::npos);
}

TEST_CASE("format: chat body") {
  simdjson::dom::parser parser;
  const auto doc = parse(parser, chat_body(kMeta, " tok0", FinishReason::kStop, {10, 2}));
  CHECK(str(doc["object"]) == "chat.completion");
  CHECK(str(doc["model"]) == "my-model");
  CHECK(num(doc["created"]) == 1741831566);
  const auto choice = doc["choices"].at(0).value();
  CHECK(str(choice["message"]["role"]) == "assistant");
  CHECK(str(choice["message"]["content"]) == " tok0");
  CHECK(choice["message"]["reasoning_content"].is_null());
  CHECK(choice["message"]["tool_calls"].get_array().value().size() == 0);
  CHECK(str(choice["finish_reason"]) == "stop");
  CHECK(choice["stop_reason"].is_null());
  CHECK(doc["prompt_logprobs"].is_null());
  CHECK(doc["kv_transfer_params"].is_null());
  check_usage(doc["usage"], 10, 2);
}

TEST_CASE("format: completion stream events") {
  std::string sse;
  append_completion_event(sse, kMeta, " tok0", nullptr);
  const FinishReason length = FinishReason::kLength;
  append_completion_event(sse, kMeta, " tok1", &length);
  append_usage_event(sse, kMeta, Endpoint::kCompletions, {3, 2});
  append_done_event(sse);
  const auto events = split_events(sse);
  REQUIRE(events.size() == 4);
  CHECK(events[0] ==
        R"({"id":"cmpl-0123456789abcdef0123456789abcdef","object":"text_completion",)"
        R"("created":1741831566,"model":"my-model","choices":[{"index":0,"text":" tok0",)"
        R"("logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null})");
  simdjson::dom::parser parser;
  auto last = parse(parser, events[1]);
  CHECK(str(last["choices"].at(0)["finish_reason"]) == "length");
  simdjson::dom::parser parser2;
  auto usage = parse(parser2, events[2]);
  CHECK(str(usage["object"]) == "text_completion");
  CHECK(usage["choices"].get_array().value().size() == 0);
  check_usage(usage["usage"], 3, 2);
  // Streamed usage is serialized with exclude_none: no prompt_tokens_details.
  CHECK(usage["usage"]["prompt_tokens_details"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(events[3] == "[DONE]");
}

TEST_CASE("format: chat stream events: role first, stop_reason only at the end") {
  std::string sse;
  append_chat_role_event(sse, kMeta);
  append_chat_event(sse, kMeta, " tok0", nullptr);
  const FinishReason stop = FinishReason::kStop;
  append_chat_event(sse, kMeta, "", &stop);
  append_usage_event(sse, kMeta, Endpoint::kChatCompletions, {8, 2});
  const auto events = split_events(sse);
  REQUIRE(events.size() == 4);

  simdjson::dom::parser p0;
  const auto role = parse(p0, events[0]);
  CHECK(str(role["object"]) == "chat.completion.chunk");
  CHECK(str(role["choices"].at(0)["delta"]["role"]) == "assistant");
  CHECK(str(role["choices"].at(0)["delta"]["content"]).empty());
  CHECK(role["usage"].error() == simdjson::NO_SUCH_FIELD);

  simdjson::dom::parser p1;
  const auto token = parse(p1, events[1]);
  CHECK(str(token["choices"].at(0)["delta"]["content"]) == " tok0");
  CHECK(token["choices"].at(0)["finish_reason"].is_null());
  CHECK(token["choices"].at(0)["stop_reason"].error() == simdjson::NO_SUCH_FIELD);

  simdjson::dom::parser p2;
  const auto final_chunk = parse(p2, events[2]);
  CHECK(str(final_chunk["choices"].at(0)["finish_reason"]) == "stop");
  CHECK(final_chunk["choices"].at(0)["stop_reason"].is_null());

  simdjson::dom::parser p3;
  const auto usage = parse(p3, events[3]);
  CHECK(str(usage["object"]) == "chat.completion.chunk");
  check_usage(usage["usage"], 8, 2);
}

TEST_CASE("format: model names are JSON-escaped") {
  const ResponseMeta meta{"id", 1, "we\"ird\\name"};
  simdjson::dom::parser parser;
  const auto doc = parse(parser, completion_body(meta, "", FinishReason::kStop, {1, 1}));
  CHECK(str(doc["model"]) == "we\"ird\\name");
}

TEST_CASE("format: embeddings are deterministic unit vectors") {
  const std::vector<uint64_t> hashes{42, 43};
  const ResponseMeta meta{"embd-1", 1, "m"};
  const std::string body = embeddings_body(meta, hashes, 7);
  CHECK(body == embeddings_body(meta, hashes, 7));
  simdjson::dom::parser parser;
  const auto doc = parse(parser, body);
  CHECK(str(doc["object"]) == "list");
  const auto data = doc["data"].get_array().value();
  REQUIRE(data.size() == 2);
  const auto first = data.at(0).value();
  CHECK(str(first["object"]) == "embedding");
  CHECK(num(first["index"]) == 0);
  double norm = 0;
  size_t dims = 0;
  const simdjson::dom::array vector = first["embedding"].get_array().value();
  for (const auto v : vector) {
    const double x = v.get_double().value();
    norm += x * x;
    ++dims;
  }
  CHECK(dims == kEmbeddingDimensions);
  CHECK(std::sqrt(norm) == doctest::Approx(1.0).epsilon(1e-5));
  check_usage(doc["usage"], 7, 0);
}

TEST_CASE("format: /v1/models lists served names then adapters") {
  SimOptions options;
  options.model = "org/base";
  options.served_model_names = {"base"};
  options.lora_modules = {{"sql", "/l/sql", ""}};
  const ModelCatalog catalog(options);
  IdGenerator ids(1);
  simdjson::dom::parser parser;
  const auto doc = parse(parser, models_body(catalog, 5, 4096, ids));
  CHECK(str(doc["object"]) == "list");
  const auto data = doc["data"].get_array().value();
  REQUIRE(data.size() == 2);
  const auto base = data.at(0).value();
  CHECK(str(base["id"]) == "base");
  CHECK(str(base["object"]) == "model");
  CHECK(str(base["owned_by"]) == "vllm");
  CHECK(str(base["root"]) == "org/base");
  CHECK(base["parent"].is_null());
  CHECK(num(base["max_model_len"]) == 4096);
  const auto adapter = data.at(1).value();
  CHECK(str(adapter["id"]) == "sql");
  CHECK(str(adapter["root"]) == "/l/sql");
  CHECK(str(adapter["parent"]) == "base");
  CHECK(str(adapter["permission"].at(0)["id"]).starts_with("modelperm-"));
}

TEST_CASE("format: error bodies") {
  CHECK(error_body(model_not_found("X")) ==
        R"({"object":"error","message":"The model `X` does not exist.",)"
        R"("type":"NotFoundError","param":null,"code":404})");
  CHECK(detail_body("Not Found") == R"({"detail":"Not Found"})");
}

}  // namespace infergate::sim
