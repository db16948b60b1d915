// config::load(): files and directories -> YAML documents -> per-kind readers -> resolver.
//
// Files are split into documents at "---" lines before yaml-cpp sees them, so a syntax error
// in one document is reported without hiding the errors of the others, and every location
// stays relative to the whole file.

#include "config/loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "config/documents.h"
#include "config/values.h"
#include "config/yaml_reader.h"

namespace infergate::config {

std::string Diagnostic::format() const {
  std::string out;
  if (!where.file.empty()) {
    out = where.line > 0 ? fmt::format("{}:{}:{}: ", where.file, where.line, where.column)
                         : fmt::format("{}: ", where.file);
  }
  if (severity == Severity::kWarning) out += "warning: ";
  if (severity == Severity::kInfo) out += "info: ";
  out += message;
  return out;
}

namespace detail {
namespace {

namespace fs = std::filesystem;

// One YAML document's text and the 0-based line of the file it starts on.
struct Chunk {
  std::string text;
  int first_line = 0;
};

// A line that starts a document: "---" followed by nothing or by white space. Such a line
// can only be a document marker in YAML (no scalar may contain it at column 0).
bool is_document_start(std::string_view line) {
  if (line.size() < 3 || line.substr(0, 3) != "---") return false;
  return line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r' ||
         line[3] == '\n';
}

std::vector<Chunk> split_documents(std::string_view text) {
  std::vector<Chunk> chunks(1);
  int line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    size_t next = end == std::string_view::npos ? text.size() : end + 1;
    std::string_view line = text.substr(pos, next - pos);
    if (is_document_start(line) && line_number > 0) chunks.push_back(Chunk{{}, line_number});
    chunks.back().text += line;
    pos = next;
    ++line_number;
  }
  return chunks;
}

// yaml-cpp reports errors found at the end of the input on the line after the last one;
// point at the end of the last non-empty line instead, which editors can show.
YAML::Mark clamp_to_text(YAML::Mark mark, std::string_view text) {
  if (mark.is_null()) return mark;
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    pos = end + 1;
  }
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string_view::npos)
    lines.pop_back();
  if (lines.empty() || mark.line < static_cast<int>(lines.size())) return mark;
  mark.line = static_cast<int>(lines.size()) - 1;
  mark.column = static_cast<int>(lines.back().size());
  return mark;
}

constexpr std::string_view kGieKinds[] = {"InferencePool", "InferenceModel", "InferenceObjective",
                                          "InferenceModelRewrite"};

bool is_gie_kind(std::string_view kind) {
  return std::find(std::begin(kGieKinds), std::end(kGieKinds), kind) != std::end(kGieKinds);
}

std::string_view group_of(std::string_view api_version) {
  size_t slash = api_version.find('/');
  return slash == std::string_view::npos ? std::string_view() : api_version.substr(0, slash);
}

