// Checkpoint: the weights of an HF model folder, from model.safetensors or from the shards that
// model.safetensors.index.json lists. Each shard is mapped once; tensors are found by name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "model/safetensors.h"

namespace iquest {

class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);

  // The tensor and the path of the file that holds it, or nullptr when absent.
  struct Entry {
    const SafetensorsTensor* tensor;
    const std::string* file;
  };
  Entry Find(std::string_view name) const;
  std::vector<std::string> TensorNames() const;
  // model.safetensors, or model.safetensors.index.json for a sharded checkpoint.
  const std::string& source() const { return source_; }

 private:
  Checkpoint() = default;
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, Entry> entries_;
  std::string source_;
};

}  // namespace iquest
