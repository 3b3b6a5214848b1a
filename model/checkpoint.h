// Checkpoint: the weights of an HF model folder, from model.safetensors or from the shards that
// model.safetensors.index.json lists, or of a GGUF file under the same (HF) tensor names. Each
// file is mapped once; tensors are found by name.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace iquest {

class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);
  // The tensors of a GGUF file under their HF names (blk.0.attn_q.weight is found as
  // model.layers.0.self_attn.q_proj.weight). Quantized tensors keep their blocks, under the
  // quantized DType (a non-finite block scale is kInvalidArgument naming the tensor). For
  // llama-architecture files the q/k rows (whole blocks, when quantized) are un-permuted into
  // owned copies (see gguf_model.h); every other tensor stays in the mapping.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> FromGguf(std::unique_ptr<GgufFile> file,
                                                              const ModelConfig& config);

  // The tensor and the path of the file that holds it, or nullptr when absent.
  struct Entry {
    const SafetensorsTensor* tensor;
    const std::string* file;
  };
  Entry Find(std::string_view name) const;
  std::vector<std::string> TensorNames() const;
  // How the file spells the tensor `name`, for errors: its GGUF name (blk.0.attn_q.weight) in a
  // GGUF checkpoint, `name` itself otherwise.
  std::string NameInFile(const std::string& name) const;
  // Drops the resident pages of [data, data + num_bytes) when that range is in one of the
  // mapped files (MappedFile::DropPages): for weights the backend holds its own copy of. A
  // range elsewhere (an owned copy) is left alone; false then.
  bool DropMappedPages(const void* data, size_t num_bytes) const;
  // model.safetensors, model.safetensors.index.json for a sharded checkpoint, or the .gguf.
  const std::string& source() const { return source_; }

 private:
  Checkpoint() = default;
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, Entry> entries_;
  std::string source_;
  std::unique_ptr<GgufFile> gguf_;
  std::deque<SafetensorsTensor> gguf_tensors_;  // Views of gguf_'s tensors; a deque keeps
                                                // Entry pointers stable as it grows.
  std::deque<std::vector<uint8_t>> owned_;      // Un-permuted q/k copies.
};

}  // namespace iquest
