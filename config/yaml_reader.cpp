#include "config/yaml_reader.h"

#include <charconv>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "config/values.h"

namespace infergate::config::detail {

void Diagnostics::add(Severity severity, SourceLocation where, std::string message) {
  if (severity == Severity::kError) ++errors_;
  items_.push_back(Diagnostic{severity, std::move(where), std::move(message)});
}

SourceLocation DocContext::at(const YAML::Mark& mark) const {
  if (mark.is_null()) return SourceLocation{file_, line_offset_ + 1, 1};
  return SourceLocation{file_, line_offset_ + mark.line + 1, mark.column + 1};
}

SourceLocation DocContext::at(const YAML::Node& node) const {
  return at(node.Mark());
}

void DocContext::add(Severity severity, const SourceLocation& where, std::string_view path,
                     std::string_view message) {
  std::string text;
  if (!label_.empty()) text = fmt::format("{}: ", label_);
  if (!path.empty()) text += fmt::format("{}: ", path);
  text += message;
  diags_.add(severity, where, std::move(text));
}

void DocContext::error(const SourceLocation& where, std::string_view path,
                       std::string_view message) {
  add(Severity::kError, where, path, message);
}
void DocContext::warning(const SourceLocation& where, std::string_view path,
                         std::string_view message) {
  add(Severity::kWarning, where, path, message);
}
void DocContext::info(const SourceLocation& where, std::string_view path,
                      std::string_view message) {
  add(Severity::kInfo, where, path, message);
}
void DocContext::unknown(const SourceLocation& where, std::string_view path,
                         std::string_view message) {
  add(strict_ ? Severity::kError : Severity::kWarning, where, path, message);
}

std::string join_alternatives(std::span<const std::string_view> values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += (i + 1 == values.size()) ? " or " : ", ";
    out += values[i];
  }
  return out;
}

namespace {

const char* type_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "unknown";
}

// A plain (unquoted, untagged) scalar: "?" is yaml-cpp's tag for those. Quoted and block
// scalars get "!"; explicit tags keep their name.
bool is_plain(const YAML::Node& node) {
  return node.Tag() == "?";
}

}  // namespace

MapReader::MapReader(DocContext& ctx, const Field& field,
                     std::initializer_list<std::string_view> known)
    : MapReader(ctx, field, std::span<const std::string_view>(known.begin(), known.size()), true) {}

MapReader::MapReader(DocContext& ctx, const Field& field, std::span<const std::string_view> known,
                     bool check_known)
    : ctx_(ctx), path_(field.path), where_(field.where) {
  if (!field.present()) return;
  if (!field.value.IsMap()) {
    ctx_.error(field.where, path_,
               fmt::format("must be a mapping, not {}", type_name(field.value)));
    return;
  }
  init(field.value, known, check_known);
}

MapReader::MapReader(DocContext& ctx, const YAML::Node& node, std::string path,
                     std::initializer_list<std::string_view> known)
    : ctx_(ctx), path_(std::move(path)), where_(ctx.at(node)) {
  if (!node.IsMap()) {
    ctx_.error(where_, path_, fmt::format("must be a mapping, not {}", type_name(node)));
    return;
  }
  init(node, std::span<const std::string_view>(known.begin(), known.size()), true);
}

MapReader MapReader::any(DocContext& ctx, const Field& field) {
  return MapReader(ctx, field, std::span<const std::string_view>(), false);
}

void MapReader::init(const YAML::Node& node, std::span<const std::string_view> known,
                     bool check_known) {
  node_ = node;
  valid_ = true;
  std::set<std::string> seen;
  // Range-for keeps each (key, value) pair alive for the body; a reference to `it->first`
  // would dangle (yaml-cpp's operator-> returns a temporary proxy).
  for (const auto& kv : node) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      ctx_.error(ctx_.at(key), path_, "mapping keys must be strings");
      continue;
    }
    const std::string& name = key.Scalar();
    if (!seen.insert(name).second) {
      ctx_.error(ctx_.at(key), child_path(name), "duplicate key");
      continue;
    }
    if (!check_known) continue;
    bool ok = false;
    for (auto k : known) ok = ok || k == name;
    if (ok) continue;
    std::vector<std::string_view> candidates(known.begin(), known.end());
    std::string message = "unknown field";
    if (auto hint = closest_match(name, candidates))
      message += fmt::format(" (did you mean \"{}\"?)", *hint);
    else if (ctx_.strict() && !candidates.empty())
      message += fmt::format(" (expected {})", join_alternatives(candidates));
    if (!ctx_.strict()) message += "; ignored";
    ctx_.unknown(ctx_.at(key), child_path(name), message);
  }
}

std::string MapReader::child_path(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  return fmt::format("{}.{}", path_, key);
}

Field MapReader::get(std::string_view key) const {
  Field out;
  out.path = child_path(key);
  out.where = where_;
  if (!valid_) return out;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar() || kv.first.Scalar() != key) continue;
    out.found = true;
    out.name = std::string(key);
    out.value = kv.second;
    out.where = out.present() ? ctx_.at(kv.second) : ctx_.at(kv.first);
    return out;
  }
  return out;
}

Field MapReader::require(std::string_view key) const {
  Field out = get(key);
  if (valid_ && !out.present()) ctx_.error(out.where, out.path, "required field is missing");
  return out;
}

std::vector<Field> MapReader::fields() const {
  std::vector<Field> out;
  if (!valid_) return out;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) continue;
    Field f;
    f.found = true;
    f.name = kv.first.Scalar();
    f.path = child_path(f.name);
    f.value = kv.second;
    f.where = f.present() ? ctx_.at(kv.second) : ctx_.at(kv.first);
    out.push_back(std::move(f));
  }
  return out;
}

