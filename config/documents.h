#pragma once
// Internal to config/: the documents of one load after each was read and checked on its own,
// before the checks that need all of them (references, uniqueness, endpoint resolution).

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/yaml_reader.h"

namespace infergate::config::detail {

inline constexpr std::string_view kProxyApiVersion = "infergate.io/v1alpha1";
inline constexpr std::string_view kGroupV1 = "inference.networking.k8s.io";
inline constexpr std::string_view kGroupX = "inference.networking.x-k8s.io";
inline constexpr std::string_view kPoolApiV1 = "inference.networking.k8s.io/v1";
inline constexpr std::string_view kApiV1Alpha2 = "inference.networking.x-k8s.io/v1alpha2";

// What every Kubernetes-style document has.
struct DocMeta {
  std::string kind;
  std::string api_version;
  std::string name;
  std::string namespace_ = "default";
  std::optional<int64_t> created;  // metadata.creationTimestamp, ns since the epoch
  size_t order = 0;                // position among all documents of the load
  SourceLocation where;            // the document (its first key)
  std::string label;               // "InferenceModel ns/name", used in messages

  std::string key() const { return namespace_ + "/" + name; }
};

// Older first: documents with a creationTimestamp (they exist in a cluster already) by
// timestamp, then the others in document order.
bool older(const DocMeta& a, const DocMeta& b);

struct PoolRef {
  std::string name;
  std::string group;  // explicit or the kind's default
  bool group_explicit = false;
  SourceLocation where;       // spec.poolRef
  SourceLocation name_where;  // spec.poolRef.name
};

// An entry of spec.scheduler.pools: the pool it names is checked against all documents.
struct SchedulerPoolRef {
  std::string key;   // "namespace/name" (a bare name means namespace "default")
  std::string name;  // as written
  std::string path;  // "spec.scheduler.pools[0].name"
  SourceLocation where;
};

struct ParsedProxyConfig {
  DocMeta meta;
  ProxyConfig config;
  std::vector<SchedulerPoolRef> scheduler_pools;
};

struct ParsedPool {
  DocMeta meta;
  std::string group;
  InferencePool pool;
};

// An InferenceModel, or an InferenceObjective of the transitional shape (modelName and/or
// targetModels on the objective): both claim a model name in a pool.
struct ParsedModel {
  DocMeta meta;
  PoolRef pool_ref;
  std::string model_name;
  std::string model_name_path;  // "spec.modelName", or "metadata.name" when it stood in
  SourceLocation model_name_where;
  std::optional<Criticality> criticality;
  std::vector<WeightedTarget> targets;
  std::optional<int> priority;  // transitional objective routes only
  bool complete = true;         // false: had errors; kept only to check its poolRef
};

struct ParsedObjective {
  DocMeta meta;
  PoolRef pool_ref;
  int priority = 0;
  bool complete = true;
};

struct ParsedRewrite {
  struct Match {
    std::string model;
    std::string path;  // "spec.rules[0].matches[1].model.value"
    SourceLocation where;
  };
  struct Rule {
    std::vector<Match> matches;  // empty: catch-all
    std::vector<WeightedTarget> targets;
    std::string path;  // "spec.rules[0]"
    SourceLocation where;
  };
  DocMeta meta;
  PoolRef pool_ref;
  std::vector<Rule> rules;
  bool complete = true;
};

// Everything one load read, in document order within each vector.
struct Documents {
  std::vector<std::string> sources;
  std::vector<ParsedProxyConfig> proxies;
  std::vector<ParsedPool> pools;
  std::vector<ParsedModel> models;  // InferenceModels and transitional objectives
  std::vector<ParsedObjective> objectives;
  std::vector<ParsedRewrite> rewrites;
};

// Per-kind readers: each checks one document (already known to be of its kind) and appends it
// to `docs`; one with errors is still appended (complete = false) when its poolRef could be
// read, so that a wrong reference is reported too. Problems go to ctx; nothing throws.
void read_proxy_config(DocContext& ctx, const YAML::Node& root, DocMeta meta, Documents& docs);
void read_inference_pool(DocContext& ctx, const YAML::Node& root, DocMeta meta, Documents& docs);
void read_inference_model(DocContext& ctx, const YAML::Node& root, DocMeta meta, Documents& docs);
void read_inference_objective(DocContext& ctx, const YAML::Node& root, DocMeta meta,
                              Documents& docs);
void read_inference_model_rewrite(DocContext& ctx, const YAML::Node& root, DocMeta meta,
                                  Documents& docs);

// The checks across documents, and the Snapshot (null when there were errors).
SnapshotPtr resolve(Documents docs, Diagnostics& diags);

}  // namespace infergate::config::detail
