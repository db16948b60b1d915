#include "sim/sim_main.h"

#include "common/log.h"
#include "infergate/version.h"
#include "sim/options.h"
#include "sim/sim_server.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <boost/asio/signal_set.hpp>

#include <boost/system/system_error.hpp>
#include <csignal>
#include <cstdio>
#include <string_view>
#include <vector>

namespace infergate::sim {
namespace {

// A simulator pod holds a socket per concurrent stream; the default soft limit (often 1024)
// would cap a 1,000-stream test.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string format_endpoint(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

}  // namespace

int sim_main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  const ParseOutcome parsed = parse_options(args);
  switch (parsed.action) {
    case ParseOutcome::Action::kHelp:
      std::fputs(help_text().c_str(), stdout);
      return 0;
    case ParseOutcome::Action::kVersion:
      fmt::print("infergate-sim {}\n", kVersion);
      return 0;
    case ParseOutcome::Action::kError:
      fmt::print(stderr, "infergate-sim: error: {}\nTry 'infergate-sim --help'.\n", parsed.error);
      return 1;
    case ParseOutcome::Action::kRun:
      break;
  }
  const SimOptions& options = parsed.options;
  log::Level level = log::Level::kInfo;
  log::parse_level(options.log_level, &level);  // validated by parse_options
  log::configure(level, log::Format::kText);
  raise_open_file_limit();

  asio::io_context io(1);
  std::shared_ptr<SimServer> server;
  try {
    server = std::make_shared<SimServer>(io, options);
  } catch (const boost::system::system_error& e) {
    log::error("cannot listen on {}:{}: {}", options.host, options.port, e.code().message());
    return 2;
  }
  const std::string endpoint = format_endpoint(server->local_endpoint());
  // The one stdout line: tests read the port from it.
  fmt::print("infergate-sim listening on {}\n", endpoint);
  std::fflush(stdout);
  if (options.fixed_latency()) {
    log::info("serving {} as pod {}: fixed latency (ttft {} ms, itl {} ms), time scale {}",
              server->catalog().primary_name(), server->pod_name(),
              options.ttft_ms.value_or(kDefaultTtftMs), options.itl_ms.value_or(kDefaultItlMs),
              options.time_scale);
  } else {
    log::info(
        "serving {} as pod {}: step {} ms + {} ms/prefill token + {} ms/decode seq, "
        "{} KV blocks of {}, max_num_seqs {}, max_num_batched_tokens {}, time scale {}",
        server->catalog().primary_name(), server->pod_name(), options.step_base_ms,
        options.step_prefill_token_ms, options.step_decode_seq_ms,
        options.effective_num_gpu_blocks(), options.block_size, options.max_num_seqs,
        options.max_num_batched_tokens, options.time_scale);
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signal_number) {
    if (ec) return;
    log::info("signal {}: exiting", signal_number);
    server->stop();
    io.stop();
  });
  // A client vanishing mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  server->start();
  io.run();
  return 0;
}

}  // namespace infergate::sim
