#pragma once
// SPEC §3: which pool, which target model, which priority. Sans-I/O and immutable: built once
// per config snapshot, then called concurrently from every worker (const methods only).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "routing/rng.h"

namespace infergate::routing {

struct Resolution {
  enum class Status { kOk, kModelNotFound };
  Status status = Status::kModelNotFound;
  std::string pool;          // InferencePool key (namespace/name)
  std::string target_model;  // what to send upstream (== requested model on pass-through)
  int priority = 0;
  bool sheddable() const { return priority < 0; }
  // The configured route that matched; null for pass-through or not found. Points into the
  // snapshot the resolver was built from (keep the snapshot alive).
  const config::ModelRoute* route = nullptr;
};

// Lets the maps below be searched with a string_view (no std::string built per lookup).
struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class ModelResolver {
 public:
  explicit ModelResolver(config::SnapshotPtr snapshot);

  // model: the body's "model" (already unescaped). objective: the value of header
  // x-gateway-inference-objective, empty when absent. The weighted draw uses rng.
  Resolution resolve(std::string_view model, std::string_view objective, Rng& rng) const;

  const config::Snapshot& snapshot() const { return *snapshot_; }

 private:
  using IndexMap = std::unordered_map<std::string, size_t, TransparentStringHash, std::equal_to<>>;
  static constexpr size_t kNone = static_cast<size_t>(-1);

  const std::string& draw_target(size_t route, Rng& rng) const;
  int priority_for(std::string_view objective, std::string_view pool,
                   const config::ModelRoute* route) const;

  config::SnapshotPtr snapshot_;
  // model_name -> index into snapshot_->models (first by pool order, oldest wins inside).
  IndexMap by_model_;
  // pool key -> index of that pool's catch-all route (a rewrite rule with no matches).
  IndexMap catch_all_;
  // objective name -> index into snapshot_->objectives (the first with that name).
  IndexMap by_objective_;
  // next_objective_[i]: the next objective after i with the same name, kNone at the end.
  std::vector<size_t> next_objective_;
  // cumulative_weights_[r][t]: sum of the weights of targets 0..t of route r (prefix sums, so
  // a draw is one random number and a binary search). Empty when the route has no targets.
  std::vector<std::vector<uint64_t>> cumulative_weights_;
  // Pool key of the only pool when the snapshot has exactly one (pass-through), else empty.
  std::string single_pool_;
};

}  // namespace infergate::routing
