#pragma once
// How to reach and authenticate to a Kubernetes API server: from inside a pod (the
// service-account token and CA, KUBERNETES_SERVICE_HOST/PORT) or from a kubeconfig file.
// Loading happens at start-up and throws KubeConfigError with a message naming the file and
// field; nothing here does network I/O.

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace infergate::discovery {

class KubeConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct KubeConfig {
  // The API server. `https` is false only for plain-HTTP servers (test stand-ins, a local
  // `kubectl proxy`); real clusters are TLS.
  bool https = true;
  std::string host;  // DNS name or IP literal (no brackets)
  uint16_t port = 443;
  std::string path_prefix;  // a server URL's path ("" or "/prefix"), prepended to API paths

  // TLS. The CA bundle as PEM text (from a file or *-data); empty: the system's default paths.
  std::string ca_pem;
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;  // client certificate authentication (kubeconfig)
  std::string client_key_pem;

  // Bearer token: `token` as given, or re-read from `token_file` before every request (the
  // kubelet rotates projected service-account tokens; a cached one expires).
  std::string token;
  std::string token_file;

  std::string default_namespace = "default";  // the pod's own namespace or the context's
  std::string source;                         // "in-cluster" or the kubeconfig path, for logs

  // The Authorization header value ("" when none). Throws KubeConfigError if token_file
  // cannot be read.
  std::string authorization() const;
  // "https://host:port" for logs.
  std::string server_url() const;
};

// Reads environment variables; injected so tests need not touch the process environment.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup process_env();

inline constexpr std::string_view kServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// In-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, and `token`, `ca.crt`,
// `namespace` in `sa_dir`.
KubeConfig load_in_cluster(const EnvLookup& env = process_env(),
                           std::string_view sa_dir = kServiceAccountDir);

// A kubeconfig file: `context` (empty: current-context) picks cluster and user. Supported
// user credentials: token, tokenFile, client-certificate(-data) + client-key(-data). exec and
// auth-provider plugins are refused with a clear error. Relative file paths are relative to
// the kubeconfig's directory.
KubeConfig load_kubeconfig(const std::string& path, const std::string& context = "");

// The usual order: an explicit kubeconfig path; else in-cluster when KUBERNETES_SERVICE_HOST
// is set; else $KUBECONFIG (its first entry) or ~/.kube/config.
KubeConfig load_auto(const std::string& kubeconfig_path = "", const EnvLookup& env = process_env());

// Base64 (RFC 4648, padding optional, whitespace ignored). Throws KubeConfigError.
std::string base64_decode(std::string_view in);

}  // namespace infergate::discovery
