#pragma once
// Sans-I/O model of a vLLM V1 engine core: continuous batching in steps over a paged KV cache with
// a prefix cache and LoRA slots. It never reads a clock and never touches a socket: the caller
// passes `now` (simulated time) to every call and calls advance() once next_wakeup() has passed,
// which keeps it testable to the nanosecond with a fake clock.
//
// The model, following vllm/v1/core/sched/scheduler.py:
//   - The engine runs one step (forward pass) at a time, back to back while there is work. Every
//     output token becomes available at the end of the step that computed it.
//   - Each step is scheduled FCFS under a token budget of max_num_batched_tokens. First the running
//     requests, in admission order: one token each when decoding, the next chunk of the prompt
//     when still prefilling (chunked prefill). When the KV cache has no free block for one of them,
//     the newest running request is preempted: its blocks are freed, it goes back to the front of
//     the waiting queue and will recompute its prompt and output so far (its cached blocks help).
//   - Then, if nothing was preempted, waiting requests are admitted while fewer than max_num_seqs
//     run, the budget lasts and their first chunk fits in free blocks. A request's cached prefix
//     (full blocks of the same chained hash, see block_hasher.h and kv_cache.h) is taken from the
//     cache and not computed; at least its last token is always computed. A request whose LoRA
//     adapter would make more than max_loras distinct adapters in the step is skipped, and later
//     requests may pass it; any other request that does not fit stops admission (head of line).
//   - Step time = base + per_prefill_token * prefill tokens + per_decode_seq * decoding sequences,
//     plus lora_load for each adapter the step needs that is not resident in one of the max_loras
//     GPU slots (LRU). In fixed-latency mode (the simulator's --ttft-ms/--itl-ms) a step that does
//     prefill work takes prefill_step and a decode-only step decode_step, whatever their size.
//   - Finished requests release their blocks; with prefix caching the full ones keep their content
//     until the LRU allocation reuses them.
//
// A request arriving while idle starts a step at its arrival time, but only when advance() runs,
// so requests that arrive together are batched together, as vLLM's engine loop drains its input
// queue before scheduling. Not thread-safe: one owner calls everything.

#include "sim/block_hasher.h"
#include "sim/histogram.h"
#include "sim/kv_cache.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace infergate::sim {

using SimClock = std::chrono::steady_clock;
using TimePoint = SimClock::time_point;
using Duration = SimClock::duration;
using RequestId = uint64_t;

enum class FinishReason { kStop, kLength };

struct StepCost {
  Duration base = std::chrono::microseconds(7000);
  Duration per_prefill_token = std::chrono::nanoseconds(30000);
  Duration per_decode_seq = std::chrono::nanoseconds(50000);
  Duration lora_load = std::chrono::milliseconds(100);
  bool fixed = false;  // fixed-latency mode
  Duration prefill_step = std::chrono::milliseconds(20);
  Duration decode_step = std::chrono::milliseconds(5);
};

struct EngineConfig {
  StepCost cost;
  int64_t max_num_seqs = 1024;
  int64_t max_num_batched_tokens = 8192;
  bool chunked_prefill = true;  // off: a prompt that does not fit the budget waits (is skipped)
  int64_t block_size = 16;
  int64_t num_gpu_blocks = 27800;
  bool prefix_caching = true;
  bool lora_enabled = false;  // vllm:lora_requests_info is kept only when LoRA is on
  int64_t max_loras = 1;
  int64_t max_model_len = 131072;  // sizes the token-count histograms
};

struct RequestSpec {
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;  // 0: a pooling (embedding) request
  FinishReason finish_reason = FinishReason::kStop;
  std::string adapter;  // LoRA adapter name; empty for the base model
  // The prompt's token stream as block hashes. Prompt tokens beyond prompt_hashes.tokens(), or all
  // of them when its block size is not the engine's, are unique to the request (never shared).
  BlockHasher prompt_hashes{0};
};

// Output token `tokens_done` (1 for the first) of request `id` became available; `finished` marks
// its last event, after which the engine has forgotten it. A pooling request has a single event
// with tokens_done == 0 and finished == true. cached_tokens: prompt tokens that came from the
// prefix cache when the request was first scheduled (vLLM's num_cached_tokens).
struct EngineEvent {
  RequestId id = 0;
  int64_t tokens_done = 0;
  bool finished = false;
  int64_t cached_tokens = 0;
};

// Cumulative counters and histograms in vLLM V1's terms (see metrics_text.h for the names).
struct EngineMetrics {
  explicit EngineMetrics(int64_t max_model_len);

