#pragma once
// The model names a simulator serves: the served model names (the base model) and the LoRA
// adapters, each a model name of its own, as vLLM's OpenAIServingModels sees them.

#include "sim/options.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infergate::sim {

struct ServedModel {
  std::string name;    // what requests put in "model" and responses echo
  std::string root;    // base: the --model path; adapter: its path
  std::string parent;  // adapters: the base model name; empty for base names
  bool is_adapter() const { return !parent.empty(); }
};

class ModelCatalog {
 public:
  explicit ModelCatalog(const SimOptions& options);

  // nullptr: vLLM answers 404 "The model `X` does not exist.". An empty name resolves to the
  // first served name, as vLLM does when "model" is omitted.
  const ServedModel* resolve(std::string_view requested) const;

  // POST /v1/load_lora_adapter: a new adapter of the first served name; false when the name is
  // already served. POST /v1/unload_lora_adapter: false when no adapter has that name. Both
  // invalidate pointers from resolve().
  bool add_adapter(std::string name, std::string path);
  bool remove_adapter(std::string_view name);

  // Base names first, then adapters, in command-line then load order (the /v1/models order).
  const std::vector<ServedModel>& models() const { return models_; }
  // The first served name: vLLM's model_name metric label and the default model.
  const std::string& primary_name() const { return models_.front().name; }

 private:
  std::vector<ServedModel> models_;
};

}  // namespace infergate::sim
