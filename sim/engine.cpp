#include "sim/engine.h"

#include <algorithm>
#include <set>
#include <utility>

namespace infergate::sim {
namespace {

// vLLM V1's bucket bounds (vllm/v1/metrics/loggers.py).
std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}
std::vector<double> itl_buckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> request_latency_buckets() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}
std::vector<double> iteration_tokens_buckets() {
  return {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
}

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

// Keeps the exposition bounded when adapters churn; the oldest series goes first.
constexpr size_t kMaxLoraSeries = 64;

// Token ids no other request produces: output tokens, and prompt tokens without a hash.
uint64_t unique_token(RequestId id, int64_t index, uint64_t salt) {
  return mix64(mix64(id ^ salt) + static_cast<uint64_t>(index));
}
constexpr uint64_t kPromptSalt = 0x7072'6f6d'7074'0000ULL;
constexpr uint64_t kOutputSalt = 0x6f75'7470'7574'0000ULL;

}  // namespace

struct Engine::Request {
  RequestId id = 0;
  RequestSpec spec;
  uint64_t adapter_key = 0;    // folded into the block keys: adapters do not share KV
  BlockHasher hasher;          // the token stream so far (prompt, then output)
  std::vector<uint64_t> keys;  // cache keys of its full blocks
  std::vector<KvCache::BlockId> blocks;
  int64_t computed = 0;    // tokens whose KV is in `blocks`
  int64_t output = 0;      // output tokens so far
  int64_t registered = 0;  // leading blocks whose key is in the cache
  int64_t cached_tokens = -1;
  int64_t preemptions = 0;
  bool running = false;
  bool scheduled_once = false;
  TimePoint arrival;
  TimePoint scheduled;
  TimePoint first_token;
  TimePoint last_token;

  int64_t num_tokens() const { return spec.prompt_tokens + output; }
};

EngineMetrics::EngineMetrics(int64_t max_model_len)
    : iteration_tokens(iteration_tokens_buckets()),
      time_to_first_token(ttft_buckets()),
      inter_token_latency(itl_buckets()),
      e2e_latency(request_latency_buckets()),
      queue_time(request_latency_buckets()),
      inference_time(request_latency_buckets()),
      prefill_time(request_latency_buckets()),
      decode_time(request_latency_buckets()),
      request_prompt_tokens(one_two_five_buckets(max_model_len)),
      request_generation_tokens(one_two_five_buckets(max_model_len)) {}

Engine::Engine(EngineConfig config, TimePoint start)
    : config_(config),
      metrics_(config.max_model_len),
      kv_(config.num_gpu_blocks, config.prefix_caching) {
  config_.block_size = std::max<int64_t>(config_.block_size, 1);
  config_.max_num_batched_tokens = std::max<int64_t>(config_.max_num_batched_tokens, 1);
  config_.max_loras = std::max<int64_t>(config_.max_loras, 1);
  record_lora(start);
}

Engine::~Engine() = default;

int64_t Engine::blocks_for(int64_t tokens) const {
  return (tokens + config_.block_size - 1) / config_.block_size;
}

RequestId Engine::add_request(RequestSpec spec, TimePoint now) {
  const RequestId id = next_id_++;
  auto owned = std::make_unique<Request>();
  Request& r = *owned;
  r.id = id;
  r.arrival = now;
  // Every prompt has at least one token (the BOS token), so every request has work to schedule.
  spec.prompt_tokens = std::max<int64_t>(spec.prompt_tokens, 1);
  if (!spec.adapter.empty()) {
    r.adapter_key = mix64(fnv1a64(spec.adapter));
    lora_dirty_ = true;
  }
  if (spec.prompt_hashes.block_size() == config_.block_size &&
      spec.prompt_hashes.tokens() <= spec.prompt_tokens) {
    r.hasher = std::move(spec.prompt_hashes);
  } else {
    r.hasher = BlockHasher(config_.block_size);
  }
  spec.prompt_hashes = BlockHasher(0);
  r.spec = std::move(spec);
  for (const uint64_t hash : r.hasher.block_hashes()) {
    r.keys.push_back(r.adapter_key == 0 ? hash : mix64(hash ^ r.adapter_key));
  }
  for (int64_t i = r.hasher.tokens(); i < r.spec.prompt_tokens; ++i) {
    append_token(r, unique_token(id, i, kPromptSalt));
  }
  waiting_.push_back(&r);
  requests_.emplace(id, std::move(owned));
  if (!stepping_ && !start_pending_) {
    start_pending_ = true;
    start_at_ = now;
  }
  record_lora(now);
  return id;
}

