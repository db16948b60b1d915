#include "proxy/dns_discovery.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/log.h"

namespace infergate::proxy {

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

DnsResults parse_hosts_file(const std::string& text) {
  std::map<std::string, std::set<std::string>> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string ip, name;
    if (!(fields >> ip) || !is_ip_literal(ip)) continue;
    while (fields >> name) names[name].insert(ip);
  }
  DnsResults out;
  for (auto& [name, ips] : names) out[name] = std::vector<std::string>(ips.begin(), ips.end());
  return out;
}

DnsDiscovery::DnsDiscovery(asio::io_context& io, OnChange on_change)
    : io_(io), on_change_(std::move(on_change)), timer_(io) {}

void DnsDiscovery::update(const config::Snapshot& snapshot) {
  std::set<std::string> names;
  for (const auto& ep : snapshot.endpoints)
    if (!is_ip_literal(ep.host)) names.insert(ep.host);
  names_.assign(names.begin(), names.end());
  interval_ = snapshot.proxy.discovery.dns_interval;
  hosts_file_ = snapshot.proxy.discovery.hosts_file;
  // Forget names no longer configured.
  for (auto it = results_.begin(); it != results_.end();)
    it = names.count(it->first) ? std::next(it) : results_.erase(it);
  if (names_.empty()) return;
  if (!running_) {
    running_ = true;
    asio::co_spawn(io_, loop(this), asio::detached);
  } else {
    timer_.cancel();  // resolve now with the new settings
  }
}

void DnsDiscovery::stop() {
  stopped_ = true;
  timer_.cancel();
}

awaitable<void> DnsDiscovery::loop(DnsDiscovery* self) {
  while (!self->stopped_ && !self->names_.empty()) {
    co_await self->resolve_all();
    if (self->stopped_) break;
    self->timer_.expires_after(self->interval_);
    co_await self->timer_.async_wait(kNoThrow);
  }
  self->running_ = false;
}

awaitable<void> DnsDiscovery::resolve_all() {
  DnsResults hosts;
  if (!hosts_file_.empty()) {
    std::ifstream f(hosts_file_);
    if (f) {
      std::stringstream text;
      text << f.rdbuf();
      hosts = parse_hosts_file(text.str());
    } else {
      log::warn("discovery: cannot read hosts file {}", hosts_file_);
    }
  }
  DnsResults next = results_;
  const auto names = names_;  // update() may run while we wait on the resolver
  for (const auto& name : names) {
    if (auto it = hosts.find(name); it != hosts.end()) {
      next[name] = it->second;
      continue;
    }
    tcp::resolver resolver(io_);
    auto [ec, results] = co_await resolver.async_resolve(name, "", kNoThrow);
    if (ec) {
      // Keep what we knew: a transient DNS failure must not empty a pool.
      if (ec == asio::error::host_not_found) {
        next[name] = {};
      } else {
        log::warn("discovery: resolving {} failed: {} (keeping {} known address(es))", name,
                  ec.message(), next.count(name) ? next[name].size() : 0);
      }
      continue;
    }
    std::set<std::string> ips;
    for (const auto& r : results) ips.insert(r.endpoint().address().to_string());
    next[name] = std::vector<std::string>(ips.begin(), ips.end());
  }
  if (stopped_) co_return;
  for (auto it = next.begin(); it != next.end();)
    it = std::find(names_.begin(), names_.end(), it->first) != names_.end() ? std::next(it)
                                                                            : next.erase(it);
  if (next != results_) {
    for (const auto& [name, ips] : next) {
      const auto old = results_.find(name);
      if (old == results_.end() || old->second != ips)
        log::info("discovery: {} -> {} address(es)", name, ips.size());
    }
    results_ = std::move(next);
    on_change_(results_);
  }
}

}  // namespace infergate::proxy
