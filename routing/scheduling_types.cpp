#include "routing/scheduling_types.h"

#include "common/json_escape.h"

#include <cmath>
#include <cstdio>

namespace infergate::routing::detail {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

void append_json_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  out += buf;
}

}  // namespace infergate::routing::detail
