#pragma once
// SPEC §3: which pool, which target model, which priority. Sans-I/O and immutable: built once
// per config snapshot, then called concurrently from every worker (const methods only).

#include <string>
#include <string_view>
#include <unordered_map>

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

class ModelResolver {
 public:
  explicit ModelResolver(config::SnapshotPtr snapshot);

  // model: the body's "model" (already unescaped). objective: the value of header
  // x-gateway-inference-objective, empty when absent. The weighted draw uses rng.
  Resolution resolve(std::string_view model, std::string_view objective, Rng& rng) const;

  const config::Snapshot& snapshot() const { return *snapshot_; }

 private:
  config::SnapshotPtr snapshot_;
  // model_name -> index into snapshot_->models (first by pool order, oldest wins inside).
  std::unordered_map<std::string, size_t> by_model_;
  // objective name -> index into snapshot_->objectives.
  std::unordered_map<std::string, size_t> by_objective_;
};

}  // namespace infergate::routing
