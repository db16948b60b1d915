#include "discovery/kube_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace infergate::discovery {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw KubeConfigError(fmt::format("{}: cannot read {}", path, what));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

bool is_ipv6_literal(std::string_view host) {
  return host.find(':') != std::string_view::npos;
}

uint16_t parse_port(std::string_view text, const std::string& where) {
  if (text.empty() || text.size() > 5) throw KubeConfigError(fmt::format("{}: bad port", where));
  unsigned v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') throw KubeConfigError(fmt::format("{}: bad port", where));
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) throw KubeConfigError(fmt::format("{}: bad port", where));
  return static_cast<uint16_t>(v);
}

// "https://host[:port][/prefix]" into cfg.
void parse_server(const std::string& url, const std::string& where, KubeConfig& cfg) {
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    cfg.https = true;
    cfg.port = 443;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    cfg.https = false;
    cfg.port = 80;
    rest.remove_prefix(7);
  } else {
    throw KubeConfigError(
        fmt::format("{}: server \"{}\" must start with https:// or http://", where, url));
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view prefix = rest.substr(slash);
    while (prefix.ends_with('/')) prefix.remove_suffix(1);
    cfg.path_prefix = std::string(prefix);
  }
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      throw KubeConfigError(fmt::format("{}: server \"{}\": unclosed '['", where, url));
    cfg.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(':')) cfg.port = parse_port(authority.substr(1), where);
  } else {
    const auto colon = authority.rfind(':');
    cfg.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) cfg.port = parse_port(authority.substr(colon + 1), where);
  }
  if (cfg.host.empty())
    throw KubeConfigError(fmt::format("{}: server \"{}\" has no host", where, url));
}

const YAML::Node find_named(const YAML::Node& list, const std::string& name, const char* section,
                            const std::string& path) {
  if (list && list.IsSequence()) {
    for (const auto& item : list) {
      if (item["name"] && item["name"].as<std::string>() == name) return item;
    }
  }
  throw KubeConfigError(fmt::format("{}: no entry named \"{}\" in {}", path, name, section));
}

std::string resolve_path(const std::string& p, const fs::path& base) {
  fs::path path(p);
  if (path.is_relative()) path = base / path;
  return path.string();
}

std::string str(const YAML::Node& n) {
  return n && n.IsScalar() ? n.as<std::string>() : "";
}

// PEM from "<key>-data" (base64) or "<key>" (a file).
std::string pem_from(const YAML::Node& node, const std::string& key, const fs::path& base,
                     const std::string& where) {
  if (auto data = str(node[key + "-data"]); !data.empty()) {
    try {
      return base64_decode(data);
    } catch (const KubeConfigError& e) {
      throw KubeConfigError(fmt::format("{}: {}-data: {}", where, key, e.what()));
    }
  }
  if (auto file = str(node[key]); !file.empty())
    return read_file(resolve_path(file, base), fmt::format("{} (from {})", key, where));
  return {};
}

}  // namespace

std::string base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  bool padding = false;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    const int v = value(c);
    if (v < 0 || padding) throw KubeConfigError("invalid base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) throw KubeConfigError("invalid base64 length");
  return out;
}

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string KubeConfig::authorization() const {
  if (!token_file.empty()) {
    const std::string t = trim(read_file(token_file, "the bearer token"));
    return t.empty() ? "" : "Bearer " + t;
  }
  return token.empty() ? "" : "Bearer " + token;
}

std::string KubeConfig::server_url() const {
  return fmt::format("{}://{}:{}{}", https ? "https" : "http",
                     is_ipv6_literal(host) ? "[" + host + "]" : host, port, path_prefix);
}

KubeConfig load_in_cluster(const EnvLookup& env, std::string_view sa_dir) {
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty())
    throw KubeConfigError(
        "in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
        "(not running in a pod? give a kubeconfig)");
  KubeConfig cfg;
  cfg.https = true;
  cfg.host = *host;
  cfg.port = parse_port(*port, "KUBERNETES_SERVICE_PORT");
  const std::string dir(sa_dir);
  cfg.token_file = dir + "/token";
  if (!fs::exists(cfg.token_file))
    throw KubeConfigError(fmt::format(
        "{}: missing (is automountServiceAccountToken false for this pod?)", cfg.token_file));
  cfg.ca_pem = read_file(dir + "/ca.crt", "the cluster CA");
  if (fs::exists(dir + "/namespace")) {
    std::string ns = trim(read_file(dir + "/namespace", "the pod's namespace"));
    if (!ns.empty()) cfg.default_namespace = ns;
  }
  cfg.source = "in-cluster";
  return cfg;
}

