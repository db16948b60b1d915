#include "sim/model_catalog.h"

namespace infergate::sim {

ModelCatalog::ModelCatalog(const SimOptions& options) {
  for (const std::string& name : options.effective_served_names()) {
    models_.push_back({name, options.model, {}});
  }
  for (const LoraModule& module : options.lora_modules) {
    const std::string& parent =
        module.base_model_name.empty() ? models_.front().name : module.base_model_name;
    models_.push_back({module.name, module.path, parent});
  }
}

bool ModelCatalog::add_adapter(std::string name, std::string path) {
  if (resolve(name) != nullptr || name.empty()) return false;
  std::string parent = models_.front().name;
  models_.push_back({std::move(name), std::move(path), std::move(parent)});
  return true;
}

bool ModelCatalog::remove_adapter(std::string_view name) {
  for (auto it = models_.begin(); it != models_.end(); ++it) {
    if (it->name == name && it->is_adapter()) {
      models_.erase(it);
      return true;
    }
  }
  return false;
}

const ServedModel* ModelCatalog::resolve(std::string_view requested) const {
  if (requested.empty()) return &models_.front();
  for (const ServedModel& model : models_) {
    if (model.name == requested) return &model;
  }
  return nullptr;
}

}  // namespace infergate::sim
