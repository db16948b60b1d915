#include "proxy/openai_body.h"

#include <simdjson.h>

#include <cstring>
#include <memory>
#include <optional>

namespace infergate::proxy {
namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;

static_assert(kJsonPadding >= simdjson::SIMDJSON_PADDING);

// Nesting deeper than this is rejected as invalid JSON. It bounds the recursion of validate()
// and keeps simdjson's own depth (ours + 1) below the parser's max_depth, which on-demand
// 3.0.1 only asserts in debug builds.
constexpr size_t kMaxDepth = 1000;
static_assert(kMaxDepth + 2 < simdjson::DEFAULT_MAX_DEPTH);
// Bodies up to this size reuse a per-thread parser; bigger ones get a parser of their own so a
// thread does not keep ~5x the largest body it ever saw allocated.
constexpr size_t kThreadParserMaxBytes = 1u << 20;

bool is_json_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// simdjson's raw tokens run up to the next token, trailing whitespace included.
std::string_view trim_trailing_ws(std::string_view s) {
  while (!s.empty() && is_json_ws(s.back())) s.remove_suffix(1);
  return s;
}

// Capacity for simdjson's padding, with the padding bytes initialised (simdjson reads them).
void ensure_padding(std::string& s) {
  const size_t n = s.size();
  if (s.capacity() < n + kJsonPadding) s.reserve(n + kJsonPadding);
  s.append(kJsonPadding, '\0');
  s.resize(n);
}

// A parser for a document of `size` bytes: the thread's own one for ordinary sizes, else a
// fresh one owned by `holder`. Callers finish with the document before returning.
od::parser& parser_for(size_t size, std::unique_ptr<od::parser>& holder) {
  if (size <= kThreadParserMaxBytes) {
    thread_local od::parser parser;
    return parser;
  }
  holder = std::make_unique<od::parser>();
  return *holder;
}

// JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  (no range limit, like
// Python's json: upstreams accept big integers, so the gateway must not reject them).
bool valid_json_number(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  auto digit = [&](size_t k) { return k < n && s[k] >= '0' && s[k] <= '9'; };
  if (i < n && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == n;
}

// Walks a value completely so that bytes the gateway itself does not need are still proven to
// be JSON (on-demand skipping only balances brackets). Numbers, booleans and nulls are checked
// without being consumed; the enclosing iteration skips them.
error_code validate(od::value& v, size_t depth) {
  od::json_type type;
  if (auto err = v.type().get(type)) return err;
  switch (type) {
    case od::json_type::object: {
      if (depth >= kMaxDepth) return simdjson::DEPTH_ERROR;
      od::object obj;
      if (auto err = v.get_object().get(obj)) return err;
      for (auto field : obj) {
        std::string_view key;
        if (auto err = field.unescaped_key().get(key)) return err;
        od::value child;
        if (auto err = field.value().get(child)) return err;
        if (auto err = validate(child, depth + 1)) return err;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      if (depth >= kMaxDepth) return simdjson::DEPTH_ERROR;
      od::array arr;
      if (auto err = v.get_array().get(arr)) return err;
      for (auto element : arr) {
        od::value child;
        if (auto err = std::move(element).get(child)) return err;
        if (auto err = validate(child, depth + 1)) return err;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;  // unescaping proves the escapes valid
      return v.get_string().get(s);
    }
    case od::json_type::number:
      return valid_json_number(trim_trailing_ws(v.raw_json_token())) ? simdjson::SUCCESS
                                                                     : simdjson::NUMBER_ERROR;
    case od::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null;
      if (auto err = v.is_null().get(is_null)) return err;
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::TAPE_ERROR;
}

// Whether a document whose root is not an object is at least JSON, so the client is told
// "not valid JSON" or "not a JSON object" accurately.
error_code validate_non_object_root(od::document& doc, od::json_type type, const char* end) {
  if (type == od::json_type::array) {
    od::array arr;
    if (auto err = doc.get_array().get(arr)) return err;
    for (auto element : arr) {
      od::value child;
      if (auto err = std::move(element).get(child)) return err;
      if (auto err = validate(child, 1)) return err;
    }
    const char* where;
    return doc.current_location().get(where) == simdjson::OUT_OF_BOUNDS
               ? simdjson::SUCCESS
               : simdjson::TRAILING_CONTENT;
  }
  // A scalar: it must be the only token.
  std::string_view token;
  if (auto err = doc.raw_json_token().get(token)) return err;
  token = trim_trailing_ws(token);
  if (token.data() + token.size() != end) return simdjson::TRAILING_CONTENT;
  switch (type) {
    case od::json_type::string: {
      std::string_view s;
      return doc.get_string().get(s);
    }
    case od::json_type::number:
      return valid_json_number(token) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
    case od::json_type::boolean:
      return token == "true" || token == "false" ? simdjson::SUCCESS : simdjson::T_ATOM_ERROR;
    case od::json_type::null:
      return token == "null" ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    default:
      return simdjson::TAPE_ERROR;
  }
}

// True once the top-level value has been consumed and nothing but whitespace follows.
bool at_document_end(od::document& doc) {
  const char* where;
  return doc.current_location().get(where) == simdjson::OUT_OF_BOUNDS;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);  // UTF-8 passes through as is
    }
  }
  out.push_back('"');
}

RequestInfo request_error(std::string message, std::string param) {
  RequestInfo info;
  info.error = std::move(message);
  info.error_param = std::move(param);
  return info;
}

RequestInfo invalid_json(error_code err) {
  return request_error(
      std::string("request body is not valid JSON: ") + simdjson::error_message(err), "");
}

// Reads the token counts of a "usage" object; other members and non-integer values are
// skipped (the object is still walked to its end by the caller's iteration).
error_code read_usage(od::value& v, Usage& usage) {
  od::object obj;
  if (auto err = v.get_object().get(obj)) return err;
  for (auto field : obj) {
    std::string_view key;
    if (auto err = field.unescaped_key().get(key)) return err;
    int64_t* slot = key == "prompt_tokens"       ? &usage.prompt_tokens
                    : key == "completion_tokens" ? &usage.completion_tokens
                                                 : nullptr;
    if (slot == nullptr) continue;
    od::value child;
    if (auto err = field.value().get(child)) return err;
    od::json_type type;
    if (auto err = child.type().get(type)) return err;
    if (type != od::json_type::number) continue;
    int64_t n;
    if (child.get_int64().get(n) == simdjson::SUCCESS && n >= 0) *slot = n;
  }
  return simdjson::SUCCESS;
}

// The response-side scan shared by rewrite_response_body and SseRewriter: `json` (padded to
// `capacity`) must be one JSON object. Collects the spans of top-level string "model" values
// that differ from client_model (all of them if the key repeats: whichever one the client's
// JSON library keeps, it must see its own name) and the numbers of a top-level "usage" object.
// Returns false, with spans/usage unspecified, if it is not a JSON object.
bool scan_response(const char* json, size_t size, size_t capacity, std::string_view client_model,
                   std::vector<std::pair<size_t, size_t>>& spans, Usage& usage) {
  spans.clear();
  std::unique_ptr<od::parser> holder;
  od::parser& parser = parser_for(size, holder);
  od::document doc;
  if (parser.iterate(simdjson::padded_string_view(json, size, capacity)).get(doc)) return false;
  od::json_type type;
  if (doc.type().get(type) || type != od::json_type::object) return false;
  od::object obj;
  if (doc.get_object().get(obj)) return false;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return false;
    const bool is_model = key == "model";
    if (!is_model && key != "usage") continue;
    od::value v;
    if (field.value().get(v)) return false;
    if (v.type().get(type)) return false;
    if (is_model && type == od::json_type::string) {
      const std::string_view token = trim_trailing_ws(v.raw_json_token());
      std::string_view current;
      if (v.get_string().get(current)) return false;
      if (!client_model.empty() && current != client_model)
        spans.emplace_back(static_cast<size_t>(token.data() - json), token.size());
    } else if (!is_model && type == od::json_type::object) {
      if (read_usage(v, usage)) return false;
    }
  }
  return at_document_end(doc);
}

// Appends `json` to out with every span replaced by client_model (spans ascending).
void splice_model(std::string& out, std::string_view json,
                  const std::vector<std::pair<size_t, size_t>>& spans,
                  std::string_view client_model) {
  size_t at = 0;
  for (const auto& [offset, length] : spans) {
    out.append(json.substr(at, offset - at));
    append_json_string(out, client_model);
    at = offset + length;
  }
  out.append(json.substr(at));
}

void merge_usage(Usage& into, const Usage& seen) {
  if (seen.prompt_tokens >= 0) into.prompt_tokens = seen.prompt_tokens;
  if (seen.completion_tokens >= 0) into.completion_tokens = seen.completion_tokens;
}

size_t find_byte(const char* p, size_t from, size_t to, char c) {
  if (from >= to) return to;
  const void* hit = std::memchr(p + from, c, to - from);
  return hit == nullptr ? to : static_cast<size_t>(static_cast<const char*>(hit) - p);
}

}  // namespace

