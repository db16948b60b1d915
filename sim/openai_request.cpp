#include "sim/openai_request.h"

#include "sim/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>

namespace infergate::sim {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// FastAPI/pydantic's RequestValidationError text, which vLLM returns as the message.
ApiError validation_error(std::string_view type, std::string_view field, std::string_view msg) {
  return bad_request(
      fmt::format("[{{'type': '{}', 'loc': ('body', '{}'), 'msg': '{}'}}]", type, field, msg));
}

uint64_t fnv1a(std::string_view bytes, uint64_t hash = 14695981039346656037ULL) {
  return fnv1a64(bytes, hash);
}

// Token ids given as numbers, kept apart from the hashes of text tokens.
void add_token_ids(simdjson::dom::array values, BlockHasher* hasher) {
  for (element v : values) {
    const uint64_t id = v.type() == element_type::INT64
                            ? static_cast<uint64_t>(v.get_int64().value_unsafe())
                            : v.get_uint64().value_unsafe();
    hasher->add_token(mix64(id ^ 0x746f6b656e696473ULL));
  }
}

// Stand-ins for the chat template's special tokens: kChatTokensPerMessage per message (role
// markers, named after the role) and kChatReplyPrimerTokens to open the assistant's reply.
void add_template_tokens(std::string_view marker, int64_t count, BlockHasher* hasher) {
  const uint64_t base = fnv1a(marker, fnv1a("<|template|>"));
  for (int64_t i = 0; i < count; ++i) hasher->add_token(mix64(base + static_cast<uint64_t>(i)));
}

// Integral JSON number (an integral float too, as pydantic's lax mode takes 16.0 for an int),
// clamped to +-kIntegerClamp so that arithmetic on it cannot overflow.
constexpr int64_t kIntegerClamp = 1'000'000'000'000'000'000;

bool get_integer(element value, int64_t* out) {
  switch (value.type()) {
    case element_type::INT64:
      *out = std::clamp(value.get_int64().value_unsafe(), -kIntegerClamp, kIntegerClamp);
      return true;
    case element_type::UINT64:
      *out = kIntegerClamp;
      return true;
    case element_type::DOUBLE: {
      const double d = value.get_double().value_unsafe();
      if (std::floor(d) != d) return false;
      *out = static_cast<int64_t>(std::clamp(d, -1e18, 1e18));
      return true;
    }
    default:
      return false;
  }
}

// A token-id array: all integers.
bool is_token_array(array values) {
  for (element v : values) {
    if (v.type() != element_type::INT64 && v.type() != element_type::UINT64) return false;
  }
  return true;
}

uint64_t hash_tokens(array values) {
  uint64_t hash = fnv1a("tokens");
  for (element v : values) hash = fnv1a(simdjson::to_string(v), hash);
  return hash;
}

// "prompt" (completions) or "input" (embeddings): a string, strings, token ids, or token-id
// arrays. Several prompts are summed (the simulator answers them as one choice).
std::optional<ApiError> read_prompt(element value, std::string_view field, OpenAiRequest* request) {
  BlockHasher& hasher = request->prompt_hashes;
  if (value.type() == element_type::STRING) {
    const std::string_view text = value.get_string().value_unsafe();
    hasher.add_text(text);
    request->input_hashes.push_back(fnv1a(text));
    return std::nullopt;
  }
  const auto invalid = validation_error(
      "value_error", field,
      "Input should be a string, a list of strings, a list of token ids or a list of lists of "
      "token ids");
  if (value.type() != element_type::ARRAY) return invalid;
  const array items = value.get_array().value_unsafe();
  if (items.size() == 0) return validation_error("too_short", field, "List should not be empty");
  if (is_token_array(items)) {
    add_token_ids(items, &hasher);
    request->input_hashes.push_back(hash_tokens(items));
    return std::nullopt;
  }
  for (element item : items) {
    if (item.type() == element_type::STRING) {
      const std::string_view text = item.get_string().value_unsafe();
      hasher.add_text(text);
      request->input_hashes.push_back(fnv1a(text));
    } else if (item.type() == element_type::ARRAY && is_token_array(item.get_array())) {
      add_token_ids(item.get_array(), &hasher);
      request->input_hashes.push_back(hash_tokens(item.get_array()));
    } else {
      return invalid;
    }
  }
  return std::nullopt;
}

std::optional<ApiError> read_messages(element value, OpenAiRequest* request) {
  if (value.type() != element_type::ARRAY) {
    return validation_error("list_type", "messages", "Input should be a valid list");
  }
  BlockHasher& hasher = request->prompt_hashes;
  for (element message : value.get_array()) {
    if (message.type() != element_type::OBJECT) {
      return validation_error("model_attributes_type", "messages",
                              "Input should be a valid dictionary or object");
    }
    element role;
    if (message["role"].get(role) != simdjson::SUCCESS || role.type() != element_type::STRING) {
      return validation_error("missing", "messages.role", "Field required");
    }
    add_template_tokens(role.get_string().value_unsafe(), kChatTokensPerMessage, &hasher);
    element content;
    if (message["content"].get(content) != simdjson::SUCCESS) continue;
    if (content.type() == element_type::STRING) {
      hasher.add_text(content.get_string().value_unsafe());
    } else if (content.type() == element_type::ARRAY) {
      // Content parts: text parts count; other parts (images, audio) are not simulated.
      for (element part : content.get_array()) {
        std::string_view text;
        if (part.type() == element_type::OBJECT && part["text"].get(text) == simdjson::SUCCESS) {
          hasher.add_text(text);
        }
      }
    } else if (content.type() != element_type::NULL_VALUE) {
      return validation_error("string_type", "messages.content", "Input should be a valid string");
    }
  }
  add_template_tokens("assistant-reply", kChatReplyPrimerTokens, &hasher);
  return std::nullopt;
}

}  // namespace

