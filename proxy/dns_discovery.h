#pragma once
// DNS discovery (issue 7 §2): a static endpoint whose address is a DNS name stands for every
// A/AAAA record of the name. Runs on the control thread's io_context; names are resolved by
// Asio's resolver service (its own thread), so nothing here blocks a worker. Re-resolves every
// `spec.discovery.dns.interval`; an optional hosts file (same format as /etc/hosts) is read first
// at every round. getaddrinfo does not expose record TTLs, so the interval is the refresh bound.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/asio.h"

namespace infergate::proxy {

// host name -> its addresses (IP literals, sorted, unique). A name missing from the map has
// not been resolved yet; an empty vector means "resolved, no records".
using DnsResults = std::map<std::string, std::vector<std::string>>;

// True for an IPv4/IPv6 literal (no resolution needed).
bool is_ip_literal(const std::string& host);

// Parses hosts-file text: "IP name [alias...]" lines, '#' comments. Returns name -> addresses.
DnsResults parse_hosts_file(const std::string& text);

class DnsDiscovery {
 public:
  // Called on the control thread whenever the results change (the full current map).
  using OnChange = std::function<void(const DnsResults&)>;

  DnsDiscovery(asio::io_context& io, OnChange on_change);

  // (Re)configures from a snapshot: the names to resolve, the interval, the hosts file, and
  // resolves at once. Control thread only.
  void update(const config::Snapshot& snapshot);
  void stop();
  const DnsResults& results() const { return results_; }

 private:
  static awaitable<void> loop(DnsDiscovery* self);
  awaitable<void> resolve_all();

  asio::io_context& io_;
  OnChange on_change_;
  std::vector<std::string> names_;
  std::chrono::milliseconds interval_{5'000};
  std::string hosts_file_;
  DnsResults results_;
  asio::steady_timer timer_;
  bool running_ = false;
  bool stopped_ = false;
};

}  // namespace infergate::proxy
