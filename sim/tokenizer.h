#pragma once
// The simulator's approximate tokenizer. It only has to be deterministic and roughly as long as a
// real BPE tokenization, so token counts (usage, max-model-len checks, KV-cache usage, metrics)
// look plausible:
//   - text: one token per started group of kBytesPerToken bytes, i.e. ceil(bytes / 4), the usual
//     "about four characters per token" of English text under GPT/Llama vocabularies;
//   - a prompt given as token ids (completions "prompt": [1, 2, 3]) counts one token per id;
//   - chat: each message costs its content tokens plus kChatTokensPerMessage for the template's
//     role markers, and the prompt ends with kChatReplyPrimerTokens for the assistant header, the
//     way a chat template wraps messages.

#include <cstdint>
#include <string_view>

namespace infergate::sim {

inline constexpr int64_t kBytesPerToken = 4;
inline constexpr int64_t kChatTokensPerMessage = 4;
inline constexpr int64_t kChatReplyPrimerTokens = 3;

constexpr int64_t count_text_tokens(std::string_view text) {
  return (static_cast<int64_t>(text.size()) + kBytesPerToken - 1) / kBytesPerToken;
}

}  // namespace infergate::sim