std::string_view required_field_for_path(std::string_view path) {
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (path == "/v1/chat/completions") return "messages";
  if (path == "/v1/completions") return "prompt";
  if (path == "/v1/embeddings" || path == "/v1/responses") return "input";
  return {};
}

RequestInfo parse_request(std::string& body, std::string_view path) {
  ensure_padding(body);
  std::unique_ptr<od::parser> holder;
  od::parser& parser = parser_for(body.size(), holder);
  od::document doc;
  if (auto err =
          parser.iterate(simdjson::padded_string_view(body.data(), body.size(), body.capacity()))
              .get(doc))
    return invalid_json(err);
  od::json_type type;
  if (auto err = doc.type().get(type)) return invalid_json(err);
  if (type != od::json_type::object) {
    const std::string_view text = trim_trailing_ws(body);
    if (auto err = validate_non_object_root(doc, type, text.data() + text.size()))
      return invalid_json(err);
    return request_error("request body is not a JSON object", "");
  }
  od::object obj;
  if (auto err = doc.get_object().get(obj)) return invalid_json(err);

  const std::string_view required = required_field_for_path(path);
  const char* const base = body.data();
  RequestInfo info;
  bool have_model = false, model_is_string = false, have_stream = false, stream_bad = false;
  bool have_stream_options = false, have_required = required.empty();
  // A second top-level "model" is rejected: Python servers keep the last one, so the gateway
  // would route (and prioritise) by one name while the server runs another.
  bool duplicate_model = false;

  for (auto field : obj) {
    std::string_view key;
    if (auto err = field.unescaped_key().get(key)) return invalid_json(err);
    od::value v;
    if (auto err = field.value().get(v)) return invalid_json(err);
    if (auto err = v.type().get(type)) return invalid_json(err);

    if (key == "model" && have_model) duplicate_model = true;
    if (key == "model" && !have_model) {
      have_model = true;
      if (type == od::json_type::string) {
        const std::string_view token = trim_trailing_ws(v.raw_json_token());
        std::string_view model;
        if (auto err = v.get_string().get(model)) return invalid_json(err);
        model_is_string = true;
        info.model.assign(model);
        info.model_offset = static_cast<size_t>(token.data() - base);
        info.model_length = token.size();
        continue;
      }
    } else if (key == "stream" && !have_stream) {
      have_stream = true;
      if (type == od::json_type::boolean) {
        if (auto err = v.get_bool().get(info.stream)) return invalid_json(err);
        continue;
      }
      // null is what SDKs send for "not set"; the upstream servers accept it as false.
      stream_bad = type != od::json_type::null;
    } else if (key == "stream_options" && !have_stream_options) {
      have_stream_options = true;
      if (type == od::json_type::object) {
        od::object options;
        if (auto err = v.get_object().get(options)) return invalid_json(err);
        bool have_include_usage = false;
        for (auto option : options) {
          std::string_view option_key;
          if (auto err = option.unescaped_key().get(option_key)) return invalid_json(err);
          od::value ov;
          if (auto err = option.value().get(ov)) return invalid_json(err);
          od::json_type option_type;
          if (auto err = ov.type().get(option_type)) return invalid_json(err);
          if (option_key == "include_usage" && !have_include_usage &&
              option_type == od::json_type::boolean) {
            have_include_usage = true;
            if (auto err = ov.get_bool().get(info.include_usage)) return invalid_json(err);
            continue;
          }
          if (auto err = validate(ov, 2)) return invalid_json(err);
        }
        continue;
      }
    } else if ((!have_required && key == required) || (key == "tools" && info.tools_length == 0)) {
      // The prompt, or the tools a chat template renders before it: both feed prefix hashing.
      const bool is_prompt = key == required;
      if (is_prompt) have_required = true;
      const char* start = v.raw_json_token().data();
      if (auto err = validate(v, 1)) return invalid_json(err);
      std::string_view span;
      if (type == od::json_type::object || type == od::json_type::array) {
        // Consumed: the iterator now sits on the ',' or '}' after the value.
        const char* end;
        if (auto err = doc.current_location().get(end)) return invalid_json(err);
        span = trim_trailing_ws(std::string_view(start, static_cast<size_t>(end - start)));
      } else {
        span = trim_trailing_ws(v.raw_json_token());
      }
      (is_prompt ? info.prompt_offset : info.tools_offset) =
          static_cast<size_t>(span.data() - base);
      (is_prompt ? info.prompt_length : info.tools_length) = span.size();
      continue;
    }
    if (auto err = validate(v, 1)) return invalid_json(err);
  }
  if (!at_document_end(doc)) return invalid_json(simdjson::TRAILING_CONTENT);

  if (!have_model) return request_error("you must provide a model parameter", "model");
  if (!model_is_string) return request_error("model must be a string", "model");
  if (duplicate_model) return request_error("the body has more than one \"model\" field", "model");
  if (stream_bad) return request_error("stream must be a boolean", "stream");
  if (!have_required) {
    return request_error("missing required parameter: '" + std::string(required) + "'",
                         std::string(required));
  }
  info.ok = true;
  return info;
}

