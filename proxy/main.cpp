// infergate: the gateway binary. Parses the command line, loads the configuration, runs.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/log.h"
#include "config/loader.h"
#include "infergate/version.h"
#include "proxy/gateway.h"
#include "proxy/tls_context.h"

namespace {

constexpr const char* kUsage = R"(usage: infergate --config PATH [--config PATH ...] [options]

An L7 gateway for LLM inference: OpenAI-style HTTP in front, vLLM/SGLang/TensorRT-LLM pods
behind, scheduled from live model-server metrics. Configuration is Gateway API Inference
Extension YAML (InferencePool, InferenceModel, InferenceObjective, InferenceModelRewrite) plus
one infergate.io/v1alpha1 ProxyConfig.

options:
  --config PATH         a YAML file or a directory of *.yaml files (repeatable)
  --check               validate the configuration, print a summary, exit 0 (or 1 on errors)
  --log-level LEVEL     debug | info | warn | error | off (default info)
  --log-format FORMAT   text | json (default text)
  --version             print the version and exit
  --help                print this help and exit

signals: SIGHUP reloads the configuration; SIGTERM/SIGINT drain and exit.
exit codes: 0 clean stop, 1 bad configuration or arguments, 2 runtime failure.
)";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "infergate: %s\n(see infergate --help)\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace infergate;
  std::vector<std::string> paths;
  bool check = false;
  log::Level level = log::Level::kInfo;
  log::Format format = log::Format::kText;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      const auto eq = arg.find('=');
      if (eq != std::string::npos) {
        *out = arg.substr(eq + 1);
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    auto is = [&](const char* name) {
      return arg == name || (arg.rfind(name, 0) == 0 && arg.size() > std::strlen(name) &&
                             arg[std::strlen(name)] == '=');
    };
    std::string v;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      std::printf("infergate %s\n", kVersion);
      return 0;
    } else if (arg == "--check") {
      check = true;
    } else if (is("--config") || arg == "-c") {
      if (!value(&v)) return usage_error("--config needs a path");
      paths.push_back(v);
    } else if (is("--log-level")) {
      if (!value(&v) || !log::parse_level(v, &level))
        return usage_error("--log-level takes debug, info, warn, error or off");
    } else if (is("--log-format")) {
      if (!value(&v) || !log::parse_format(v, &format))
        return usage_error("--log-format takes text or json");
    } else {
      return usage_error("unknown argument '" + arg + "'");
    }
  }
  log::configure(level, format);
  if (paths.empty()) return usage_error("no configuration given: pass --config PATH");

  auto result = config::load(paths);
  int errors = 0;
  for (const auto& d : result.diagnostics) {
    if (d.severity == config::Severity::kError) {
      ++errors;
      std::fprintf(stderr, "%s\n", d.format().c_str());
    } else if (d.severity == config::Severity::kWarning || check) {
      std::fprintf(stderr, "%s\n", d.format().c_str());
    } else {
      log::info("{}", d.format());
    }
  }
  if (!result.ok()) {
    std::fprintf(stderr, "infergate: configuration has %d error(s)\n", errors);
    return 1;
  }
  // Load every TLS certificate and key now, so that --check and start-up both report a
  // missing, unreadable or mismatched key with the file's name (exit 1).
  for (const auto& l : result.snapshot->proxy.listeners) {
    if (!l.tls) continue;
    std::string error;
    if (!proxy::make_server_tls_context(*l.tls, &error)) {
      std::fprintf(
          stderr, "%s: listener %s: TLS: %s\n",
          result.snapshot->sources.empty() ? "config" : result.snapshot->sources[0].c_str(),
          l.address.c_str(), error.c_str());
      std::fprintf(stderr, "infergate: configuration has 1 error(s)\n");
      return 1;
    }
  }
  if (check) {
    std::fputs(config::summary(*result.snapshot).c_str(), stdout);
    std::printf("configuration OK\n");
    return 0;
  }
  proxy::Gateway gateway(result.snapshot, paths);
  return gateway.run();
}