  uint64_t prompt_tokens = 0;         // counted at a request's first token
  uint64_t generation_tokens = 0;     // counted per token
  uint64_t prefix_cache_queries = 0;  // prompt tokens of newly scheduled requests
  uint64_t prefix_cache_hits = 0;     // of which found in the prefix cache
  uint64_t num_preemptions = 0;
  uint64_t success_stop = 0;
  uint64_t success_length = 0;
  uint64_t success_abort = 0;
  Histogram iteration_tokens;     // tokens scheduled per step
  Histogram time_to_first_token;  // arrival to first token, queueing included
  Histogram inter_token_latency;  // also exposed as the deprecated time_per_output_token
  Histogram e2e_latency;
  Histogram queue_time;      // arrival to first scheduled
  Histogram inference_time;  // first scheduled to last token
  Histogram prefill_time;    // first scheduled to first token
  Histogram decode_time;     // first token to last token
  Histogram request_prompt_tokens;
  Histogram request_generation_tokens;
};

// One series of vllm:lora_requests_info. vLLM creates a new label set whenever the set of running
// or waiting adapters changes and stamps it with the time of each update; old series stay (which
// is why consumers take the newest). Times here are engine time; the exposition converts.
struct LoraInfoSeries {
  std::string running_adapters;  // comma-separated, sorted
  std::string waiting_adapters;
  TimePoint updated;
};

// Engine internals for GET /sim/engine.
struct EngineStats {
  uint64_t steps = 0;
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_blocks = 0;
  int64_t kv_free_blocks = 0;
  int64_t kv_cached_blocks = 0;
  uint64_t kv_evictions = 0;
  uint64_t lora_loads = 0;
  std::vector<std::string> resident_adapters;  // least recently used first
  // The step in flight or, when idle, the last one.
  int64_t step_prefill_tokens = 0;
  int64_t step_decode_seqs = 0;
  Duration step_duration{};
};

class Engine {
 public:
  // `start` stamps the initial (idle) LoRA series, so max_lora is visible before any request.
  Engine(EngineConfig config, TimePoint start);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  RequestId add_request(RequestSpec spec, TimePoint now);

  // The client went away: forget the request, free its slot and blocks, count it as finished with
  // reason "abort". A step in flight still takes its time. Unknown or finished ids are ignored.
  void abort_request(RequestId id, TimePoint now);

  // When advance() next has something to do (the end of the step in flight, or the start of one);
  // nullopt when idle.
  std::optional<TimePoint> next_wakeup() const;

  // Completes every step that ends at or before `now`, scheduling the next one back to back, and
  // appends their events in time order. Event times are the step ends, not `now`, so a late call
  // does not skew the timeline.
  void advance(TimePoint now, std::vector<EngineEvent>* out);

  // POST /v1/load_lora_adapter: the adapter takes a free GPU slot, if there is one, so its first
  // request does not pay the load time. /v1/unload_lora_adapter: it leaves its slot.
  void load_adapter(std::string_view name);
  void unload_adapter(std::string_view name);
  // POST /reset_prefix_cache: false (and nothing happens) while requests hold blocks.
  bool reset_prefix_cache();

  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  double kv_cache_usage() const { return kv_.usage(); }
  const EngineConfig& config() const { return config_; }
  const EngineMetrics& metrics() const { return metrics_; }
  const std::vector<LoraInfoSeries>& lora_series() const { return lora_series_; }
  EngineStats stats() const;

 private:
  struct Request;
  struct Scheduled {
    RequestId id;
    int64_t tokens;
  };

  int64_t blocks_for(int64_t tokens) const;
  bool schedule(TimePoint at);  // fills batch_; false when there is nothing to run
  void start_step(TimePoint at);
  void complete_step(std::vector<EngineEvent>* out);
  bool grow_blocks(Request& request, int64_t blocks);
  void preempt(Request& request);
  void append_token(Request& request, uint64_t token_id);
  void register_blocks(Request& request);
  void finish(Request& request, TimePoint at);
  void remove_running(const Request* request);
  void note_adapter_running(const std::string& adapter, int64_t delta);
  int64_t load_adapters(const std::vector<std::string_view>& adapters);
  void record_lora(TimePoint now);

  EngineConfig config_;
  EngineMetrics metrics_;
  KvCache kv_;
  RequestId next_id_ = 1;
  std::unordered_map<RequestId, std::unique_ptr<Request>> requests_;
  std::deque<Request*> waiting_;
  std::vector<Request*> running_;  // admission order

  // The step in flight.
  bool stepping_ = false;
  TimePoint step_end_{};
  std::vector<Scheduled> batch_;
  std::vector<EngineEvent> dropped_;  // requests that can never fit, reported by advance()
  // Idle with work: a step starts at start_at_ (see the header comment).
  bool start_pending_ = false;
  TimePoint start_at_{};

  std::vector<std::string> resident_;  // LoRA slots, least recently used first
  std::map<std::string, int64_t, std::less<>> running_adapters_;  // adapter -> running requests
  uint64_t steps_ = 0;
  uint64_t lora_loads_ = 0;
  int64_t step_prefill_tokens_ = 0;
  int64_t step_decode_seqs_ = 0;
  Duration step_duration_{};

  bool lora_dirty_ = true;
  size_t lora_current_ = 0;
  std::vector<LoraInfoSeries> lora_series_;
};

}  // namespace infergate::sim
