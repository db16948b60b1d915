#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "discovery/kube_config.h"
#include "discovery/pod_watcher.h"

using namespace infergate::discovery;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("infergate-kube-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
  static inline int counter = 0;
};

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](std::string_view n) -> std::optional<std::string> {
    auto it = vars.find(std::string(n));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST_CASE("base64") {
  CHECK(base64_decode("aGVsbG8=") == "hello");
  CHECK(base64_decode("aGVs\nbG8") == "hello");
  CHECK_THROWS_AS(base64_decode("a$=="), KubeConfigError);
}

TEST_CASE("in-cluster configuration") {
  TempDir d;
  d.write("token", "tok-1\n");
  d.write("ca.crt", "-----BEGIN CERTIFICATE-----\n");
  d.write("namespace", "ml");
  auto cfg = load_in_cluster(
      env_of({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      d.path.string());
  CHECK(cfg.https);
  CHECK(cfg.host == "10.96.0.1");
  CHECK(cfg.port == 443);
  CHECK(cfg.default_namespace == "ml");
  CHECK(cfg.authorization() == "Bearer tok-1");
  d.write("token", "tok-2");  // rotated by the kubelet: read again
  CHECK(cfg.authorization() == "Bearer tok-2");

  CHECK_THROWS_WITH_AS(load_in_cluster(env_of({}), d.path.string()),
                       doctest::Contains("KUBERNETES_SERVICE_HOST"), KubeConfigError);
  TempDir empty;
  CHECK_THROWS_WITH_AS(load_in_cluster(env_of({{"KUBERNETES_SERVICE_HOST", "h"},
                                               {"KUBERNETES_SERVICE_PORT", "443"}}),
                                       empty.path.string()),
                       doctest::Contains("automountServiceAccountToken"), KubeConfigError);
}

TEST_CASE("kubeconfig: current context, data fields, files, errors") {
  TempDir d;
  d.write("ca.pem", "CA-PEM");
  const std::string path = d.write("config", R"(
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: team}
- name: other
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster:
    server: https://[fd00::1]:6443/prefix/
    certificate-authority-data: Q0EtREFUQQ==
- name: c2
  cluster:
    server: http://127.0.0.1:8001
    certificate-authority: ca.pem
    insecure-skip-tls-verify: true
users:
- name: u1
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: u2
  user: {token: secret}
)");
  auto a = load_kubeconfig(path);
  CHECK(a.https);
  CHECK(a.host == "fd00::1");
  CHECK(a.port == 6443);
  CHECK(a.path_prefix == "/prefix");
  CHECK(a.ca_pem == "CA-DATA");
  CHECK(a.client_cert_pem == "CERT");
  CHECK(a.client_key_pem == "KEY");
  CHECK(a.default_namespace == "team");
  CHECK(a.authorization().empty());
  CHECK(a.server_url() == "https://[fd00::1]:6443/prefix");

  auto b = load_kubeconfig(path, "other");
  CHECK_FALSE(b.https);
  CHECK(b.port == 8001);
  CHECK(b.ca_pem == "CA-PEM");
  CHECK(b.insecure_skip_tls_verify);
  CHECK(b.default_namespace == "default");
  CHECK(b.authorization() == "Bearer secret");

  CHECK_THROWS_WITH_AS(load_kubeconfig(path, "nope"), doctest::Contains("no entry named \"nope\""),
                       KubeConfigError);
  CHECK_THROWS_WITH_AS(load_kubeconfig((d.path / "missing").string()),
                       doctest::Contains("cannot read"), KubeConfigError);
  const std::string exec = d.write("exec", R"(
current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://k:443"}}]
users: [{name: u, user: {exec: {command: aws}}}]
)");
  CHECK_THROWS_WITH_AS(load_kubeconfig(exec), doctest::Contains("exec credential plugins"),
                       KubeConfigError);
  const std::string bad_server = d.write("bad", R"(
current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {server: "k8s.local:443"}}]
)");
  CHECK_THROWS_WITH_AS(load_kubeconfig(bad_server), doctest::Contains("must start with https://"),
                       KubeConfigError);
}

TEST_CASE("request targets") {
  KubeConfig k;
  k.path_prefix = "";
  PodWatcherOptions o;
  o.namespace_ = "ml";
  o.selector = {{"app", "llama"}, {"inference.networking.k8s.io/pool", "a b"}};
  o.watch_timeout = std::chrono::seconds(60);
  CHECK(label_selector(o.selector) == "app=llama,inference.networking.k8s.io/pool=a b");
  CHECK(list_target(k, o) ==
        "/api/v1/namespaces/ml/"
        "pods?labelSelector=app%3Dllama%2Cinference.networking.k8s.io%2Fpool%3Da%20b");
  CHECK(watch_target(k, o, "123")
            .ends_with("&watch=1&allowWatchBookmarks=true&timeoutSeconds=60&resourceVersion=123"));
}