void rewrite_request_model(std::string& body, const RequestInfo& info, std::string_view new_model) {
  if (!info.ok || info.model_length < 2 || info.model_offset > body.size() ||
      info.model_length > body.size() - info.model_offset)
    return;
  std::string encoded;
  append_json_string(encoded, new_model);
  body.replace(info.model_offset, info.model_length, encoded);
}

bool rewrite_response_body(std::string& body, std::string_view client_model, Usage* usage) {
  ensure_padding(body);
  std::vector<std::pair<size_t, size_t>> spans;
  Usage seen;
  if (!scan_response(body.data(), body.size(), body.capacity(), client_model, spans, seen))
    return false;
  if (usage != nullptr) merge_usage(*usage, seen);
  if (spans.empty()) return false;
  std::string out;
  out.reserve(body.size() + spans.size() * (client_model.size() + 8));
  splice_model(out, body, spans, client_model);
  body.swap(out);
  return true;
}

SseRewriter::SseRewriter(std::string client_model, size_t max_event_bytes)
    : client_model_(std::move(client_model)), max_event_bytes_(max_event_bytes) {}

void SseRewriter::feed(std::string_view bytes, std::string& out) {
  if (swallow_lf_ && !bytes.empty()) {
    swallow_lf_ = false;
    if (bytes.front() == '\n') {
      out.push_back('\n');
      bytes.remove_prefix(1);
    }
  }
  if (bytes.empty()) return;

  // Scan the caller's bytes in place when nothing is held (the common case: whole events per
  // read); otherwise append and continue where the last scan stopped.
  const bool in_place = pending_.empty();
  if (!in_place) pending_.append(bytes);
  const std::string_view buf = in_place ? bytes : std::string_view(pending_);
  const char* p = buf.data();
  const size_t n = buf.size();

  size_t pos = scan_from_;
  size_t consumed = 0;  // start of the event being scanned
  size_t cr = find_byte(p, pos, n, '\r');
  while (pos < n) {
    if (cr < pos) cr = find_byte(p, pos, n, '\r');
    const size_t lf = find_byte(p, pos, cr, '\n');
    const size_t eol = lf < cr ? lf : cr;
    if (eol > pos) at_line_start_ = false;
    if (eol >= n) {
      pos = n;
      break;
    }
    size_t terminator = 1;
    if (p[eol] == '\r') {
      if (eol + 1 < n) {
        if (p[eol + 1] == '\n') terminator = 2;
      } else if (!at_line_start_) {
        pos = eol;  // CR or CRLF? Decided by the next byte; rescan just this one.
        break;
      }
    }
    const bool blank_line = at_line_start_;
    pos = eol + terminator;
    at_line_start_ = true;
    if (!blank_line) continue;

    // A blank line: the event [consumed, pos) is complete. Its size for the limit leaves out
    // the blank line itself, so whether the final LF of a CRLF came in this read or the next
    // does not change the verdict (the held-bytes check below can never exceed this size).
    const std::string_view event(p + consumed, pos - consumed);
    if (passthrough_ || eol - consumed > max_event_bytes_) {
      out.append(event);
      ++events_;
      passthrough_ = false;
    } else {
      emit_event(event, out);
    }
    consumed = pos;
    // A lone CR ended the event at the very end of the input: a '\n' arriving next belongs to
    // it (CRLF), not to the next event.
    if (p[eol] == '\r' && terminator == 1 && pos == n) swallow_lf_ = true;
  }

  if (!passthrough_ && n - consumed > max_event_bytes_) passthrough_ = true;
  if (passthrough_ && pos > consumed) {  // an oversized event flows as it arrives
    out.append(p + consumed, pos - consumed);
    consumed = pos;
  }

  if (in_place)
    pending_.assign(p + consumed, n - consumed);
  else
    pending_.erase(0, consumed);
  scan_from_ = pos - consumed;
}

