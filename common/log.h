#pragma once
// Process-wide structured logging to stderr, text or JSON lines. Thread-safe; a line is written
// with one write(2). Not for the per-request hot path at info level (use metrics there).

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace infergate::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };
enum class Format { kText, kJson };

// Parses "debug", "info", "warn"/"warning", "error", "off"; false on an unknown name.
bool parse_level(std::string_view name, Level* out);
bool parse_format(std::string_view name, Format* out);

void configure(Level level, Format format);
bool enabled(Level level);

using Field = std::pair<std::string_view, std::string>;

// msg plus key=value fields, e.g. write(Level::kInfo, "listener ready", {{"address", a}}).
void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kDebug)) write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kInfo)) write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kWarn)) write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kError)) write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace infergate::log