Field peek_field(const DocContext& ctx, const YAML::Node& map, std::string_view key) {
  Field out;
  out.name = std::string(key);
  out.path = std::string(key);
  out.where = ctx.at(map);
  if (!map.IsMap()) return out;
  for (const auto& kv : map) {
    if (!kv.first.IsScalar() || kv.first.Scalar() != key) continue;
    out.found = true;
    out.value = kv.second;
    out.where = out.present() ? ctx.at(kv.second) : ctx.at(kv.first);
    break;
  }
  return out;
}

std::optional<std::string> read_string(DocContext& ctx, const Field& field) {
  if (!field.present()) return std::nullopt;
  if (!field.value.IsScalar()) {
    ctx.error(field.where, field.path,
              fmt::format("must be a string, not {}", type_name(field.value)));
    return std::nullopt;
  }
  return field.value.Scalar();
}

std::optional<std::string> read_nonempty_string(DocContext& ctx, const Field& field) {
  auto s = read_string(ctx, field);
  if (s && s->empty()) {
    ctx.error(field.where, field.path, "must not be empty");
    return std::nullopt;
  }
  return s;
}

std::optional<int64_t> read_int(DocContext& ctx, const Field& field, int64_t min, int64_t max) {
  if (!field.present()) return std::nullopt;
  if (!field.value.IsScalar()) {
    ctx.error(field.where, field.path,
              fmt::format("must be an integer, not {}", type_name(field.value)));
    return std::nullopt;
  }
  const std::string& text = field.value.Scalar();
  const std::string& tag = field.value.Tag();
  if (!is_plain(field.value) && tag != "tag:yaml.org,2002:int") {
    ctx.error(field.where, field.path,
              fmt::format("must be an integer, not the string \"{}\" (remove the quotes)", text));
    return std::nullopt;
  }
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ptr != digits.data() + digits.size() ||
      (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    ctx.error(field.where, field.path, fmt::format("must be an integer (got \"{}\")", text));
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    ctx.error(field.where, field.path,
              fmt::format("must be between {} and {} (got {})", min, max, text));
    return std::nullopt;
  }
  return value;
}

std::optional<double> read_number(DocContext& ctx, const Field& field) {
  if (!field.present()) return std::nullopt;
  if (!field.value.IsScalar()) {
    ctx.error(field.where, field.path,
              fmt::format("must be a number, not {}", type_name(field.value)));
    return std::nullopt;
  }
  const std::string& text = field.value.Scalar();
  const std::string& tag = field.value.Tag();
  if (!is_plain(field.value) && tag != "tag:yaml.org,2002:int" &&
      tag != "tag:yaml.org,2002:float") {
    ctx.error(field.where, field.path,
              fmt::format("must be a number, not the string \"{}\" (remove the quotes)", text));
    return std::nullopt;
  }
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  double value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  // from_chars also reads "inf" and "nan"; YAML spells them ".inf" and ".nan": both refused.
  if (digits.empty() || ptr != digits.data() + digits.size() || ec != std::errc() ||
      !std::isfinite(value)) {
    ctx.error(field.where, field.path, fmt::format("must be a number (got \"{}\")", text));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> read_bool(DocContext& ctx, const Field& field) {
  if (!field.present()) return std::nullopt;
  if (field.value.IsScalar() && is_plain(field.value)) {
    const std::string& s = field.value.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  ctx.error(field.where, field.path,
            fmt::format("must be true or false (got {})",
                        field.value.IsScalar() ? fmt::format("\"{}\"", field.value.Scalar())
                                               : type_name(field.value)));
  return std::nullopt;
}

std::optional<std::string> read_enum(DocContext& ctx, const Field& field,
                                     std::span<const std::string_view> allowed) {
  auto s = read_string(ctx, field);
  if (!s) return std::nullopt;
  for (auto a : allowed)
    if (a == *s) return s;
  std::string message = fmt::format("must be {} (got \"{}\")", join_alternatives(allowed), *s);
  if (auto hint = closest_match(*s, allowed))
    message += fmt::format("; did you mean \"{}\"?", *hint);
  ctx.error(field.where, field.path, message);
  return std::nullopt;
}

std::optional<std::map<std::string, std::string>> read_string_map(DocContext& ctx,
                                                                  const Field& field) {
  if (!field.present()) return std::nullopt;
  MapReader map = MapReader::any(ctx, field);
  if (!map.valid()) return std::nullopt;
  std::map<std::string, std::string> out;
  bool ok = true;
  for (const Field& f : map.fields()) {
    std::string key = f.name;
    if (key.empty()) {
      ctx.error(f.where, field.path, "empty key");
      ok = false;
      continue;
    }
    if (!f.value.IsScalar()) {
      ctx.error(
          f.where, f.path,
          fmt::format("must be a string, not {}", f.value.IsNull() ? "null" : type_name(f.value)));
      ok = false;
      continue;
    }
    out.emplace(std::move(key), f.value.Scalar());
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<Field>> read_sequence(DocContext& ctx, const Field& field) {
  if (!field.present()) return std::nullopt;
  if (!field.value.IsSequence()) {
    ctx.error(field.where, field.path,
              fmt::format("must be a list, not {}", type_name(field.value)));
    return std::nullopt;
  }
  std::vector<Field> out;
  size_t i = 0;
  for (const auto& item : field.value) {
    Field f;
    f.found = true;
    f.value = static_cast<const YAML::Node&>(item);  // rebinds: f.value holds no node yet
    f.path = fmt::format("{}[{}]", field.path, i++);
    // A null item ("- ") has no useful mark of its own: point at the list.
    f.where = item.IsNull() ? field.where : ctx.at(item);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace infergate::config::detail