void Engine::abort_request(RequestId id, TimePoint now) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& r = *it->second;
  if (r.running) {
    remove_running(&r);
    note_adapter_running(r.spec.adapter, -1);
  } else {
    const auto queued = std::find(waiting_.begin(), waiting_.end(), &r);
    if (queued != waiting_.end()) waiting_.erase(queued);
  }
  kv_.release(r.blocks);
  if (!r.spec.adapter.empty()) lora_dirty_ = true;
  ++metrics_.success_abort;
  requests_.erase(it);  // a step in flight skips it by id
  if (!stepping_ && !start_pending_ && !waiting_.empty()) {
    start_pending_ = true;
    start_at_ = now;
  }
  record_lora(now);
}

std::optional<TimePoint> Engine::next_wakeup() const {
  if (stepping_) return step_end_;
  if (start_pending_) return start_at_;
  return std::nullopt;
}

void Engine::advance(TimePoint now, std::vector<EngineEvent>* out) {
  bool progressed = false;
  for (;;) {
    if (!stepping_) {
      if (!start_pending_ || start_at_ > now) break;
      start_pending_ = false;
      start_step(start_at_);
      if (!stepping_) break;
    }
    if (step_end_ > now) break;
    complete_step(out);
    progressed = true;
    start_step(step_end_);
  }
  if (!dropped_.empty()) {
    out->insert(out->end(), dropped_.begin(), dropped_.end());
    dropped_.clear();
  }
  if (progressed || lora_dirty_) record_lora(now);
}

void Engine::start_step(TimePoint at) {
  stepping_ = false;
  // A second try when the first found nothing: a step that preempted everything it had to has
  // freed the blocks the queue needs.
  if (!schedule(at) && !schedule(at)) {
    // Nothing runnable now. Requests that arrived after `at` (a late advance) start their own step.
    if (!waiting_.empty() && running_.empty()) {
      TimePoint first = waiting_.front()->arrival;
      for (const Request* r : waiting_) first = std::min(first, r->arrival);
      if (first > at) {
        start_pending_ = true;
        start_at_ = first;
      }
    }
    return;
  }
  ++steps_;
  const StepCost& cost = config_.cost;
  Duration duration{};
  if (cost.fixed) {
    duration = step_prefill_tokens_ > 0 ? cost.prefill_step : cost.decode_step;
  } else {
    duration = cost.base + cost.per_prefill_token * step_prefill_tokens_ +
               cost.per_decode_seq * step_decode_seqs_;
  }
  std::vector<std::string_view> adapters;
  for (const Scheduled& s : batch_) {
    const std::string& adapter = requests_.at(s.id)->spec.adapter;
    if (!adapter.empty() &&
        std::find(adapters.begin(), adapters.end(), adapter) == adapters.end()) {
      adapters.push_back(adapter);
    }
  }
  duration += cost.lora_load * load_adapters(adapters);
  step_duration_ = duration;
  stepping_ = true;
  step_end_ = at + duration;
}

