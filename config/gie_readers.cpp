// Reads the Gateway API Inference Extension kinds, applying the OpenAPI schema and
// x-kubernetes-validations rules of their CRDs (v0.3.0 and v1.5.0). Unknown fields are
// warnings: a Kubernetes API server prunes them, so a bundle that applies to a cluster loads.

#include <set>

#include <fmt/format.h>

#include "config/documents.h"
#include "config/values.h"

namespace infergate::config::detail {
namespace {

constexpr std::string_view kFailureModes[] = {"FailOpen", "FailClose"};
constexpr std::string_view kAppProtocols[] = {"http", "kubernetes.io/h2c"};
constexpr std::string_view kCriticalities[] = {"Critical", "Standard", "Sheddable"};
constexpr std::string_view kMatchTypes[] = {"Exact"};
constexpr std::string_view kPoolGroups[] = {kGroupV1, kGroupX};

constexpr int64_t kMaxWeight = 1'000'000;
constexpr size_t kMaxTargetPorts = 8;
constexpr size_t kMaxTargetModels = 10;
constexpr size_t kMaxSelectorLabels = 64;

// The top-level keys of every Kubernetes object; status is ignored.
MapReader open_document(DocContext& ctx, const YAML::Node& root) {
  return MapReader(ctx, root, "", {"apiVersion", "kind", "metadata", "spec", "status"});
}

std::optional<std::string> read_bounded_name(DocContext& ctx, const Field& field,
                                             size_t max_length) {
  auto s = read_nonempty_string(ctx, field);
  if (s && s->size() > max_length) {
    ctx.error(field.where, field.path,
              fmt::format("must be at most {} characters (got {})", max_length, s->size()));
    return std::nullopt;
  }
  return s;
}

std::optional<PoolRef> read_pool_ref(DocContext& ctx, const MapReader& spec,
                                     std::string_view default_group) {
  Field field = spec.require("poolRef");
  MapReader ref(ctx, field, {"group", "kind", "name"});
  if (!ref.valid()) return std::nullopt;
  PoolRef out;
  out.where = field.where;
  out.group = std::string(default_group);
  bool ok = true;

  Field group = ref.get("group");
  if (group.present()) {
    if (auto g = read_enum(ctx, group, kPoolGroups)) {
      out.group = *g;
      out.group_explicit = true;
    } else {
      ok = false;
    }
  }
  Field kind = ref.get("kind");
  if (auto k = read_string(ctx, kind); k && *k != "InferencePool") {
    ctx.error(kind.where, kind.path, fmt::format("must be InferencePool (got \"{}\")", *k));
    ok = false;
  }
  Field name = ref.require("name");
  out.name_where = name.where;
  if (auto n = name.present() ? read_bounded_name(ctx, name, 253) : std::nullopt)
    out.name = *n;
  else
    ok = false;
  if (!ok) return std::nullopt;
  return out;
}

// A list of weighted targets: targetModels[{name, weight}] or targets[{modelRewrite, weight}].
// GIE: each weight 1..1,000,000; set on every target or on none (then every weight is 1).
std::optional<std::vector<WeightedTarget>> read_targets(DocContext& ctx, const Field& field,
                                                        std::string_view name_key,
                                                        size_t max_items) {
  auto items = read_sequence(ctx, field);
  if (!items) return std::nullopt;
  if (items->size() > max_items) {
    ctx.error(field.where, field.path,
              fmt::format("must have at most {} entries (got {})", max_items, items->size()));
    return std::nullopt;
  }
  bool ok = true;
  std::vector<WeightedTarget> out;
  std::vector<bool> has_weight;
  std::vector<const Field*> item_of;
  for (const Field& item : *items) {
    MapReader target(ctx, item, {name_key, "weight"});
    if (!target.valid()) {
      if (!item.present()) ctx.error(item.where, item.path, "must be a mapping, not null");
      ok = false;
      continue;
    }
    WeightedTarget t;
    Field name = target.require(name_key);
    if (auto n = name.present() ? read_bounded_name(ctx, name, 253) : std::nullopt)
      t.model = *n;
    else
      ok = false;
    Field weight = target.get("weight");
    has_weight.push_back(weight.present());
    item_of.push_back(&item);
    if (weight.present()) {
      if (auto w = read_int(ctx, weight, 1, kMaxWeight))
        t.weight = static_cast<uint32_t>(*w);
      else
        ok = false;
    }
    out.push_back(std::move(t));
  }
  size_t with = static_cast<size_t>(std::count(has_weight.begin(), has_weight.end(), true));
  if (with != 0 && with != has_weight.size()) {
    for (size_t i = 0; i < has_weight.size(); ++i)
      if (!has_weight[i])
        ctx.error(item_of[i]->where, item_of[i]->path + ".weight",
                  "must be set on every target or on none");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return out;
}

// Label values as Kubernetes validates them (selector values come from the CRDs' pattern).
// `field` is the selector mapping, already read into `labels`.
bool check_selector(DocContext& ctx, const Field& field,
                    const std::map<std::string, std::string>& labels) {
  bool ok = true;
  for (const Field& entry : MapReader::any(ctx, field).fields()) {
    if (!entry.value.IsScalar() || is_label_value(entry.value.Scalar())) continue;
    ctx.error(entry.where, entry.path,
              fmt::format("\"{}\" is not a valid label value (at most 63 characters of "
                          "A-Z a-z 0-9 - _ ., starting and ending alphanumeric)",
                          entry.value.Scalar()));
    ok = false;
  }
  if (labels.size() > kMaxSelectorLabels) {
    ctx.error(
        field.where, field.path,
        fmt::format("must have at most {} labels (got {})", kMaxSelectorLabels, labels.size()));
    ok = false;
  }
  return ok;
}

std::optional<FailureMode> to_failure_mode(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  return *s == "FailOpen" ? FailureMode::kFailOpen : FailureMode::kFailClose;
}

// v1 endpointPickerRef / v1alpha2 extensionRef. infergate is its own endpoint picker, so only
// failureMode is used; the rest is checked as the CRD would so that the bundle stays valid
// for a cluster. Absent: FailClose (GIE's default).
bool read_picker_ref(DocContext& ctx, const Field& field, bool v1, InferencePool& pool) {
  MapReader ref =
      v1 ? MapReader(ctx, field, {"group", "kind", "name", "port", "failureMode"})
         : MapReader(ctx, field, {"group", "kind", "name", "portNumber", "failureMode"});
  if (!ref.valid()) return !field.present();
  bool ok = true;
  Field name = ref.require("name");
  if (!name.present() || !read_bounded_name(ctx, name, 253)) ok = false;
  auto kind = read_string(ctx, ref.get("kind"));
  read_string(ctx, ref.get("group"));
  if (v1) {
    Field port = ref.get("port");
    if (!port.present() && kind.value_or("Service") == "Service") {
      ctx.error(ref.where(), field.path + ".port",
                "is required when kind is Service or unspecified (defaults to Service)");
      ok = false;
    }
    MapReader p(ctx, port, {"number"});
    if (p.valid()) {
      Field number = p.require("number");
      if (!number.present() || !read_int(ctx, number, 1, 65535)) ok = false;
    }
  } else {
    Field port = ref.get("portNumber");
    if (port.present() && !read_int(ctx, port, 1, 65535)) ok = false;
  }
  Field mode = ref.get("failureMode");
  if (mode.present()) {
    if (auto m = to_failure_mode(read_enum(ctx, mode, kFailureModes)))
      pool.failure_mode = *m;
    else
      ok = false;
  }
  return ok;
}

void read_pool_v1(DocContext& ctx, const MapReader& spec, InferencePool& pool, bool& ok) {
  // selector.matchLabels: 1..64 labels.
  Field selector = spec.require("selector");
  MapReader sel(ctx, selector, {"matchLabels"});
  if (sel.valid()) {
    Field match = sel.require("matchLabels");
    auto labels = read_string_map(ctx, match);
    if (labels && labels->empty()) {
      ctx.error(match.where, match.path, "must have at least one label");
      ok = false;
    } else if (labels && check_selector(ctx, match, *labels)) {
      pool.selector = std::move(*labels);
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }

  // targetPorts: 1..8 entries, numbers 1..65535, unique.
  Field ports = spec.require("targetPorts");
  if (auto items = read_sequence(ctx, ports)) {
    if (items->empty() || items->size() > kMaxTargetPorts) {
      ctx.error(ports.where, ports.path,
                fmt::format("must have between 1 and {} entries (got {})", kMaxTargetPorts,
                            items->size()));
      ok = false;
    }
    std::set<int64_t> seen;
    for (const Field& item : *items) {
      MapReader port(ctx, item, {"number"});
      if (!port.valid()) {
        if (!item.present()) ctx.error(item.where, item.path, "must be a mapping, not null");
        ok = false;
        continue;
      }
      Field number = port.require("number");
      auto n = number.present() ? read_int(ctx, number, 1, 65535) : std::nullopt;
      if (!n) {
        ok = false;
        continue;
      }
      if (!seen.insert(*n).second) {
        ctx.error(number.where, number.path, fmt::format("port number {} must be unique", *n));
        ok = false;
        continue;
      }
      pool.target_ports.push_back(static_cast<uint16_t>(*n));
    }
  } else {
    ok = false;
  }

  Field protocol = spec.get("appProtocol");
  if (protocol.present()) {
    if (auto p = read_enum(ctx, protocol, kAppProtocols))
      pool.app_protocol = *p == "http" ? AppProtocol::kHttp : AppProtocol::kH2c;
    else
      ok = false;
  }
  if (!read_picker_ref(ctx, spec.get("endpointPickerRef"), true, pool)) ok = false;
}

void read_pool_v1alpha2(DocContext& ctx, const MapReader& spec, InferencePool& pool, bool& ok) {
  Field selector = spec.require("selector");
  if (auto labels = read_string_map(ctx, selector)) {
    if (!check_selector(ctx, selector, *labels)) ok = false;
    if (labels->empty())
      ctx.warning(selector.where, selector.path, "empty selector: selects every endpoint");
    pool.selector = std::move(*labels);
  } else {
    ok = false;
  }
  Field port = spec.require("targetPortNumber");
  if (auto n = port.present() ? read_int(ctx, port, 1, 65535) : std::nullopt)
    pool.target_ports.push_back(static_cast<uint16_t>(*n));
  else
    ok = false;
  if (!read_picker_ref(ctx, spec.get("extensionRef"), false, pool)) ok = false;
}

}  // namespace

void read_inference_pool(DocContext& ctx, const YAML::Node& root, DocMeta meta, Documents& docs) {
  MapReader doc = open_document(ctx, root);
  const bool v1 = meta.api_version == kPoolApiV1;
  MapReader spec =
      v1 ? MapReader(ctx, doc.require("spec"),
                     {"selector", "targetPorts", "appProtocol", "endpointPickerRef"})
         : MapReader(ctx, doc.require("spec"), {"selector", "targetPortNumber", "extensionRef"});
  if (!spec.valid()) return;
  ParsedPool out;
  out.group = std::string(v1 ? kGroupV1 : kGroupX);
  InferencePool& pool = out.pool;
  pool.name = meta.name;
  pool.namespace_ = meta.namespace_;
  pool.api_version = meta.api_version;
  pool.where = meta.where;
  bool ok = true;
  if (v1)
    read_pool_v1(ctx, spec, pool, ok);
  else
    read_pool_v1alpha2(ctx, spec, pool, ok);
  out.meta = std::move(meta);
  // Even an invalid pool is kept (the load fails anyway) so that references to it do not add
  // "pool not found" errors on top of the real one.
  (void)ok;
  docs.pools.push_back(std::move(out));
}

void read_inference_model(DocContext& ctx, const YAML::Node& root, DocMeta meta, Documents& docs) {
  MapReader doc = open_document(ctx, root);
  MapReader spec(ctx, doc.require("spec"), {"modelName", "criticality", "poolRef", "targetModels"});
  if (!spec.valid()) return;
  ParsedModel out;
  bool ok = true;

  Field model_name = spec.require("modelName");
  out.model_name_path = model_name.path;
  out.model_name_where = model_name.where;
  if (auto n = model_name.present() ? read_bounded_name(ctx, model_name, 256) : std::nullopt)
    out.model_name = *n;
  else
    ok = false;

  Field criticality = spec.get("criticality");
  if (criticality.present()) {
    if (auto c = read_enum(ctx, criticality, kCriticalities))
      out.criticality = *c == "Critical"   ? Criticality::kCritical
                        : *c == "Standard" ? Criticality::kStandard
                                           : Criticality::kSheddable;
    else
      ok = false;
  }

  auto ref = read_pool_ref(ctx, spec, kGroupX);
  if (ref) out.pool_ref = *ref;

  Field targets = spec.get("targetModels");
  if (targets.present()) {
    if (auto t = read_targets(ctx, targets, "name", kMaxTargetModels))
      out.targets = std::move(*t);
    else
      ok = false;
  }
  if (!ref) return;
  out.complete = ok;
  out.meta = std::move(meta);
  docs.models.push_back(std::move(out));
}

void read_inference_objective(DocContext& ctx, const YAML::Node& root, DocMeta meta,
                              Documents& docs) {
  MapReader doc = open_document(ctx, root);
  // modelName/targetModels: the transitional shape of GIE's test data (an InferenceModel
  // renamed InferenceObjective before InferenceModelRewrite existed). Read as a model route.
  MapReader spec(ctx, doc.require("spec"), {"priority", "poolRef", "modelName", "targetModels"});
  if (!spec.valid()) return;
  bool ok = true;
  ParsedObjective out;
  Field priority = spec.get("priority");
  if (priority.present()) {
    if (auto p = read_int(ctx, priority, std::numeric_limits<int32_t>::min(),
                          std::numeric_limits<int32_t>::max()))
      out.priority = static_cast<int>(*p);
    else
      ok = false;
  }
  auto ref = read_pool_ref(ctx, spec, kGroupV1);
  if (ref) out.pool_ref = *ref;

  Field model_name = spec.get("modelName");
  Field targets = spec.get("targetModels");
  std::optional<ParsedModel> route;
  if (model_name.present() || targets.present()) {
    ParsedModel m;
    m.priority = out.priority;
    if (model_name.present()) {
      m.model_name_path = model_name.path;
      m.model_name_where = model_name.where;
      if (auto n = read_bounded_name(ctx, model_name, 256))
        m.model_name = *n;
      else
        ok = false;
    } else {
      m.model_name_path = "metadata.name";
      m.model_name_where = meta.where;
      m.model_name = meta.name;
    }
    if (targets.present()) {
      if (auto t = read_targets(ctx, targets, "name", kMaxTargetModels))
        m.targets = std::move(*t);
      else
        ok = false;
    }
    const Field& first = model_name.present() ? model_name : targets;
    ctx.info(first.where, first.path,
             fmt::format("transitional InferenceObjective shape (modelName/targetModels are not "
                         "in the v1alpha2 schema): read as the model route \"{}\"",
                         m.model_name));
    route = std::move(m);
  }
  if (!ref) return;
  if (route) {
    route->pool_ref = *ref;
    route->meta = meta;
    route->complete = ok;
    docs.models.push_back(std::move(*route));
  }
  out.complete = ok;
  out.meta = std::move(meta);
  docs.objectives.push_back(std::move(out));
}

void read_inference_model_rewrite(DocContext& ctx, const YAML::Node& root, DocMeta meta,
                                  Documents& docs) {
  MapReader doc = open_document(ctx, root);
  MapReader spec(ctx, doc.require("spec"), {"poolRef", "rules"});
  if (!spec.valid()) return;
  bool ok = true;
  ParsedRewrite out;
  auto ref = read_pool_ref(ctx, spec, kGroupV1);
  if (ref) out.pool_ref = *ref;

  Field rules = spec.require("rules");
  auto items = read_sequence(ctx, rules);
  if (!items) ok = false;
  if (items && items->empty()) ctx.warning(rules.where, rules.path, "no rules: rewrites nothing");
  for (const Field& item : items.value_or(std::vector<Field>{})) {
    MapReader rule(ctx, item, {"matches", "targets"});
    if (!rule.valid()) {
      if (!item.present()) ctx.error(item.where, item.path, "must be a mapping, not null");
      ok = false;
      continue;
    }
    ParsedRewrite::Rule r;
    r.path = item.path;
    r.where = item.where;
    Field matches = rule.get("matches");
    for (const Field& m : read_sequence(ctx, matches).value_or(std::vector<Field>{})) {
      MapReader match(ctx, m, {"model"});
      if (!match.valid()) {
        if (!m.present()) ctx.error(m.where, m.path, "must be a mapping, not null");
        ok = false;
        continue;
      }
      MapReader model(ctx, match.require("model"), {"type", "value"});
      if (!model.valid()) {
        ok = false;
        continue;
      }
      Field type = model.get("type");
      if (type.present() && !read_enum(ctx, type, kMatchTypes)) ok = false;
      Field value = model.require("value");
      if (auto v = value.present() ? read_nonempty_string(ctx, value) : std::nullopt)
        r.matches.push_back({*v, value.path, value.where});
      else
        ok = false;
    }
    if (matches.present() && !matches.value.IsSequence()) ok = false;

    Field targets = rule.require("targets");
    if (auto t = read_targets(ctx, targets, "modelRewrite", std::numeric_limits<size_t>::max())) {
      if (t->empty()) {
        ctx.error(targets.where, targets.path, "must have at least one target");
        ok = false;
      }
      r.targets = std::move(*t);
    } else {
      ok = false;
    }
    out.rules.push_back(std::move(r));
  }
  if (!ref) return;
  out.complete = ok;
  out.meta = std::move(meta);
  docs.rewrites.push_back(std::move(out));
}

}  // namespace infergate::config::detail
