#pragma once
// Loads and validates configuration files into a Snapshot. yaml-cpp lives only behind this.

#include <string>
#include <vector>

#include "config/config.h"

namespace infergate::config {

enum class Severity { kError, kWarning, kInfo };

struct Diagnostic {
  Severity severity = Severity::kError;
  SourceLocation where;
  std::string message;
  // "FILE:LINE:COL: message" (errors), "FILE:LINE:COL: warning: message" (warnings), ...
  std::string format() const;
};

struct LoadResult {
  SnapshotPtr snapshot;                 // null when any error was found
  std::vector<Diagnostic> diagnostics;  // every error, warning and info, in file order
  bool ok() const { return snapshot != nullptr; }
};

// paths: YAML files or directories (every *.yaml / *.yml inside, sorted by name, not
// recursive). Never throws: every problem becomes a Diagnostic.
LoadResult load(const std::vector<std::string>& paths);

// Same, from in-memory text (tests, fuzzing). `name` is used as FILE in diagnostics.
LoadResult load_string(const std::string& text, const std::string& name = "<string>");

// The one-screen summary `infergate --check` prints: pools, endpoints, models, listeners.
std::string summary(const Snapshot& snapshot);

}  // namespace infergate::config
