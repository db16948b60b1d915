#include "sim/openai_request.h"
#include "sim/tokenizer.h"

#include <doctest/doctest.h>

#include <string>

namespace infergate::sim {
namespace {

std::variant<OpenAiRequest, ApiError> parse(Endpoint endpoint, std::string body) {
  simdjson::dom::parser parser;
  return parse_openai_request(endpoint, body, parser);
}

OpenAiRequest parse_ok(Endpoint endpoint, std::string body) {
  auto result = parse(endpoint, std::move(body));
  if (const ApiError* error = std::get_if<ApiError>(&result)) FAIL(error->message);
  return std::get<OpenAiRequest>(result);
}

ApiError parse_error(Endpoint endpoint, std::string body) {
  auto result = parse(endpoint, std::move(body));
  REQUIRE(std::holds_alternative<ApiError>(result));
  return std::get<ApiError>(result);
}

SimOptions catalog_options() {
  SimOptions options;
  options.model = "org/base";
  options.served_model_names = {"base", "alias"};
  options.lora_modules = {{"sql", "/l/sql", ""}};
  return options;
}

}  // namespace

TEST_CASE("tokenizer: about four bytes per token, deterministic") {
  CHECK(count_text_tokens("") == 0);
  CHECK(count_text_tokens("a") == 1);
  CHECK(count_text_tokens("abcd") == 1);
  CHECK(count_text_tokens("abcde") == 2);
  CHECK(count_text_tokens(std::string(4096, 'x')) == 1024);
}

TEST_CASE("request: completions fields as vLLM reads them") {
  const OpenAiRequest r =
      parse_ok(Endpoint::kCompletions,
               R"({"model":"base","prompt":"12345678","stream":true,"max_tokens":7,
          "stream_options":{"include_usage":true},"ignore_eos":true})");
  CHECK(r.model == "base");
  CHECK(r.prompt_tokens == 2);
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.ignore_eos);
  CHECK(r.max_tokens == 7);
}

TEST_CASE("request: prompt forms: strings, token ids, token-id lists") {
  CHECK(parse_ok(Endpoint::kCompletions, R"({"prompt":[1,2,3]})").prompt_tokens == 3);
  CHECK(parse_ok(Endpoint::kCompletions, R"({"prompt":["abcd","abcdefgh"]})").prompt_tokens == 3);
  CHECK(parse_ok(Endpoint::kCompletions, R"({"prompt":[[1,2],[3]]})").prompt_tokens == 3);
  CHECK(parse_error(Endpoint::kCompletions, R"({"prompt":[]})").status == 400);
  CHECK(parse_error(Endpoint::kCompletions, R"({"prompt":{"a":1}})").status == 400);
}

TEST_CASE("request: chat counts template overhead per message") {
  const OpenAiRequest r = parse_ok(Endpoint::kChatCompletions,
                                   R"({"messages":[{"role":"system","content":"abcd"},
                      {"role":"user","content":[{"type":"text","text":"abcdefgh"}]}],
          "max_tokens":5,"max_completion_tokens":9})");
  CHECK(r.prompt_tokens == kChatReplyPrimerTokens + 2 * kChatTokensPerMessage + 1 + 2);
  CHECK(r.max_tokens == 9);  // max_completion_tokens wins for chat
  CHECK(r.model.empty());
}

