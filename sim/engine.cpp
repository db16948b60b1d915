#include "sim/engine.h"

#include <algorithm>
#include <set>
#include <string_view>
#include <utility>

namespace infergate::sim {
namespace {

// vLLM V1's bucket bounds (vllm/v1/metrics/loggers.py).
std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}
std::vector<double> tpot_buckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> request_latency_buckets() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

// Keeps the exposition bounded when adapters churn; the oldest series goes first.
constexpr size_t kMaxLoraSeries = 64;

}  // namespace

EngineMetrics::EngineMetrics(int64_t max_model_len)
    : time_to_first_token(ttft_buckets()),
      time_per_output_token(tpot_buckets()),
      e2e_latency(request_latency_buckets()),
      queue_time(request_latency_buckets()),
      request_prompt_tokens(one_two_five_buckets(max_model_len)),
      request_generation_tokens(one_two_five_buckets(max_model_len)) {}

Engine::Engine(EngineConfig config, TimePoint start)
    : config_(config), metrics_(config.max_model_len) {
  record_lora(start);
}

int64_t Engine::blocks_for(int64_t tokens) const {
  return (tokens + config_.block_size - 1) / config_.block_size;
}

double Engine::kv_cache_usage() const {
  if (config_.num_gpu_blocks <= 0) return 0.0;
  return std::min(1.0,
                  static_cast<double>(used_blocks_) / static_cast<double>(config_.num_gpu_blocks));
}

RequestId Engine::add_request(RequestSpec spec, TimePoint now) {
  const RequestId id = next_id_++;
  if (!spec.adapter.empty()) lora_dirty_ = true;
  Request& request = requests_[id];
  request.spec = std::move(spec);
  request.arrival = now;
  waiting_.push_back(id);
  try_admit(now);
  record_lora(now);
  return id;
}

void Engine::abort_request(RequestId id, TimePoint now) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& request = it->second;
  if (!request.spec.adapter.empty()) lora_dirty_ = true;
  if (request.running) {
    release(request);
  } else {
    const auto queued = std::find(waiting_.begin(), waiting_.end(), id);
    if (queued != waiting_.end()) waiting_.erase(queued);
  }
  ++metrics_.success_abort;
  requests_.erase(it);
  try_admit(now);
  record_lora(now);
}

std::optional<TimePoint> Engine::next_wakeup() const {
  if (due_.empty()) return std::nullopt;
  return due_.top().when;
}

void Engine::advance(TimePoint now, std::vector<EngineEvent>* out) {
  bool progressed = false;
  while (!due_.empty() && due_.top().when <= now) {
    const Due due = due_.top();
    due_.pop();
    const auto it = requests_.find(due.id);
    // Stale entry of an aborted request.
    if (it == requests_.end() || !it->second.running || it->second.next_due != due.when) continue;
    Request& request = it->second;
    progressed = true;

    if (request.emitted == 0) {
      metrics_.prompt_tokens += static_cast<uint64_t>(request.spec.prompt_tokens);
      metrics_.prefix_cache_queries += static_cast<uint64_t>(request.spec.prompt_tokens);
      metrics_.time_to_first_token.observe(seconds(due.when - request.arrival));
    } else {
      metrics_.time_per_output_token.observe(seconds(config_.itl));
    }
    if (request.spec.output_tokens == 0) {
      out->push_back({due.id, 0, true});
      finish(due.id, request, due.when);  // may admit requests due at or before `now`
      continue;
    }
    ++request.emitted;
    ++metrics_.generation_tokens;
    const int64_t context = request.spec.prompt_tokens + request.emitted;
    used_blocks_ += blocks_for(context) - blocks_for(context - 1);
    const bool last = request.emitted == request.spec.output_tokens;
    out->push_back({due.id, request.emitted, last});
    if (last) {
      finish(due.id, request, due.when);
    } else {
      request.next_due = due.when + config_.itl;
      due_.push({request.next_due, due.id});
    }
  }
  if (progressed) record_lora(now);
}

void Engine::try_admit(TimePoint now) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (running_ >= config_.max_num_seqs) break;
    Request& request = requests_.at(*it);
    const std::string& adapter = request.spec.adapter;
    if (!adapter.empty() && !running_adapters_.contains(adapter) &&
        static_cast<int64_t>(running_adapters_.size()) >= config_.max_loras) {
      ++it;  // LoRA-blocked: let later requests go
      continue;
    }
    const int64_t footprint = blocks_for(request.spec.prompt_tokens + request.spec.output_tokens);
    if (running_ > 0 && reserved_blocks_ + footprint > config_.num_gpu_blocks) break;

    request.running = true;
    request.admitted = now;
    request.next_due = now + config_.ttft;
    due_.push({request.next_due, *it});
    ++running_;
    reserved_blocks_ += footprint;
    used_blocks_ += blocks_for(request.spec.prompt_tokens);
    if (!adapter.empty()) {
      ++running_adapters_[adapter];
      lora_dirty_ = true;
    }
    metrics_.queue_time.observe(seconds(now - request.arrival));
    it = waiting_.erase(it);
  }
}

void Engine::release(Request& request) {
  --running_;
  reserved_blocks_ -= blocks_for(request.spec.prompt_tokens + request.spec.output_tokens);
  used_blocks_ -= blocks_for(request.spec.prompt_tokens + request.emitted);
  const std::string& adapter = request.spec.adapter;
  if (!adapter.empty()) {
    const auto it = running_adapters_.find(adapter);
    if (--it->second == 0) running_adapters_.erase(it);
  }
}

void Engine::finish(RequestId id, Request& request, TimePoint now) {
  if (!request.spec.adapter.empty()) lora_dirty_ = true;
  release(request);
  if (request.spec.finish_reason == FinishReason::kLength) {
    ++metrics_.success_length;
  } else {
    ++metrics_.success_stop;
  }
  metrics_.e2e_latency.observe(seconds(now - request.arrival));
  metrics_.request_prompt_tokens.observe(static_cast<double>(request.spec.prompt_tokens));
  metrics_.request_generation_tokens.observe(static_cast<double>(request.emitted));
  requests_.erase(id);
  try_admit(now);
}

void Engine::record_lora(TimePoint now) {
  if (!config_.lora_enabled) return;
  if (lora_dirty_) {
    lora_dirty_ = false;
    std::string running;
    for (const auto& [name, count] : running_adapters_) {
      if (!running.empty()) running.push_back(',');
      running.append(name);
    }
    std::set<std::string_view> waiting_names;
    for (const RequestId id : waiting_) {
      const std::string& adapter = requests_.at(id).spec.adapter;
      if (!adapter.empty()) waiting_names.insert(adapter);
    }
    std::string waiting;
    for (const std::string_view name : waiting_names) {
      if (!waiting.empty()) waiting.push_back(',');
      waiting.append(name);
    }
    const auto found = std::find_if(lora_series_.begin(), lora_series_.end(), [&](const auto& s) {
      return s.running_adapters == running && s.waiting_adapters == waiting;
    });
    if (found != lora_series_.end()) {
      lora_current_ = static_cast<size_t>(found - lora_series_.begin());
    } else {
      if (lora_series_.size() >= kMaxLoraSeries) {
        const auto oldest =
            std::min_element(lora_series_.begin(), lora_series_.end(),
                             [](const auto& a, const auto& b) { return a.updated < b.updated; });
        lora_series_.erase(oldest);
      }
      lora_series_.push_back({std::move(running), std::move(waiting), now});
      lora_current_ = lora_series_.size() - 1;
    }
  }
  lora_series_[lora_current_].updated = now;
}

}  // namespace infergate::sim