bool Engine::schedule(TimePoint at) {
  batch_.clear();
  step_prefill_tokens_ = 0;
  step_decode_seqs_ = 0;
  int64_t budget = config_.max_num_batched_tokens;
  std::vector<std::string_view> loras;  // distinct adapters in the step
  const auto lora_fits = [&](const std::string& adapter) {
    return adapter.empty() || static_cast<int64_t>(loras.size()) < config_.max_loras ||
           std::find(loras.begin(), loras.end(), adapter) != loras.end();
  };
  const auto add = [&](Request& r, int64_t tokens) {
    const bool decoding = r.output > 0 && r.computed == r.num_tokens() - 1 && tokens == 1;
    if (decoding) {
      ++step_decode_seqs_;
    } else {
      step_prefill_tokens_ += tokens;
    }
    batch_.push_back({r.id, tokens});
    budget -= tokens;
    if (!r.spec.adapter.empty() &&
        std::find(loras.begin(), loras.end(), r.spec.adapter) == loras.end()) {
      loras.push_back(r.spec.adapter);
    }
  };

  // Running requests first, oldest first; preempt the newest when blocks run out.
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Request& r = *running_[i];
    const int64_t tokens = std::min(r.num_tokens() - r.computed, budget);
    if (tokens <= 0 || !lora_fits(r.spec.adapter)) {
      ++i;
      continue;
    }
    const int64_t need = blocks_for(r.computed + tokens) - static_cast<int64_t>(r.blocks.size());
    bool fits = true;
    while (need > kv_.num_free()) {
      Request& victim = *running_.back();
      running_.pop_back();
      victim.running = false;
      note_adapter_running(victim.spec.adapter, -1);
      preempt(victim);
      preempted = true;
      if (&victim == &r) {
        fits = false;
        break;
      }
    }
    if (!fits) break;
    grow_blocks(r, need);
    add(r, tokens);
    ++i;
  }

  // Then waiting requests, FCFS, unless this step preempted.
  if (!preempted) {
    std::vector<Request*> skipped;
    std::vector<KvCache::BlockId> hits;
    while (!waiting_.empty() && budget > 0) {
      if (static_cast<int64_t>(running_.size()) >= config_.max_num_seqs) break;
      Request& r = *waiting_.front();
      if (r.arrival > at) break;
      if (!lora_fits(r.spec.adapter)) {
        waiting_.pop_front();
        skipped.push_back(&r);
        continue;
      }
      hits.clear();
      // The cache is asked for whole blocks and never for the last token, which must be computed
      // to sample the next one.
      const int64_t hit_blocks =
          kv_.lookup(r.keys, (r.num_tokens() - 1) / config_.block_size, &hits);
      const int64_t computed = hit_blocks * config_.block_size;
      int64_t tokens = r.num_tokens() - computed;
      if (!config_.chunked_prefill && tokens > budget) {
        waiting_.pop_front();
        skipped.push_back(&r);
        continue;
      }
      tokens = std::min(tokens, budget);
      const int64_t fresh = blocks_for(computed + tokens) - hit_blocks;
      const auto evictable = std::count_if(hits.begin(), hits.end(),
                                           [&](KvCache::BlockId b) { return kv_.is_free(b); });
      if (fresh + evictable > kv_.num_free()) break;  // head of line waits for blocks

      for (const KvCache::BlockId b : hits) kv_.acquire(b);
      r.blocks.assign(hits.begin(), hits.end());
      r.registered = hit_blocks;
      r.computed = computed;
      grow_blocks(r, fresh);
      if (!r.scheduled_once) {
        r.scheduled_once = true;
        r.scheduled = at;
        r.cached_tokens = computed;
        metrics_.queue_time.observe(seconds(at - r.arrival));
        if (kv_.caching()) {
          metrics_.prefix_cache_queries += static_cast<uint64_t>(r.num_tokens());
          metrics_.prefix_cache_hits += static_cast<uint64_t>(computed);
        }
      }
      waiting_.pop_front();
      r.running = true;
      running_.push_back(&r);
      note_adapter_running(r.spec.adapter, +1);
      add(r, tokens);
    }
    waiting_.insert(waiting_.begin(), skipped.begin(), skipped.end());
  }

  if (batch_.empty() && running_.empty() && !waiting_.empty() && !preempted) {
    // The head of the queue cannot fit even in an empty cache (options validation prevents this:
    // max_model_len fits the cache). Drop it rather than stall everything behind it.
    Request& r = *waiting_.front();
    if (r.arrival <= at &&
        blocks_for(std::min(r.num_tokens(), config_.max_num_batched_tokens)) > kv_.num_blocks()) {
      const RequestId id = r.id;
      waiting_.pop_front();
      ++metrics_.success_abort;
      dropped_.push_back({id, r.output, true, 0});
      requests_.erase(id);
    }
  }
  if (!batch_.empty()) {
    metrics_.iteration_tokens.observe(static_cast<double>(config_.max_num_batched_tokens - budget));
  }
  return !batch_.empty();
}