TEST_CASE("request: the prompt's token stream is hashed into KV blocks") {
  const std::string shared(64, 's');  // 16 tokens: one block
  const OpenAiRequest a =
      parse_ok(Endpoint::kCompletions, R"({"prompt":")" + shared + std::string(64, 'a') + R"("})");
  const OpenAiRequest b =
      parse_ok(Endpoint::kCompletions, R"({"prompt":")" + shared + std::string(64, 'b') + R"("})");
  REQUIRE(a.prompt_hashes.block_hashes().size() == 2);
  REQUIRE(b.prompt_hashes.block_hashes().size() == 2);
  CHECK(a.prompt_hashes.tokens() == a.prompt_tokens);
  CHECK(a.prompt_hashes.block_hashes()[0] == b.prompt_hashes.block_hashes()[0]);
  CHECK(a.prompt_hashes.block_hashes()[1] != b.prompt_hashes.block_hashes()[1]);

  // The block size is the engine's.
  std::string body = R"({"prompt":")" + shared + R"("})";
  simdjson::dom::parser parser;
  const auto small = parse_openai_request(Endpoint::kCompletions, body, parser, 4);
  CHECK(std::get<OpenAiRequest>(small).prompt_hashes.block_hashes().size() == 4);

  // Chat: the system prompt's blocks are shared across conversations that start alike.
  const std::string system(256, 'y');
  const auto chat = [&](std::string_view user) {
    return parse_ok(Endpoint::kChatCompletions, R"({"messages":[{"role":"system","content":")" +
                                                    system + R"("},{"role":"user","content":")" +
                                                    std::string(user) + R"("}]})");
  };
  const OpenAiRequest c1 = chat("what is the weather like today?");
  const OpenAiRequest c2 = chat("and tomorrow?");
  CHECK(c1.prompt_hashes.tokens() == c1.prompt_tokens);
  REQUIRE(c2.prompt_hashes.block_hashes().size() >= 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(c1.prompt_hashes.block_hashes()[i] == c2.prompt_hashes.block_hashes()[i]);
  }
  // Token-id prompts hash by id.
  const OpenAiRequest ids = parse_ok(Endpoint::kCompletions, R"({"prompt":[1,2,3]})");
  CHECK(ids.prompt_hashes.tokens() == 3);
}

TEST_CASE("request: embeddings inputs each get a stable hash") {
  const OpenAiRequest a = parse_ok(Endpoint::kEmbeddings, R"({"input":["x","y"]})");
  const OpenAiRequest b = parse_ok(Endpoint::kEmbeddings, R"({"input":"x"})");
  REQUIRE(a.input_hashes.size() == 2);
  REQUIRE(b.input_hashes.size() == 1);
  CHECK(a.input_hashes[0] == b.input_hashes[0]);
  CHECK(a.input_hashes[0] != a.input_hashes[1]);
}

TEST_CASE("request: vLLM-shaped 400s") {
  const ApiError invalid = parse_error(Endpoint::kCompletions, R"({"prompt": )");
  CHECK(invalid.status == 400);
  CHECK(invalid.type == "BadRequestError");
  CHECK(invalid.message.find("json_invalid") != std::string::npos);

  const ApiError missing = parse_error(Endpoint::kChatCompletions, R"({"model":"m"})");
  CHECK(missing.status == 400);
  CHECK(missing.message.find("'messages'") != std::string::npos);
  CHECK(missing.message.find("Field required") != std::string::npos);

  CHECK(parse_error(Endpoint::kCompletions, "[1,2]").status == 400);
  CHECK(parse_error(Endpoint::kCompletions, R"({"prompt":"x","model":5})").status == 400);
  CHECK(parse_error(Endpoint::kCompletions, R"({"prompt":"x","stream":"yes"})").status == 400);
  CHECK(parse_error(Endpoint::kCompletions, R"({"prompt":"x","max_tokens":1.5})").status == 400);
  CHECK(parse_error(Endpoint::kChatCompletions, R"({"messages":[{"content":"x"}]})").status == 400);
  const ApiError options_without_stream = parse_error(
      Endpoint::kCompletions, R"({"prompt":"x","stream_options":{"include_usage":true}})");
  CHECK(options_without_stream.message == "Stream options can only be defined when `stream=True`.");
}

TEST_CASE("request: a repeated key takes its last value") {
  CHECK(parse_ok(Endpoint::kCompletions, R"({"prompt":"x","model":"a","model":"b"})").model == "b");
}