void SseRewriter::finish(std::string& out) {
  out.append(pending_);
  pending_.clear();
  scan_from_ = 0;
  at_line_start_ = true;
  swallow_lf_ = false;
  passthrough_ = false;
}

void SseRewriter::emit_event(std::string_view event, std::string& out) {
  ++events_;
  // Find the data line(s). Lines end in "\r\n", "\n" or "\r".
  size_t data_lines = 0;
  size_t value_begin = 0, value_end = 0;
  const char* const p = event.data();
  const size_t n = event.size();
  const size_t first_cr = find_byte(p, 0, n, '\r');  // usually none: then lines end in LF
  for (size_t pos = 0; pos < n;) {
    const size_t cr = first_cr < pos ? find_byte(p, pos, n, '\r') : first_cr;
    const size_t eol = find_byte(p, pos, cr, '\n');
    const std::string_view line = event.substr(pos, eol - pos);
    if (line.starts_with("data:")) {
      ++data_lines;
      value_begin = pos + 5;
      if (value_begin < eol && event[value_begin] == ' ') ++value_begin;
      value_end = eol;
    }
    pos = eol;
    if (pos < event.size() && event[pos] == '\r') ++pos;
    if (pos < event.size() && event[pos] == '\n') ++pos;
  }
  // Multi-line data (one JSON split over lines) is legal SSE but no OpenAI-compatible server
  // sends it; such events pass unchanged.
  if (data_lines != 1) {
    out.append(event);
    return;
  }
  const std::string_view value = event.substr(value_begin, value_end - value_begin);
  if (value == "[DONE]") saw_done_ = true;
  const bool want_model =
      !client_model_.empty() && value.find("\"model\"") != std::string_view::npos;
  const bool want_usage = value.find("\"usage\"") != std::string_view::npos;
  if ((!want_model && !want_usage) || value.empty() || value.front() != '{') {
    out.append(event);
    return;
  }

  scratch_.assign(value);
  ensure_padding(scratch_);
  Usage seen;
  if (!scan_response(scratch_.data(), scratch_.size(), scratch_.capacity(), client_model_, spans_,
                     seen)) {
    out.append(event);
    return;
  }
  merge_usage(usage_, seen);
  if (spans_.empty()) {
    out.append(event);
    return;
  }
  out.append(event.substr(0, value_begin));
  splice_model(out, scratch_, spans_, client_model_);
  out.append(event.substr(value_end));
}

}  // namespace infergate::proxy