bool Engine::grow_blocks(Request& r, int64_t blocks) {
  for (int64_t i = 0; i < blocks; ++i) {
    const std::optional<KvCache::BlockId> block = kv_.allocate();
    if (!block) return false;  // callers checked num_free()
    r.blocks.push_back(*block);
  }
  return true;
}

void Engine::preempt(Request& r) {
  // vLLM V1 preempts by recomputation: the blocks go back to the pool (their cached content stays
  // findable) and the request starts over from the front of the queue.
  kv_.release(r.blocks);
  r.blocks.clear();
  r.computed = 0;
  r.registered = 0;
  ++r.preemptions;
  ++metrics_.num_preemptions;
  waiting_.push_front(&r);
  lora_dirty_ = true;
}

void Engine::append_token(Request& r, uint64_t token_id) {
  const size_t before = r.hasher.block_hashes().size();
  r.hasher.add_token(token_id);
  if (r.hasher.block_hashes().size() != before) {
    const uint64_t hash = r.hasher.block_hashes().back();
    r.keys.push_back(r.adapter_key == 0 ? hash : mix64(hash ^ r.adapter_key));
  }
}

void Engine::register_blocks(Request& r) {
  if (!kv_.caching()) return;
  const int64_t full =
      std::min<int64_t>(r.computed / config_.block_size, static_cast<int64_t>(r.keys.size()));
  for (; r.registered < full; ++r.registered) {
    kv_.set_hash(r.blocks[static_cast<size_t>(r.registered)],
                 r.keys[static_cast<size_t>(r.registered)]);
  }
}

void Engine::complete_step(std::vector<EngineEvent>* out) {
  const TimePoint at = step_end_;
  stepping_ = false;
  std::vector<Request*> finished;
  for (const Scheduled& s : batch_) {
    const auto it = requests_.find(s.id);
    if (it == requests_.end()) continue;  // aborted during the step
    Request& r = *it->second;
    if (!r.running) continue;  // preempted since (cannot happen within one step; defensive)
    r.computed += s.tokens;
    register_blocks(r);
    if (r.computed < r.num_tokens()) continue;  // a prefill chunk: nothing sampled yet

    const int64_t cached = std::max<int64_t>(r.cached_tokens, 0);
    if (r.spec.output_tokens == 0) {  // pooling: done once the prompt is in
      metrics_.prompt_tokens += static_cast<uint64_t>(r.spec.prompt_tokens);
      out->push_back({r.id, 0, true, cached});
      r.first_token = at;
      r.last_token = at;
      finished.push_back(&r);
      continue;
    }
    ++r.output;
    append_token(r, unique_token(r.id, r.output, kOutputSalt));
    ++metrics_.generation_tokens;
    if (r.output == 1) {
      r.first_token = at;
      metrics_.prompt_tokens += static_cast<uint64_t>(r.spec.prompt_tokens);
      metrics_.time_to_first_token.observe(seconds(at - r.arrival));
    } else {
      metrics_.inter_token_latency.observe(seconds(at - r.last_token));
    }
    r.last_token = at;
    const bool last = r.output >= r.spec.output_tokens;
    out->push_back({r.id, r.output, last, cached});
    if (last) finished.push_back(&r);
  }
  for (Request* r : finished) finish(*r, at);
}

