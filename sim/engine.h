#pragma once
// Sans-I/O model of a vLLM engine: requests in, token timings out. It never reads a clock and
// never touches a socket; the caller passes `now` to every call and calls advance() once
// next_wakeup() has passed. That keeps it testable to the nanosecond with a fake clock, and lets
// a later version replace the timing model (continuous-batching steps, prefix cache, LoRA slot
// loading) without touching the HTTP side.
//
// Timing model of this version:
//   - A request waits (FIFO) until it can be admitted, then runs: its first output token is due
//     ttft after admission, each further token itl after the previous one, independently of the
//     other running requests (no batching slowdown yet).
//   - Admission needs fewer than max_num_seqs running requests; for a LoRA request, its adapter
//     already running or fewer than max_loras distinct adapters running (as vLLM, a LoRA-blocked
//     request is skipped and later ones may go first); and room for the request's whole KV
//     footprint, ceil((prompt + output) / block_size) blocks, next to the footprints of the
//     running requests, so nothing is ever preempted. A request larger than the whole cache runs
//     alone rather than never.
//   - KV usage = blocks holding the running requests' tokens so far (prompt + generated) divided
//     by num_gpu_blocks, which is what vLLM reports (referenced blocks, not reservations).
//   - A request with output_tokens == 0 (embeddings) finishes after its prefill (ttft).
//
// Not thread-safe: one owner calls everything.

#include "sim/histogram.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace infergate::sim {

using SimClock = std::chrono::steady_clock;
using TimePoint = SimClock::time_point;
using Duration = SimClock::duration;
using RequestId = uint64_t;

enum class FinishReason { kStop, kLength };

struct EngineConfig {
  Duration ttft = std::chrono::milliseconds(20);
  Duration itl = std::chrono::milliseconds(5);
  int64_t max_num_seqs = 256;
  int64_t max_loras = 1;
  int64_t block_size = 16;
  int64_t num_gpu_blocks = 2048;
  int64_t max_model_len = 4096;  // only sizes the token-count histograms
  bool lora_enabled = false;     // vllm:lora_requests_info is kept only when LoRA is on
};

struct RequestSpec {
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;  // 0: a pooling (embedding) request
  FinishReason finish_reason = FinishReason::kStop;
  std::string adapter;  // LoRA adapter name; empty for the base model
};

// One output token of request `id` became available. `tokens_done` counts output tokens so far
// (1 for the first); `finished` marks the last event of the request, which the engine has then
// forgotten. A pooling request has a single event with tokens_done == 0 and finished == true.
struct EngineEvent {
  RequestId id = 0;
  int64_t tokens_done = 0;
  bool finished = false;
};

// Cumulative counters and histograms in vLLM V1's terms (see metrics_text.h for the names).
struct EngineMetrics {
  explicit EngineMetrics(int64_t max_model_len);

  uint64_t prompt_tokens = 0;      // counted when the prefill completes (first token)
  uint64_t generation_tokens = 0;  // counted per token
  uint64_t prefix_cache_queries = 0;
  uint64_t success_stop = 0;
  uint64_t success_length = 0;
  uint64_t success_abort = 0;
  Histogram time_to_first_token;  // arrival to first token, queueing included
  Histogram time_per_output_token;
  Histogram e2e_latency;
  Histogram queue_time;
  Histogram request_prompt_tokens;
  Histogram request_generation_tokens;
};

// One series of vllm:lora_requests_info. vLLM creates a new label set whenever the set of running
// or waiting adapters changes and stamps it with the wall time of each update; old series stay
// (which is why consumers take the newest). Times here are engine time; the exposition converts.
struct LoraInfoSeries {
  std::string running_adapters;  // comma-separated, sorted
  std::string waiting_adapters;
  TimePoint updated;
};

class Engine {
 public:
  // `start` stamps the initial (idle) LoRA series, so max_lora is visible before any request.
  Engine(EngineConfig config, TimePoint start);

  RequestId add_request(RequestSpec spec, TimePoint now);

  // The client went away: forget the request, free its slot and blocks, count it as finished
  // with reason "abort". Unknown or already finished ids are ignored.
  void abort_request(RequestId id, TimePoint now);

  // When advance() next has something to do; nullopt when idle. May be early (never late): an
  // aborted request's stale deadline is only discarded by advance().
  std::optional<TimePoint> next_wakeup() const;

  // Emits, in time order, every token due at or before `now` into *out (appended). Token times
  // are the scheduled ones, not `now`, so a late call does not skew the timeline.
  void advance(TimePoint now, std::vector<EngineEvent>* out);

  int64_t num_running() const { return running_; }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  double kv_cache_usage() const;
  const EngineConfig& config() const { return config_; }
  const EngineMetrics& metrics() const { return metrics_; }
  const std::vector<LoraInfoSeries>& lora_series() const { return lora_series_; }

 private:
  struct Request {
    RequestSpec spec;
    TimePoint arrival;
    TimePoint admitted;
    TimePoint next_due;
    int64_t emitted = 0;
    bool running = false;
  };
  struct Due {
    TimePoint when;
    RequestId id;
    bool operator>(const Due& other) const {
      return when != other.when ? when > other.when : id > other.id;
    }
  };

  int64_t blocks_for(int64_t tokens) const;
  void try_admit(TimePoint now);
  void release(Request& request);  // frees the slot and blocks of a running request
  void finish(RequestId id, Request& request, TimePoint now);
  void record_lora(TimePoint now);

  EngineConfig config_;
  EngineMetrics metrics_;
  RequestId next_id_ = 1;
  std::unordered_map<RequestId, Request> requests_;
  std::deque<RequestId> waiting_;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due_;
  std::map<std::string, int64_t, std::less<>> running_adapters_;  // adapter -> running requests
  int64_t running_ = 0;
  int64_t reserved_blocks_ = 0;  // whole footprints of running requests (admission)
  int64_t used_blocks_ = 0;      // blocks holding tokens so far (reported usage)
  bool lora_dirty_ = true;
  size_t lora_current_ = 0;
  std::vector<LoraInfoSeries> lora_series_;
};

}  // namespace infergate::sim
