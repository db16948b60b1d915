#include "routing/model_resolver.h"

#include <algorithm>
#include <utility>

namespace infergate::routing {

ModelResolver::ModelResolver(config::SnapshotPtr snapshot) : snapshot_(std::move(snapshot)) {
  const auto& models = snapshot_->models;
  by_model_.reserve(models.size());
  cumulative_weights_.resize(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].catch_all) {
      catch_all_.try_emplace(models[i].pool, i);
    } else {
      by_model_.try_emplace(models[i].model_name, i);  // first in snapshot order wins
    }
    const auto& targets = models[i].targets;
    auto& cumulative = cumulative_weights_[i];
    cumulative.reserve(targets.size());
    uint64_t sum = 0;
    for (const auto& t : targets) cumulative.push_back(sum += t.weight);
    // All weights zero is not a valid GIE config, but must not make the route unusable:
    // treat it as uniform.
    if (sum == 0)
      for (size_t t = 0; t < cumulative.size(); ++t) cumulative[t] = t + 1;
  }

  const auto& objectives = snapshot_->objectives;
  by_objective_.reserve(objectives.size());
  next_objective_.assign(objectives.size(), kNone);
  IndexMap last_with_name;
  for (size_t i = 0; i < objectives.size(); ++i) {
    by_objective_.try_emplace(objectives[i].name, i);
    auto [it, inserted] = last_with_name.try_emplace(objectives[i].name, i);
    if (!inserted) {
      next_objective_[it->second] = i;
      it->second = i;
    }
  }

  if (snapshot_->pools.size() == 1) {
    const auto& p = snapshot_->pools.front();
    single_pool_ = config::Snapshot::pool_key(p.namespace_, p.name);
  }
}

const std::string& ModelResolver::draw_target(size_t route, Rng& rng) const {
  const auto& targets = snapshot_->models[route].targets;
  if (targets.size() == 1) return targets.front().model;
  const auto& cumulative = cumulative_weights_[route];
  const uint64_t r = rng.below(cumulative.back());
  const size_t t = static_cast<size_t>(std::upper_bound(cumulative.begin(), cumulative.end(), r) -
                                       cumulative.begin());
  return targets[t].model;
}

int ModelResolver::priority_for(std::string_view objective, std::string_view pool,
                                const config::ModelRoute* route) const {
  if (!objective.empty()) {
    if (auto it = by_objective_.find(objective); it != by_objective_.end()) {
      const auto& objectives = snapshot_->objectives;
      for (size_t i = it->second; i != kNone; i = next_objective_[i])
        if (objectives[i].pool == pool) return objectives[i].priority;
      return objectives[it->second].priority;  // same name, other pool: still the best hint
    }
  }
  if (route != nullptr && route->priority) return *route->priority;
  if (route != nullptr && route->criticality)
    return config::criticality_priority(*route->criticality);
  return 0;
}

Resolution ModelResolver::resolve(std::string_view model, std::string_view objective,
                                  Rng& rng) const {
  Resolution res;
  if (auto it = by_model_.find(model); it != by_model_.end()) {
    const auto& route = snapshot_->models[it->second];
    res.status = Resolution::Status::kOk;
    res.route = &route;
    res.pool = route.pool;
    if (route.targets.empty())
      res.target_model = model;
    else
      res.target_model = draw_target(it->second, rng);
    res.priority = priority_for(objective, res.pool, res.route);
    return res;
  }
  if (!single_pool_.empty()) {
    // GIE v1: the only pool takes every other model. Its catch-all rewrite rule (a rule with
    // no matches) applies if it has one; else the model passes through unchanged.
    res.status = Resolution::Status::kOk;
    res.pool = single_pool_;
    if (auto it = catch_all_.find(single_pool_); it != catch_all_.end()) {
      res.route = &snapshot_->models[it->second];
      res.target_model =
          res.route->targets.empty() ? std::string(model) : draw_target(it->second, rng);
    } else {
      res.target_model = model;
    }
    res.priority = priority_for(objective, res.pool, res.route);
    return res;
  }
  res.status = Resolution::Status::kModelNotFound;
  return res;
}

}  // namespace infergate::routing
