#pragma once
// The JSON and SSE shapes of vLLM's OpenAI server, field for field and in vLLM's key order (see
// /work/shared/fixtures: vllm-completion*.json, vllm-chat-*.{json,sse}). Streaming functions append
// one whole SSE event ("data: {...}\n\n") to a caller-owned buffer, so the per-token path reuses
// one string and does not allocate.

#include "sim/engine.h"
#include "sim/id_generator.h"
#include "sim/model_catalog.h"
#include "sim/openai_request.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace infergate::sim {

// Identity shared by every chunk of one response.
struct ResponseMeta {
  std::string_view id;     // "cmpl-...", "chatcmpl-...", "embd-..."
  int64_t created = 0;     // unix seconds
  std::string_view model;  // the name the client asked for
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // Prompt tokens served by the prefix cache, reported as prompt_tokens_details.cached_tokens.
  // vLLM reports it only with --enable-prompt-tokens-details and only when non-zero; callers pass
  // nullopt otherwise.
  std::optional<int64_t> cached_tokens;
};

// Number of float components in a simulated embedding.
inline constexpr size_t kEmbeddingDimensions = 16;

std::string_view finish_reason_name(FinishReason reason);

// The text of output token `tokens_done` (1-based) of a request: " tok0", " tok1", ... The
// end-of-sequence token that ends a "stop" request decodes to "" as in vLLM; callers pass
// is_eos for it.
struct TokenText {
  char data[24];
  size_t size = 0;
  std::string_view view() const { return {data, size}; }
};
TokenText token_text(int64_t tokens_done, bool is_eos);

// Whole generated text of a request of `output_tokens` tokens (non-streaming responses).
std::string generated_text(int64_t output_tokens, FinishReason reason);

// --- Streaming (SSE events) ---
// /v1/completions chunk; `finish` set on the last token's chunk.
void append_completion_event(std::string& out, const ResponseMeta& meta, std::string_view text,
                             const FinishReason* finish);
// /v1/chat/completions: the first chunk, {"role":"assistant","content":""}.
void append_chat_role_event(std::string& out, const ResponseMeta& meta);
void append_chat_event(std::string& out, const ResponseMeta& meta, std::string_view content,
                       const FinishReason* finish);
// The stream_options.include_usage chunk: "choices":[] and the usage object.
void append_usage_event(std::string& out, const ResponseMeta& meta, Endpoint endpoint,
                        const Usage& usage);
void append_done_event(std::string& out);

// --- Whole bodies ---
std::string completion_body(const ResponseMeta& meta, std::string_view text, FinishReason finish,
                            const Usage& usage);
std::string chat_body(const ResponseMeta& meta, std::string_view content, FinishReason finish,
                      const Usage& usage);
// One deterministic unit vector per input hash.
std::string embeddings_body(const ResponseMeta& meta, std::span<const uint64_t> input_hashes,
                            int64_t prompt_tokens);
// GET /v1/models. `ids` makes the "modelperm-..." ids (fresh per call, as vLLM).
std::string models_body(const ModelCatalog& catalog, int64_t created, int64_t max_model_len,
                        IdGenerator& ids);
std::string error_body(const ApiError& error);
// FastAPI's own errors (unknown path, wrong method): {"detail":"Not Found"}.
std::string detail_body(std::string_view detail);

}  // namespace infergate::sim
