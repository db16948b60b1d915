#include "sim/openai_format.h"

#include "sim/json_text.h"

#include <charconv>
#include <cmath>

namespace infergate::sim {
namespace {

void append_head(std::string& out, const ResponseMeta& meta, std::string_view object) {
  out.append("{\"id\":");
  append_json_string(out, meta.id);
  out.append(",\"object\":\"");
  out.append(object);
  out.append("\",\"created\":");
  append_int(out, meta.created);
  out.append(",\"model\":");
  append_json_string(out, meta.model);
}

void append_finish(std::string& out, const FinishReason* finish) {
  if (finish == nullptr) {
    out.append("null");
  } else {
    out.push_back('"');
    out.append(finish_reason_name(*finish));
    out.push_back('"');
  }
}

// vLLM's UsageInfo. prompt_tokens_details is {"cached_tokens":N} when there are cached tokens to
// report; otherwise `with_details` writes it as null, which the streamed usage chunk drops (it is
// serialized with exclude_none).
void append_usage(std::string& out, const Usage& usage, bool with_details) {
  out.append("{\"prompt_tokens\":");
  append_int(out, usage.prompt_tokens);
  out.append(",\"total_tokens\":");
  append_int(out, usage.prompt_tokens + usage.completion_tokens);
  out.append(",\"completion_tokens\":");
  append_int(out, usage.completion_tokens);
  if (usage.cached_tokens) {
    out.append(",\"prompt_tokens_details\":{\"cached_tokens\":");
    append_int(out, *usage.cached_tokens);
    out.push_back('}');
  } else if (with_details) {
    out.append(",\"prompt_tokens_details\":null");
  }
  out.push_back('}');
}

void begin_event(std::string& out) {
  out.append("data: ");
}
void end_event(std::string& out) {
  out.append("\n\n");
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::string_view finish_reason_name(FinishReason reason) {
  return reason == FinishReason::kLength ? "length" : "stop";
}

TokenText token_text(int64_t tokens_done, bool is_eos) {
  TokenText text;
  if (is_eos) return text;
  constexpr std::string_view kPrefix = " tok";
  kPrefix.copy(text.data, kPrefix.size());
  const auto [end, ec] =
      std::to_chars(text.data + kPrefix.size(), text.data + sizeof(text.data), tokens_done - 1);
  (void)ec;  // 24 bytes hold any int64
  text.size = static_cast<size_t>(end - text.data);
  return text;
}

std::string generated_text(int64_t output_tokens, FinishReason reason) {
  std::string text;
  const int64_t words = reason == FinishReason::kStop ? output_tokens - 1 : output_tokens;
  for (int64_t i = 1; i <= words; ++i) text.append(token_text(i, false).view());
  return text;
}

void append_completion_event(std::string& out, const ResponseMeta& meta, std::string_view text,
                             const FinishReason* finish) {
  begin_event(out);
  append_head(out, meta, "text_completion");
  out.append(",\"choices\":[{\"index\":0,\"text\":");
  append_json_string(out, text);
  out.append(",\"logprobs\":null,\"finish_reason\":");
  append_finish(out, finish);
  out.append(",\"stop_reason\":null}],\"usage\":null}");
  end_event(out);
}

void append_chat_role_event(std::string& out, const ResponseMeta& meta) {
  begin_event(out);
  append_head(out, meta, "chat.completion.chunk");
  out.append(
      ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
      "\"logprobs\":null,\"finish_reason\":null}]}");
  end_event(out);
}

void append_chat_event(std::string& out, const ResponseMeta& meta, std::string_view content,
                       const FinishReason* finish) {
  begin_event(out);
  append_head(out, meta, "chat.completion.chunk");
  out.append(",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
  append_json_string(out, content);
  out.append("},\"logprobs\":null,\"finish_reason\":");
  append_finish(out, finish);
  // vLLM serializes chat chunks with exclude_unset: stop_reason only on the final one.
  if (finish != nullptr) out.append(",\"stop_reason\":null");
  out.append("}]}");
  end_event(out);
}

void append_usage_event(std::string& out, const ResponseMeta& meta, Endpoint endpoint,
                        const Usage& usage) {
  begin_event(out);
  append_head(out, meta,
              endpoint == Endpoint::kChatCompletions ? "chat.completion.chunk" : "text_completion");
  out.append(",\"choices\":[],\"usage\":");
  append_usage(out, usage, false);
  out.push_back('}');
  end_event(out);
}

void append_done_event(std::string& out) {
  out.append("data: [DONE]\n\n");
}

std::string completion_body(const ResponseMeta& meta, std::string_view text, FinishReason finish,
                            const Usage& usage) {
  std::string out;
  append_head(out, meta, "text_completion");
  out.append(",\"choices\":[{\"index\":0,\"text\":");
  append_json_string(out, text);
  out.append(",\"logprobs\":null,\"finish_reason\":");
  append_finish(out, &finish);
  out.append(",\"stop_reason\":null,\"prompt_logprobs\":null}],\"usage\":");
  append_usage(out, usage, true);
  out.push_back('}');
  return out;
}

std::string chat_body(const ResponseMeta& meta, std::string_view content, FinishReason finish,
                      const Usage& usage) {
  std::string out;
  append_head(out, meta, "chat.completion");
  out.append(
      ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
      "\"reasoning_content\":null,\"content\":");
  append_json_string(out, content);
  out.append(",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":");
  append_finish(out, &finish);
  out.append(",\"stop_reason\":null}],\"usage\":");
  append_usage(out, usage, true);
  out.append(",\"prompt_logprobs\":null,\"kv_transfer_params\":null}");
  return out;
}

std::string embeddings_body(const ResponseMeta& meta, std::span<const uint64_t> input_hashes,
                            int64_t prompt_tokens) {
  std::string out;
  append_head(out, meta, "list");
  out.append(",\"data\":[");
  for (size_t i = 0; i < input_hashes.size(); ++i) {
    if (i != 0) out.push_back(',');
    out.append("{\"index\":");
    append_int(out, static_cast<int64_t>(i));
    out.append(",\"object\":\"embedding\",\"embedding\":[");
    double values[kEmbeddingDimensions];
    double norm = 0.0;
    uint64_t state = input_hashes[i];
    for (double& v : values) {
      state = splitmix64(state);
      v = static_cast<double>(state >> 11) / static_cast<double>(1ULL << 53) * 2.0 - 1.0;
      norm += v * v;
    }
    norm = std::sqrt(norm);
    for (size_t k = 0; k < kEmbeddingDimensions; ++k) {
      if (k != 0) out.push_back(',');
      // Rounded to float32 like a model's output tensor.
      append_json_double(out, static_cast<double>(static_cast<float>(values[k] / norm)));
    }
    out.append("]}");
  }
  out.append("],\"usage\":");
  append_usage(out, {prompt_tokens, 0}, true);
  out.push_back('}');
  return out;
}

std::string models_body(const ModelCatalog& catalog, int64_t created, int64_t max_model_len,
                        IdGenerator& ids) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const ServedModel& model : catalog.models()) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"id\":");
    append_json_string(out, model.name);
    out.append(",\"object\":\"model\",\"created\":");
    append_int(out, created);
    out.append(",\"owned_by\":\"vllm\",\"root\":");
    append_json_string(out, model.root);
    out.append(",\"parent\":");
    if (model.is_adapter()) {
      append_json_string(out, model.parent);
      out.append(",\"max_model_len\":null");
    } else {
      out.append("null,\"max_model_len\":");
      append_int(out, max_model_len);
    }
    out.append(",\"permission\":[{\"id\":\"modelperm-");
    out.append(ids.next_hex());
    out.append("\",\"object\":\"model_permission\",\"created\":");
    append_int(out, created);
    out.append(
        ",\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,"
        "\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,"
        "\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}");
  }
  out.append("]}");
  return out;
}

std::string error_body(const ApiError& error) {
  std::string out = "{\"object\":\"error\",\"message\":";
  append_json_string(out, error.message);
  out.append(",\"type\":");
  append_json_string(out, error.type);
  out.append(",\"param\":null,\"code\":");
  append_int(out, error.status);
  out.push_back('}');
  return out;
}

std::string detail_body(std::string_view detail) {
  std::string out = "{\"detail\":";
  append_json_string(out, detail);
  out.push_back('}');
  return out;
}

}  // namespace infergate::sim
