#pragma once
// Internal to config/: reading one YAML document field by field while collecting diagnostics.
// Every reader reports problems instead of throwing, and returns std::nullopt (or false) for a
// value it could not use, so one pass over a document finds all of its errors.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"

namespace infergate::config::detail {

// All diagnostics of one load, in the order they were found.
class Diagnostics {
 public:
  void add(Severity severity, SourceLocation where, std::string message);
  bool has_errors() const { return errors_ > 0; }
  std::vector<Diagnostic>& items() { return items_; }

 private:
  std::vector<Diagnostic> items_;
  size_t errors_ = 0;
};

// Where one YAML document lives and what to call it in messages ("InferenceModel ns/name").
class DocContext {
 public:
  DocContext(Diagnostics& diags, std::string file, int line_offset)
      : diags_(diags), file_(std::move(file)), line_offset_(line_offset) {}

  // The label prefixed to every message of this document; set once the kind and name are read.
  void set_label(std::string label) { label_ = std::move(label); }
  const std::string& label() const { return label_; }
  // Unknown fields: an error (ProxyConfig: typos) or a warning (GIE kinds: Kubernetes prunes).
  void set_strict(bool strict) { strict_ = strict; }
  bool strict() const { return strict_; }
  const std::string& file() const { return file_; }
  // The directory of the file on disk ("" for in-memory text): relative paths inside the
  // document (TLS files) are resolved against it, as kubeconfig does.
  void set_base_dir(std::string dir) { base_dir_ = std::move(dir); }
  const std::string& base_dir() const { return base_dir_; }

  // 1-based location of a node (yaml-cpp marks are 0-based and relative to the document text).
  SourceLocation at(const YAML::Node& node) const;
  SourceLocation at(const YAML::Mark& mark) const;

  // "LABEL: PATH: MESSAGE" (PATH omitted when empty).
  void error(const SourceLocation& where, std::string_view path, std::string_view message);
  void warning(const SourceLocation& where, std::string_view path, std::string_view message);
  void info(const SourceLocation& where, std::string_view path, std::string_view message);
  // Error in strict documents, warning otherwise.
  void unknown(const SourceLocation& where, std::string_view path, std::string_view message);

 private:
  void add(Severity severity, const SourceLocation& where, std::string_view path,
           std::string_view message);

  Diagnostics& diags_;
  std::string file_;
  std::string base_dir_;
  int line_offset_ = 0;
  std::string label_;
  bool strict_ = false;
};

// A field of a mapping (or an item of a sequence): its value, its dotted path
// ("spec.targetModels[1].weight") and where to point at it: the value, or the key when the
// value is null, or the enclosing mapping when the key is absent.
//
// Beware yaml-cpp's assignment: assigning to a YAML::Node that already refers to a node
// overwrites that node in the document. Build Fields fresh; never assign over one.
struct Field {
  YAML::Node value;  // a null node when the key is absent
  std::string name;  // the key ("weight"); empty for list items
  std::string path;
  SourceLocation where;
  bool found = false;  // the key is there (its value may still be null)

  // Null values count as absent, as in Kubernetes.
  bool present() const { return found && !value.IsNull(); }
};

// Reads a YAML mapping. The constructor reports keys outside `known` (with a "did you mean"
// hint) and duplicate keys. A node that is not a mapping is reported once; get() then finds
// nothing.
class MapReader {
 public:
  MapReader(DocContext& ctx, const Field& field, std::initializer_list<std::string_view> known);
  // For a document root: `path` is empty.
  MapReader(DocContext& ctx, const YAML::Node& node, std::string path,
            std::initializer_list<std::string_view> known);
  // Reads any keys (metadata, labels): only duplicates are reported.
  static MapReader any(DocContext& ctx, const Field& field);

  bool valid() const { return valid_; }
  // The field named `key`; its value is undefined when the key is absent.
  Field get(std::string_view key) const;
  // Reports "PATH.key: required" at the mapping when the field is absent or null.
  Field require(std::string_view key) const;
  const std::string& path() const { return path_; }
  SourceLocation where() const { return where_; }
  std::vector<Field> fields() const;  // every field, in document order

 private:
  MapReader(DocContext& ctx, const Field& field, std::span<const std::string_view> known,
            bool check_known);
  void init(const YAML::Node& node, std::span<const std::string_view> known, bool check_known);
  std::string child_path(std::string_view key) const;

  DocContext& ctx_;
  YAML::Node node_;
  std::string path_;
  SourceLocation where_;
  bool valid_ = false;
};

// The field `key` of a mapping node, without any checks (for peeking at apiVersion, kind and
// metadata before the document's own reader runs). `path` becomes the field's path.
Field peek_field(const DocContext& ctx, const YAML::Node& map, std::string_view key);

// Scalar readers. Each reports a type or range error at the field and returns std::nullopt.
std::optional<std::string> read_string(DocContext& ctx, const Field& field);
// Non-empty string.
std::optional<std::string> read_nonempty_string(DocContext& ctx, const Field& field);
std::optional<int64_t> read_int(DocContext& ctx, const Field& field, int64_t min, int64_t max);
// A finite number: a plain YAML integer or float ("2", "0.8", "1e-3"); quoted text, .inf and
// .nan are errors. Range checks are the caller's.
std::optional<double> read_number(DocContext& ctx, const Field& field);
std::optional<bool> read_bool(DocContext& ctx, const Field& field);
// One of `allowed` (case-sensitive), with a hint when close to one of them.
std::optional<std::string> read_enum(DocContext& ctx, const Field& field,
                                     std::span<const std::string_view> allowed);
// A mapping of string to string (labels, selectors).
std::optional<std::map<std::string, std::string>> read_string_map(DocContext& ctx,
                                                                  const Field& field);
// The items of a sequence, each as a Field with path "PATH[i]"; reports a non-sequence.
std::optional<std::vector<Field>> read_sequence(DocContext& ctx, const Field& field);

// "a, b or c"
std::string join_alternatives(std::span<const std::string_view> values);

}  // namespace infergate::config::detail