TEST_CASE("plan: model resolution over served names and adapters") {
  const ModelCatalog catalog(catalog_options());
  const auto plan_for = [&](const std::string& model) {
    OpenAiRequest r;
    r.model = model;
    r.prompt_tokens = 5;
    return plan_generation(r, catalog, 4096, 16);
  };
  const auto base = plan_for("alias");
  REQUIRE(std::holds_alternative<GenerationPlan>(base));
  CHECK(std::get<GenerationPlan>(base).model->name == "alias");
  CHECK(std::get<GenerationPlan>(base).spec.adapter.empty());

  const auto adapter = plan_for("sql");
  REQUIRE(std::holds_alternative<GenerationPlan>(adapter));
  CHECK(std::get<GenerationPlan>(adapter).spec.adapter == "sql");

  const auto defaulted = plan_for("");
  REQUIRE(std::holds_alternative<GenerationPlan>(defaulted));
  CHECK(std::get<GenerationPlan>(defaulted).model->name == "base");

  const auto missing = plan_for("org/base");  // --model is not servable when names are given
  REQUIRE(std::holds_alternative<ApiError>(missing));
  CHECK(std::get<ApiError>(missing).status == 404);
  CHECK(std::get<ApiError>(missing).type == "NotFoundError");
  CHECK(std::get<ApiError>(missing).message == "The model `org/base` does not exist.");
}

TEST_CASE("plan: output length and finish reason") {
  const ModelCatalog catalog(catalog_options());
  const auto plan_with = [&](std::optional<int64_t> max_tokens, bool ignore_eos,
                             int64_t prompt = 10) {
    OpenAiRequest r;
    r.prompt_tokens = prompt;
    r.max_tokens = max_tokens;
    r.ignore_eos = ignore_eos;
    auto result = plan_generation(r, catalog, 100, 16);
    REQUIRE(std::holds_alternative<GenerationPlan>(result));
    return std::get<GenerationPlan>(result).spec;
  };
  CHECK(plan_with(std::nullopt, false).output_tokens == 16);
  CHECK(plan_with(std::nullopt, false).finish_reason == FinishReason::kStop);
  CHECK(plan_with(5, false).output_tokens == 5);
  CHECK(plan_with(5, false).finish_reason == FinishReason::kLength);
  CHECK(plan_with(16, false).finish_reason == FinishReason::kLength);
  CHECK(plan_with(50, false).output_tokens == 16);
  CHECK(plan_with(50, false).finish_reason == FinishReason::kStop);
  CHECK(plan_with(50, true).output_tokens == 50);
  CHECK(plan_with(50, true).finish_reason == FinishReason::kLength);
  // Without max_tokens the context left over is the limit.
  CHECK(plan_with(std::nullopt, false, 90).output_tokens == 10);
  CHECK(plan_with(std::nullopt, false, 90).finish_reason == FinishReason::kLength);
}

TEST_CASE("plan: context length and max_tokens errors worded as vLLM") {
  const ModelCatalog catalog(catalog_options());
  OpenAiRequest r;
  r.prompt_tokens = 100;
  auto too_long = plan_generation(r, catalog, 100, 16);
  REQUIRE(std::holds_alternative<ApiError>(too_long));
  CHECK(std::get<ApiError>(too_long).status == 400);
  CHECK(std::get<ApiError>(too_long).message.starts_with(
      "This model's maximum context length is 100 tokens. However, you requested 100 tokens"));

  r.prompt_tokens = 60;
  r.max_tokens = 41;
  auto over = plan_generation(r, catalog, 100, 16);
  REQUIRE(std::holds_alternative<ApiError>(over));
  CHECK(std::get<ApiError>(over).message.find("(60 in the messages, 41 in the completion)") !=
        std::string::npos);

  r.max_tokens = 0;
  auto zero = plan_generation(r, catalog, 100, 16);
  REQUIRE(std::holds_alternative<ApiError>(zero));
  CHECK(std::get<ApiError>(zero).message == "max_tokens must be at least 1, got 0.");

  OpenAiRequest empty;
  auto no_prompt = plan_generation(empty, catalog, 100, 16);
  REQUIRE(std::holds_alternative<ApiError>(no_prompt));
  CHECK(std::get<ApiError>(no_prompt).status == 400);
}

TEST_CASE("errors: types by status") {
  CHECK(error_for_status(500, "x").type == "InternalServerError");
  CHECK(error_for_status(503, "x").type == "ServiceUnavailableError");
  CHECK(error_for_status(429, "x").type == "RateLimitError");
  CHECK(error_for_status(418, "x").type == "BadRequestError");
  CHECK(error_for_status(599, "x").type == "InternalServerError");
}

}  // namespace infergate::sim
