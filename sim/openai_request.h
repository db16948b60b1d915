#pragma once
// Sans-I/O reading of OpenAI request bodies the way vLLM validates them, and the plan of what the
// simulator generates for a valid one. Network-facing: tolerates arbitrary bytes.

#include "sim/block_hasher.h"
#include "sim/engine.h"
#include "sim/model_catalog.h"

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace infergate::sim {

enum class Endpoint { kCompletions, kChatCompletions, kEmbeddings };

// vLLM's ErrorResponse: {"object":"error","message":..,"type":..,"param":null,"code":status}.
struct ApiError {
  int status = 400;
  std::string type;
  std::string message;
};

ApiError bad_request(std::string message);
ApiError model_not_found(std::string_view model);
// An error of any status with the type vLLM (or, failing that, the HTTP reason phrase) gives it:
// 400 BadRequestError, 404 NotFoundError, 500 InternalServerError, 503 ServiceUnavailableError..
ApiError error_for_status(int status, std::string message);

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // empty when the body has none
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
  std::optional<int64_t> max_tokens;   // chat: max_completion_tokens, else max_tokens
  int64_t prompt_tokens = 0;           // see tokenizer.h
  std::vector<uint64_t> input_hashes;  // embeddings: one per input, seeds its vector
  // The prompt's token stream (prompt_tokens tokens) as KV-block hashes for the prefix cache.
  BlockHasher prompt_hashes;
};

// `body` gets simdjson's padding reserved if its capacity lacks it (contents unchanged).
// `block_size` sizes prompt_hashes' blocks (the engine's --block-size).
std::variant<OpenAiRequest, ApiError> parse_openai_request(Endpoint endpoint, std::string& body,
                                                           simdjson::dom::parser& parser,
                                                           int64_t block_size = 16);

// What to generate for a valid request.
struct GenerationPlan {
  const ServedModel* model = nullptr;  // points into the catalog
  RequestSpec spec;
};

// Resolves the model (404 if unknown), checks max_tokens and the context length (400s worded as
// vLLM's), and sizes the output: n = min(default_output_tokens, limit), where limit is max_tokens
// or, without it, what is left of max_model_len; "ignore_eos" generates the whole limit.
// finish_reason is "length" when n reached the limit, else "stop". default_output_tokens is the
// length the request would stop at on its own (a draw from --output-len-dist).
std::variant<GenerationPlan, ApiError> plan_generation(const OpenAiRequest& request,
                                                       const ModelCatalog& catalog,
                                                       int64_t max_model_len,
                                                       int64_t default_output_tokens);

}  // namespace infergate::sim
