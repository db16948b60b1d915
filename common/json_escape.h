#pragma once
// JSON string escaping shared by every module that writes JSON by hand (logs, error envelopes,
// admin and debug documents).

#include <string>
#include <string_view>

namespace infergate {

// Appends `s` JSON-escaped, without surrounding quotes: quotes, backslashes and control
// characters are escaped; other bytes (UTF-8 included) are copied as they are.
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace infergate