class Loader {
 public:
  void add_path(const std::string& path) {
    std::error_code ec;
    fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) {
      error_at_file(path, "cannot read: no such file or directory");
      return;
    }
    if (!fs::is_directory(status)) {
      add_file(path);
      return;
    }
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      std::string name = entry.path().filename().string();
      std::string ext = entry.path().extension().string();
      std::error_code entry_ec;
      if (name.empty() || name.front() == '.') continue;  // editor files, ConfigMap "..data"
      if (ext != ".yaml" && ext != ".yml") continue;
      if (!fs::is_regular_file(entry.path(), entry_ec)) continue;
      names.push_back(std::move(name));
    }
    if (ec) {
      error_at_file(path, fmt::format("cannot list directory: {}", ec.message()));
      return;
    }
    std::sort(names.begin(), names.end());
    if (names.empty()) {
      note_file(path);
      diags_.add(Severity::kWarning, SourceLocation{path, 0, 0},
                 "directory has no *.yaml or *.yml files");
    }
    for (const auto& name : names) add_file((fs::path(path) / name).string());
  }

  // base_dir: the directory of the file on disk, "" for in-memory text.
  void add_text(const std::string& text, const std::string& name, const std::string& base_dir) {
    note_file(name);
    docs_.sources.push_back(name);
    std::string_view body = text;
    if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);  // UTF-8 byte order mark
    for (const Chunk& chunk : split_documents(body)) read_chunk(chunk, name, base_dir);
  }

  void add_error(const std::string& message) {
    diags_.add(Severity::kError, SourceLocation{}, message);
  }

  LoadResult finish() {
    LoadResult result;
    try {
      result.snapshot = resolve(std::move(docs_), diags_);
    } catch (const std::exception& e) {
      diags_.add(Severity::kError, SourceLocation{}, fmt::format("internal error: {}", e.what()));
    }
    if (diags_.has_errors()) result.snapshot = nullptr;
    auto& items = diags_.items();
    // File order: files in the order they were read, then lines and columns.
    auto rank = [this](const Diagnostic& d) {
      auto it = file_rank_.find(d.where.file);
      size_t file = it == file_rank_.end() ? file_rank_.size() : it->second;
      return std::tuple(file, d.where.line, d.where.column);
    };
    std::stable_sort(items.begin(), items.end(),
                     [&](const Diagnostic& a, const Diagnostic& b) { return rank(a) < rank(b); });
    result.diagnostics = std::move(items);
    return result;
  }

 private:
  void note_file(const std::string& name) { file_rank_.emplace(name, file_rank_.size()); }

  void error_at_file(const std::string& path, std::string message) {
    note_file(path);
    diags_.add(Severity::kError, SourceLocation{path, 0, 0}, std::move(message));
  }

  void add_file(const std::string& path) {
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(path, ec);
    std::string id = ec ? path : canonical.string();
    if (!seen_files_.insert(id).second) {
      note_file(path);
      diags_.add(Severity::kWarning, SourceLocation{path, 0, 0},
                 "given more than once; read only the first time");
      return;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      error_at_file(path, fmt::format("cannot read: {}", std::strerror(errno)));
      return;
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
      error_at_file(path, "cannot read: I/O error");
      return;
    }
    add_text(text.str(), path, fs::path(path).parent_path().string());
  }

  void read_chunk(const Chunk& chunk, const std::string& file, const std::string& base_dir) {
    DocContext syntax_ctx(diags_, file, chunk.first_line);
    std::vector<YAML::Node> roots;
    try {
      roots = YAML::LoadAll(chunk.text);
    } catch (const YAML::Exception& e) {
      syntax_ctx.error(syntax_ctx.at(clamp_to_text(e.mark, chunk.text)), "",
                       fmt::format("YAML syntax error: {}", e.msg));
      return;
    } catch (const std::exception& e) {
      syntax_ctx.error(syntax_ctx.at(YAML::Mark::null_mark()), "",
                       fmt::format("cannot parse YAML: {}", e.what()));
      return;
    }
    for (const YAML::Node& root : roots) {
      if (root.IsNull()) continue;  // empty document
      DocContext ctx(diags_, file, chunk.first_line);
      ctx.set_base_dir(base_dir);
      try {
        read_document(ctx, root);
      } catch (const YAML::Exception& e) {
        ctx.error(ctx.at(e.mark), "", fmt::format("internal error: {}", e.msg));
      } catch (const std::exception& e) {
        ctx.error(ctx.at(root), "", fmt::format("internal error: {}", e.what()));
      }
    }
  }

  void read_document(DocContext& ctx, const YAML::Node& root) {
    if (!root.IsMap()) {
      ctx.error(ctx.at(root), "", "a document must be a mapping with apiVersion and kind");
      return;
    }
    DocMeta meta;
    meta.order = order_++;
    meta.where = ctx.at(root);

    Field api_field = peek_field(ctx, root, "apiVersion");
    Field kind_field = peek_field(ctx, root, "kind");
    auto api = read_string(ctx, api_field);
    auto kind = read_string(ctx, kind_field);
    if (!api_field.present()) ctx.error(meta.where, "apiVersion", "required field is missing");
    if (!kind_field.present()) ctx.error(meta.where, "kind", "required field is missing");
    if (!api || !kind) return;
    meta.api_version = *api;
    meta.kind = *kind;

    Field metadata_field = peek_field(ctx, root, "metadata");
    MapReader metadata = MapReader::any(ctx, metadata_field);
    Field name_field = metadata.get("name");
    meta.name = read_string(ctx, name_field).value_or("");
    Field ns_field = metadata.get("namespace");
    bool namespace_given = false;
    if (auto ns = read_string(ctx, ns_field); ns && !ns->empty()) {
      meta.namespace_ = *ns;
      namespace_given = true;
    }

    enum class Reader { kNone, kProxy, kPool, kModel, kObjective, kRewrite };
    Reader reader = Reader::kNone;
    if (meta.api_version == kProxyApiVersion) {
      if (meta.kind != "ProxyConfig") {
        ctx.error(kind_field.where, "kind",
                  fmt::format("unknown kind \"{}\" for apiVersion {} (expected ProxyConfig)",
                              meta.kind, kProxyApiVersion));
        return;
      }
      reader = Reader::kProxy;
    } else if (meta.kind == "ProxyConfig") {
      ctx.error(api_field.where, "apiVersion",
                fmt::format("must be {} for kind ProxyConfig (got \"{}\")", kProxyApiVersion,
                            meta.api_version));
      return;
    } else if (meta.kind == "InferencePool" &&
               (meta.api_version == kPoolApiV1 || meta.api_version == kApiV1Alpha2)) {
      reader = Reader::kPool;
    } else if (meta.api_version == kApiV1Alpha2 && meta.kind == "InferenceModel") {
      reader = Reader::kModel;
    } else if (meta.api_version == kApiV1Alpha2 && meta.kind == "InferenceObjective") {
      reader = Reader::kObjective;
    } else if (meta.api_version == kApiV1Alpha2 && meta.kind == "InferenceModelRewrite") {
      reader = Reader::kRewrite;
    }

    std::string display =
        meta.name.empty() ? meta.kind : fmt::format("{}/{}", meta.kind, meta.name);
    if (reader == Reader::kNone) {
      std::string_view group = group_of(meta.api_version);
      if (is_gie_kind(meta.kind) && (group == kGroupV1 || group == kGroupX)) {
        ctx.warning(
            api_field.where, "",
            fmt::format("skipping {}: apiVersion {} is not supported for {} (supported: {})",
                        display, meta.api_version, meta.kind,
                        meta.kind == "InferencePool"
                            ? fmt::format("{} or {}", kPoolApiV1, kApiV1Alpha2)
                            : std::string(kApiV1Alpha2)));
      } else {
        ctx.info(meta.where, "", fmt::format("skipping {}", display));
      }
      return;
    }

    if (reader == Reader::kProxy) {
      ctx.set_label(meta.name.empty() ? "ProxyConfig" : fmt::format("ProxyConfig {}", meta.name));
      ctx.set_strict(true);
    } else {
      ctx.set_label(meta.name.empty() ? meta.kind : fmt::format("{} {}", meta.kind, meta.key()));
      if (!name_field.present())
        ctx.error(metadata.valid() ? metadata.where() : meta.where, "metadata.name",
                  "required field is missing");
      else if (!meta.name.empty() && !is_dns_subdomain(meta.name))
        ctx.error(name_field.where, "metadata.name",
                  "must be a lower-case DNS subdomain (a-z, 0-9, '-' and '.'; at most 253 "
                  "characters)");
      if (namespace_given && !is_dns_label(meta.namespace_))
        ctx.error(ns_field.where, "metadata.namespace",
                  "must be a lower-case DNS label (a-z, 0-9 and '-'; at most 63 characters)");
    }
    meta.label = ctx.label();

    Field created = metadata.get("creationTimestamp");
    if (created.present()) {
      auto text = read_string(ctx, created);
      meta.created = text ? parse_rfc3339(*text) : std::nullopt;
      if (text && !meta.created)
        ctx.warning(created.where, "metadata.creationTimestamp",
                    fmt::format("\"{}\" is not an RFC 3339 timestamp; ignored", *text));
    }

    switch (reader) {
      case Reader::kProxy:
        read_proxy_config(ctx, root, std::move(meta), docs_);
        break;
      case Reader::kPool:
        read_inference_pool(ctx, root, std::move(meta), docs_);
        break;
      case Reader::kModel:
        read_inference_model(ctx, root, std::move(meta), docs_);
        break;
      case Reader::kObjective:
        read_inference_objective(ctx, root, std::move(meta), docs_);
        break;
      case Reader::kRewrite:
        read_inference_model_rewrite(ctx, root, std::move(meta), docs_);
        break;
      case Reader::kNone:
        break;
    }
  }

  Diagnostics diags_;
  Documents docs_;
  size_t order_ = 0;
  std::map<std::string, size_t> file_rank_;
  std::set<std::string> seen_files_;
};

}  // namespace
}  // namespace detail

LoadResult load(const std::vector<std::string>& paths) {
  detail::Loader loader;
  try {
    if (paths.empty()) loader.add_error("no configuration file given");
    for (const auto& path : paths) loader.add_path(path);
  } catch (const std::exception& e) {
    loader.add_error(fmt::format("internal error: {}", e.what()));
  }
  return loader.finish();
}

LoadResult load_string(const std::string& text, const std::string& name) {
  detail::Loader loader;
  try {
    loader.add_text(text, name, "");
  } catch (const std::exception& e) {
    loader.add_error(fmt::format("internal error: {}", e.what()));
  }
  return loader.finish();
}

}  // namespace infergate::config