ApiError bad_request(std::string message) {
  return {400, "BadRequestError", std::move(message)};
}

ApiError model_not_found(std::string_view model) {
  return {404, "NotFoundError", fmt::format("The model `{}` does not exist.", model)};
}

ApiError error_for_status(int status, std::string message) {
  std::string_view type;
  switch (status) {
    case 400:
      type = "BadRequestError";
      break;
    case 401:
      type = "AuthenticationError";
      break;
    case 403:
      type = "PermissionDeniedError";
      break;
    case 404:
      type = "NotFoundError";
      break;
    case 408:
      type = "RequestTimeoutError";
      break;
    case 413:
      type = "RequestEntityTooLargeError";
      break;
    case 422:
      type = "UnprocessableEntityError";
      break;
    case 429:
      type = "RateLimitError";
      break;
    case 500:
      type = "InternalServerError";
      break;
    case 501:
      type = "NotImplementedError";
      break;
    case 502:
      type = "BadGatewayError";
      break;
    case 503:
      type = "ServiceUnavailableError";
      break;
    case 504:
      type = "GatewayTimeoutError";
      break;
    default:
      type = status < 500 ? "BadRequestError" : "InternalServerError";
  }
  return {status, std::string(type), std::move(message)};
}

std::variant<OpenAiRequest, ApiError> parse_openai_request(Endpoint endpoint, std::string& body,
                                                           simdjson::dom::parser& parser,
                                                           int64_t block_size) {
  if (body.capacity() < body.size() + simdjson::SIMDJSON_PADDING) {
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  }
  element doc;
  if (parser.parse(body.data(), body.size(), false).get(doc) != simdjson::SUCCESS) {
    return bad_request(
        "[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error'}]");
  }
  if (doc.type() != element_type::OBJECT) {
    return validation_error("model_attributes_type", "body",
                            "Input should be a valid dictionary or object to extract fields from");
  }

  OpenAiRequest request;
  request.endpoint = endpoint;
  request.prompt_hashes = BlockHasher(block_size);
  const std::string_view prompt_field = endpoint == Endpoint::kCompletions       ? "prompt"
                                        : endpoint == Endpoint::kChatCompletions ? "messages"
                                                                                 : "input";
  std::optional<element> prompt;
  // An element and a flag rather than std::optional<element>: GCC's -O3 flow analysis reports
  // the optional's payload as maybe-uninitialized.
  element stream_options;
  bool has_stream_options = false;
  std::optional<int64_t> max_tokens;
  std::optional<int64_t> max_completion_tokens;
  // Field by field so that a repeated key takes its last value, as Python's json does.
  const object fields = doc.get_object().value_unsafe();
  for (const auto field : fields) {
    const std::string_view key = field.key;
    const element value = field.value;
    if (key == "model") {
      if (value.type() == element_type::NULL_VALUE) {
        request.model.clear();
      } else if (value.type() == element_type::STRING) {
        request.model = std::string(value.get_string().value_unsafe());
      } else {
        return validation_error("string_type", "model", "Input should be a valid string");
      }
    } else if (key == prompt_field) {
      prompt = value;
    } else if (key == "stream" || key == "ignore_eos") {
      bool flag = false;
      if (value.type() == element_type::BOOL) {
        flag = value.get_bool().value_unsafe();
      } else if (value.type() != element_type::NULL_VALUE) {
        return validation_error("bool_type", key, "Input should be a valid boolean");
      }
      (key == "stream" ? request.stream : request.ignore_eos) = flag;
    } else if (key == "stream_options") {
      if (value.type() == element_type::NULL_VALUE) {
        has_stream_options = false;
      } else if (value.type() == element_type::OBJECT) {
        stream_options = value;
        has_stream_options = true;
      } else {
        return validation_error("model_type", key, "Input should be a valid dictionary");
      }
    } else if (key == "max_tokens" || key == "max_completion_tokens") {
      auto& target = key == "max_tokens" ? max_tokens : max_completion_tokens;
      int64_t n = 0;
      if (value.type() == element_type::NULL_VALUE) {
        target.reset();
      } else if (get_integer(value, &n)) {
        target = n;
      } else {
        return validation_error("int_type", key, "Input should be a valid integer");
      }
    }
  }

  if (!prompt) return validation_error("missing", prompt_field, "Field required");
  std::optional<ApiError> error = endpoint == Endpoint::kChatCompletions
                                      ? read_messages(*prompt, &request)
                                      : read_prompt(*prompt, prompt_field, &request);
  if (error) return *std::move(error);
  request.prompt_tokens = request.prompt_hashes.tokens();

  if (has_stream_options) {
    if (!request.stream) {
      return bad_request("Stream options can only be defined when `stream=True`.");
    }
    bool include_usage = false;
    if (stream_options["include_usage"].get(include_usage) == simdjson::SUCCESS) {
      request.include_usage = include_usage;
    }
  }
  request.max_tokens = endpoint == Endpoint::kChatCompletions && max_completion_tokens
                           ? max_completion_tokens
                           : max_tokens;
  if (endpoint == Endpoint::kEmbeddings) request.stream = false;
  return request;
}