KubeConfig load_kubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw KubeConfigError(fmt::format("{}: cannot read the kubeconfig", path));
  } catch (const YAML::Exception& e) {
    throw KubeConfigError(
        fmt::format("{}:{}:{}: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (!root.IsMap())
    throw KubeConfigError(fmt::format("{}: not a kubeconfig (not a mapping)", path));
  const fs::path base = fs::path(path).parent_path();
  KubeConfig cfg;
  cfg.source = path;
  try {
    std::string ctx_name = context.empty() ? str(root["current-context"]) : context;
    if (ctx_name.empty())
      throw KubeConfigError(fmt::format("{}: no current-context and no context given", path));
    const YAML::Node ctx = find_named(root["contexts"], ctx_name, "contexts", path)["context"];
    if (!ctx || !ctx.IsMap())
      throw KubeConfigError(fmt::format("{}: context \"{}\" has no body", path, ctx_name));
    const std::string cluster_name = str(ctx["cluster"]);
    if (cluster_name.empty())
      throw KubeConfigError(fmt::format("{}: context \"{}\" names no cluster", path, ctx_name));
    if (auto ns = str(ctx["namespace"]); !ns.empty()) cfg.default_namespace = ns;

    const YAML::Node cluster =
        find_named(root["clusters"], cluster_name, "clusters", path)["cluster"];
    const std::string cwhere = fmt::format("{}: cluster \"{}\"", path, cluster_name);
    if (!cluster || !cluster.IsMap()) throw KubeConfigError(cwhere + " has no body");
    const std::string server = str(cluster["server"]);
    if (server.empty()) throw KubeConfigError(cwhere + ": server is missing");
    parse_server(server, cwhere, cfg);
    cfg.ca_pem = pem_from(cluster, "certificate-authority", base, cwhere);
    if (cluster["insecure-skip-tls-verify"])
      cfg.insecure_skip_tls_verify = cluster["insecure-skip-tls-verify"].as<bool>();

    if (const std::string user_name = str(ctx["user"]); !user_name.empty()) {
      const YAML::Node user = find_named(root["users"], user_name, "users", path)["user"];
      const std::string uwhere = fmt::format("{}: user \"{}\"", path, user_name);
      if (user && user.IsMap()) {
        if (user["exec"])
          throw KubeConfigError(uwhere +
                                ": exec credential plugins are not supported; use a token, "
                                "tokenFile or a client certificate (e.g. a ServiceAccount token)");
        if (user["auth-provider"])
          throw KubeConfigError(uwhere + ": auth-provider plugins are not supported");
        if (user["username"] || user["password"])
          throw KubeConfigError(uwhere + ": basic authentication is not supported");
        cfg.token = str(user["token"]);
        if (auto tf = str(user["tokenFile"]); !tf.empty() && cfg.token.empty())
          cfg.token_file = resolve_path(tf, base);
        cfg.client_cert_pem = pem_from(user, "client-certificate", base, uwhere);
        cfg.client_key_pem = pem_from(user, "client-key", base, uwhere);
        if (cfg.client_cert_pem.empty() != cfg.client_key_pem.empty())
          throw KubeConfigError(uwhere + ": client-certificate and client-key go together");
      }
    }
  } catch (const YAML::Exception& e) {
    throw KubeConfigError(
        fmt::format("{}:{}:{}: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  return cfg;
}

KubeConfig load_auto(const std::string& kubeconfig_path, const EnvLookup& env) {
  if (!kubeconfig_path.empty()) return load_kubeconfig(kubeconfig_path);
  if (auto h = env("KUBERNETES_SERVICE_HOST"); h && !h->empty()) return load_in_cluster(env);
  if (auto k = env("KUBECONFIG"); k && !k->empty())
    return load_kubeconfig(k->substr(0, k->find(':')));
  if (auto home = env("HOME"); home && !home->empty()) {
    const std::string p = *home + "/.kube/config";
    if (fs::exists(p)) return load_kubeconfig(p);
  }
  throw KubeConfigError(
      "no Kubernetes configuration: not in a pod (KUBERNETES_SERVICE_HOST unset), no "
      "kubeconfig given, $KUBECONFIG unset and no ~/.kube/config");
}

}  // namespace infergate::discovery
