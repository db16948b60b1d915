#pragma once
// JSON output helpers for the simulator's responses. Everything appends to a caller-owned string so
// the per-token path can reuse one buffer: once its capacity has grown, no allocation happens.

#include <cstdint>
#include <string>
#include <string_view>

namespace infergate::sim {

// Appends `s` as a JSON string literal (quotes included). Escapes `"`, `\` and control
// characters; bytes that are not valid UTF-8 become U+FFFD, so the output is always valid JSON
// even for arbitrary request bodies echoed back by /sim/requests.
void append_json_string(std::string& out, std::string_view s);

// Appends a double the way Python's json module writes a float (repr: shortest round-trip,
// always with a '.' or an exponent, e.g. "1.0", "0.25", "1e-05").
void append_json_double(std::string& out, double value);

void append_int(std::string& out, int64_t value);

}  // namespace infergate::sim