std::variant<GenerationPlan, ApiError> plan_generation(const OpenAiRequest& request,
                                                       const ModelCatalog& catalog,
                                                       int64_t max_model_len,
                                                       int64_t default_output_tokens) {
  GenerationPlan plan;
  plan.model = catalog.resolve(request.model);
  if (plan.model == nullptr) return model_not_found(request.model);
  if (plan.model->is_adapter()) plan.spec.adapter = plan.model->name;
  plan.spec.prompt_tokens = request.prompt_tokens;
  plan.spec.prompt_hashes = request.prompt_hashes;

  const int64_t prompt = request.prompt_tokens;
  if (request.endpoint == Endpoint::kEmbeddings) {
    if (prompt > max_model_len) {
      return bad_request(fmt::format(
          "This model's maximum context length is {} tokens. However, you requested {} tokens "
          "in the input for embedding generation. Please reduce the length of the input.",
          max_model_len, prompt));
    }
    plan.spec.output_tokens = 0;
    return plan;
  }
  if (prompt == 0) return bad_request("The decoder prompt cannot be empty");
  if (request.max_tokens && *request.max_tokens < 1) {
    return bad_request(fmt::format("max_tokens must be at least 1, got {}.", *request.max_tokens));
  }
  // vLLM's OpenAIServing._validate_input wording.
  if (!request.max_tokens && prompt >= max_model_len) {
    return bad_request(fmt::format(
        "This model's maximum context length is {} tokens. However, you requested {} tokens in "
        "the messages, Please reduce the length of the messages.",
        max_model_len, prompt));
  }
  if (request.max_tokens && *request.max_tokens > max_model_len - prompt) {
    return bad_request(fmt::format(
        "This model's maximum context length is {} tokens. However, you requested {} tokens ({} "
        "in the messages, {} in the completion). Please reduce the length of the messages or "
        "completion.",
        max_model_len, *request.max_tokens + prompt, prompt, *request.max_tokens));
  }
  const int64_t limit = request.max_tokens.value_or(max_model_len - prompt);
  const int64_t n = request.ignore_eos ? limit : std::min(default_output_tokens, limit);
  plan.spec.output_tokens = n;
  plan.spec.finish_reason = n == limit ? FinishReason::kLength : FinishReason::kStop;
  return plan;
}

}  // namespace infergate::sim