void Engine::finish(Request& r, TimePoint at) {
  remove_running(&r);
  note_adapter_running(r.spec.adapter, -1);
  kv_.release(r.blocks);
  if (r.spec.finish_reason == FinishReason::kLength) {
    ++metrics_.success_length;
  } else {
    ++metrics_.success_stop;
  }
  metrics_.e2e_latency.observe(seconds(at - r.arrival));
  metrics_.inference_time.observe(seconds(r.last_token - r.scheduled));
  metrics_.prefill_time.observe(seconds(r.first_token - r.scheduled));
  metrics_.decode_time.observe(seconds(r.last_token - r.first_token));
  metrics_.request_prompt_tokens.observe(static_cast<double>(r.spec.prompt_tokens));
  metrics_.request_generation_tokens.observe(static_cast<double>(r.output));
  requests_.erase(r.id);
}

void Engine::remove_running(const Request* request) {
  const auto it = std::find(running_.begin(), running_.end(), request);
  if (it == running_.end()) return;
  running_.erase(it);
}

void Engine::note_adapter_running(const std::string& adapter, int64_t delta) {
  if (adapter.empty()) return;
  lora_dirty_ = true;
  if (delta > 0) {
    running_adapters_[adapter] += delta;
    return;
  }
  const auto it = running_adapters_.find(adapter);
  if (it != running_adapters_.end() && (it->second += delta) <= 0) running_adapters_.erase(it);
}

int64_t Engine::load_adapters(const std::vector<std::string_view>& adapters) {
  int64_t loads = 0;
  for (const std::string_view adapter : adapters) {
    const auto it = std::find(resident_.begin(), resident_.end(), adapter);
    if (it != resident_.end()) {  // most recently used goes last
      std::rotate(it, it + 1, resident_.end());
      continue;
    }
    if (static_cast<int64_t>(resident_.size()) >= config_.max_loras) {
      // Evict the least recently used adapter this step does not need. A step needs at most
      // max_loras adapters, so there is one.
      const auto victim = std::find_if(resident_.begin(), resident_.end(), [&](const auto& name) {
        return std::find(adapters.begin(), adapters.end(), name) == adapters.end();
      });
      if (victim != resident_.end()) resident_.erase(victim);
    }
    resident_.emplace_back(adapter);
    ++loads;
  }
  lora_loads_ += static_cast<uint64_t>(loads);
  return loads;
}

void Engine::load_adapter(std::string_view name) {
  if (std::find(resident_.begin(), resident_.end(), name) != resident_.end()) return;
  if (static_cast<int64_t>(resident_.size()) < config_.max_loras) resident_.emplace_back(name);
}

void Engine::unload_adapter(std::string_view name) {
  const auto it = std::find(resident_.begin(), resident_.end(), name);
  if (it != resident_.end()) resident_.erase(it);
}

bool Engine::reset_prefix_cache() {
  return kv_.reset();
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.steps = steps_;
  s.running = num_running();
  s.waiting = num_waiting();
  s.kv_blocks = kv_.num_blocks();
  s.kv_free_blocks = kv_.num_free();
  s.kv_cached_blocks = kv_.num_cached();
  s.kv_evictions = kv_.evictions();
  s.lora_loads = lora_loads_;
  s.resident_adapters = resident_;
  s.step_prefill_tokens = step_prefill_tokens_;
  s.step_decode_seqs = step_decode_seqs_;
  s.step_duration = step_duration_;
  return s;
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
    for (const Request* r : waiting_) {
      if (!r->spec.adapter.empty()) waiting_names.insert(r->spec.adapter);
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
