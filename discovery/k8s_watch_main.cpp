// infergate-k8s-watch: runs one PodWatcher and prints every endpoint list it reports as one
// JSON line on stdout. For checking a selector and RBAC against a cluster, and the driver of
// tests/integration/test_k8s_discovery.py.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/json_escape.h"
#include "common/log.h"
#include "discovery/kube_config.h"
#include "discovery/pod_watcher.h"

namespace {

constexpr const char* kUsage = R"(usage: infergate-k8s-watch [options]

Lists and watches the pods of one namespace matching a label selector and prints, as one JSON
line each time it changes, the endpoints an InferencePool with that selector would get.

options:
  --kubeconfig PATH      kubeconfig file (default: in-cluster, else $KUBECONFIG, ~/.kube/config)
  --context NAME         kubeconfig context (default: current-context)
  --namespace NS         namespace (default: the kubeconfig's or the pod's)
  --selector K=V[,K=V]   label selector (matchLabels)
  --pool NAME            pool name used in endpoint keys (default: watch)
  --ports P[,P]          target ports (default 8000)
  --debounce-ms N        coalescing window (default 100)
  --watch-timeout-s N    timeoutSeconds of each watch (default 290)
  --backoff-ms N         initial reconnect backoff (default 250)
  --log-level LEVEL      debug | info | warn | error | off (default info)
)";

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  infergate::append_json_escaped(out, s);
  out += '"';
  return out;
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "infergate-k8s-watch: %s\n", msg.c_str());
  return 1;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace infergate;
  std::string kubeconfig, context, ns, selector, pool = "watch", ports = "8000";
  long debounce_ms = 100, watch_timeout_s = 290, backoff_ms = 250;
  log::Level level = log::Level::kInfo;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--kubeconfig") {
      if (!next(&kubeconfig)) return fail("--kubeconfig needs a path");
    } else if (arg == "--context") {
      if (!next(&context)) return fail("--context needs a name");
    } else if (arg == "--namespace") {
      if (!next(&ns)) return fail("--namespace needs a name");
    } else if (arg == "--selector") {
      if (!next(&selector)) return fail("--selector needs K=V[,K=V]");
    } else if (arg == "--pool") {
      if (!next(&pool)) return fail("--pool needs a name");
    } else if (arg == "--ports") {
      if (!next(&ports)) return fail("--ports needs P[,P]");
    } else if (arg == "--debounce-ms" || arg == "--watch-timeout-s" || arg == "--backoff-ms") {
      if (!next(&v)) return fail(arg + " needs a number");
      long n = std::strtol(v.c_str(), nullptr, 10);
      if (n <= 0) return fail(arg + " needs a positive number");
      (arg == "--debounce-ms"  ? debounce_ms
       : arg == "--backoff-ms" ? backoff_ms
                               : watch_timeout_s) = n;
    } else if (arg == "--log-level") {
      if (!next(&v) || !log::parse_level(v, &level)) return fail("bad --log-level");
    } else {
      return fail("unknown argument " + arg);
    }
  }
  log::configure(level, log::Format::kText);

  discovery::KubeConfig kube;
  try {
    kube = context.empty() || kubeconfig.empty() ? discovery::load_auto(kubeconfig)
                                                 : discovery::load_kubeconfig(kubeconfig, context);
  } catch (const discovery::KubeConfigError& e) {
    return fail(e.what());
  }
  discovery::PodWatcherOptions opts;
  opts.namespace_ = ns.empty() ? kube.default_namespace : ns;
  for (const auto& kv : split(selector, ',')) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return fail("bad selector term " + kv);
    opts.selector[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& p : split(ports, ',')) {
    long n = std::strtol(p.c_str(), nullptr, 10);
    if (n <= 0 || n > 65535) return fail("bad port " + p);
    opts.target.target_ports.push_back(static_cast<uint16_t>(n));
  }
  opts.target.pool_key = opts.namespace_ + "/" + pool;
  opts.debounce = std::chrono::milliseconds(debounce_ms);
  opts.watch_timeout = std::chrono::seconds(watch_timeout_s);
  opts.backoff_initial = std::chrono::milliseconds(backoff_ms);
  opts.backoff_max = std::chrono::milliseconds(backoff_ms * 16);

  boost::asio::io_context io;
  std::shared_ptr<discovery::PodWatcher> watcher;
  try {
    watcher = discovery::PodWatcher::create(io, kube, opts, [](std::vector<config::Endpoint> eps) {
      std::string line = "{\"endpoints\":[";
      for (size_t i = 0; i < eps.size(); ++i) {
        const auto& e = eps[i];
        if (i) line += ',';
        line += fmt::format("{{\"key\":{},\"name\":{},\"host\":{},\"port\":{},\"labels\":{{",
                            json_quote(e.key), json_quote(e.name), json_quote(e.host), e.port);
        bool first = true;
        for (const auto& [k, v] : e.labels) {
          if (!first) line += ',';
          first = false;
          line += json_quote(k) + ":" + json_quote(v);
        }
        line += "}}";
      }
      line += "]}\n";
      std::fputs(line.c_str(), stdout);
      std::fflush(stdout);
    });
  } catch (const discovery::KubeConfigError& e) {
    return fail(e.what());
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    watcher->stop();
    io.stop();
  });
  watcher->start();
  io.run();
  return 0;
}
