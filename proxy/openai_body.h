#pragma once
// Sans-I/O handling of OpenAI-style JSON bodies: what the gateway reads from a request
// (model, stream, prompt span) and the in-place model rewrites in both directions, plus usage
// extraction. Network-facing: every function tolerates arbitrary bytes (fuzzed).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace infergate::proxy {

// Bytes of slack simdjson needs after the input; callers reserve body.size() + kJsonPadding.
inline constexpr size_t kJsonPadding = 64;

struct RequestInfo {
  bool ok = false;
  // When !ok: a 400 invalid_request_error message and the offending param ("model", ...),
  // param empty when it is the body as a whole.
  std::string error;
  std::string error_param;

  std::string model;        // unescaped value of the top-level "model"
  size_t model_offset = 0;  // raw JSON token of that value in the body, quotes included
  size_t model_length = 0;
  bool stream = false;         // top-level "stream": true
  bool include_usage = false;  // "stream_options": {"include_usage": true}
  // Raw JSON span (offset/length into the body) of what the prompt is for this path:
  // "prompt" (completions), "messages" (chat), "input" (embeddings, responses); 0/0 if none.
  size_t prompt_offset = 0;
  size_t prompt_length = 0;
  // Raw JSON span of a top-level "tools" (chat), 0/0 if none.
  size_t tools_offset = 0;
  size_t tools_length = 0;
};

// Which top-level field a routed path requires; empty for "any POST with a model".
std::string_view required_field_for_path(std::string_view path);

// Parses `body` (must have capacity() >= size() + kJsonPadding; the function reserves it if
// not). Checks: valid JSON object, "model" present and a string, the path's required field
// present. Never throws.
RequestInfo parse_request(std::string& body, std::string_view path);

// Replaces the model token found by parse_request with `new_model` JSON-encoded (escapes
// quotes, backslashes and control characters). Offsets in `info` are invalid afterwards.
void rewrite_request_model(std::string& body, const RequestInfo& info, std::string_view new_model);

struct Usage {
  int64_t prompt_tokens = -1;  // -1: not seen
  int64_t completion_tokens = -1;
  bool seen() const { return prompt_tokens >= 0 || completion_tokens >= 0; }
};

// Non-streamed response body: if it is a JSON object with a top-level string "model",
// replaces that value with `client_model` (when non-empty and different); reads a top-level
// "usage" object if present into *usage. Bodies that are not JSON objects are left unchanged.
// Returns true if the body was modified.
bool rewrite_response_body(std::string& body, std::string_view client_model, Usage* usage);

// Incremental SSE handling for streamed responses: splits the byte stream into events
// (terminated by a blank line: "\n\n", "\r\n\r\n" or "\r\r"), rewrites the "model" of each
// `data: {json}` event back to the client's name and reads "usage" where present. Events are
// emitted as soon as they are complete; bytes of an incomplete event are held (bounded by
// max_event_bytes: past that the held bytes are passed through unmodified, so a stream that
// never delimits events still flows).
class SseRewriter {
 public:
  explicit SseRewriter(std::string client_model, size_t max_event_bytes = 1 << 20);

  // Appends the bytes ready to send (complete events, rewritten) to `out`.
  void feed(std::string_view bytes, std::string& out);
  // End of stream: appends whatever is held, unmodified.
  void finish(std::string& out);

  const Usage& usage() const { return usage_; }
  uint64_t events() const { return events_; }
  bool saw_done() const { return saw_done_; }  // "data: [DONE]" seen

 private:
  void emit_event(std::string_view event, std::string& out);

  std::string client_model_;
  size_t max_event_bytes_;
  std::string pending_;
  size_t scan_from_ = 0;
  Usage usage_;
  uint64_t events_ = 0;
  bool saw_done_ = false;
  // Scanner state carried between feed() calls, so held bytes are never rescanned.
  bool at_line_start_ = true;  // no byte of the current line seen yet
  bool swallow_lf_ = false;    // last event ended in a CR at the end of a feed: a '\n' next
                               // is the rest of that CRLF, passed through
  bool passthrough_ = false;   // current event outgrew max_event_bytes_: flowing unmodified
  std::string scratch_;        // padded copy of one event's JSON for simdjson
  std::vector<std::pair<size_t, size_t>> spans_;  // "model" value spans in scratch_
};

}  // namespace infergate::proxy
