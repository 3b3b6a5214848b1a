#include "model/checkpoint.h"

#include <sys/stat.h>

#include <map>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "kernels/quant/ggml_quant.h"
#include "model/gguf_model.h"
#include "model/json_util.h"

namespace iquest {
namespace {

int64_t Numel(const std::vector<int64_t>& shape) {  // The GGUF reader bounded it by 2^63.
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

bool FileExists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

// Shard names come from a file we do not trust: plain names inside the model folder only.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.size() <= 255 && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name != "." && name != ".." &&
         name.find('\0') == std::string::npos;
}

// weight_map: tensor name -> shard file name.
absl::StatusOr<std::map<std::string, std::string>> ReadIndex(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(const nlohmann::json json, ParseJsonStrict(text, path));
  auto map = json.is_object() ? json.find("weight_map") : json.end();
  if (map == json.end() || !map->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": 'weight_map' must be an object"));
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& item : map->items()) {
    if (!item.value().is_string() || !IsPlainFileName(item.value().get<std::string>())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": weight_map entry '", item.key(),
                                                     "' must name a file inside the model folder"));
    }
    weight_map[item.key()] = item.value().get<std::string>();
  }
  return weight_map;
}

}  // namespace

absl::Status Checkpoint::AddFile(std::unique_ptr<SafetensorsFile> file) {
  for (const SafetensorsTensor& tensor : file->tensors()) {
    auto [it, inserted] = entries_.emplace(tensor.name, Entry{&tensor, &file->path()});
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", tensor.name, "' is in both ",
                                                     *it->second.file, " and ", file->path()));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  if (!FileExists(index_path)) {
    checkpoint->source_ = model_dir + "/model.safetensors";
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(model_dir + "/model.safetensors"));
    RETURN_IF_ERROR(checkpoint->AddFile(std::move(file)));
    return checkpoint;
  }
  checkpoint->source_ = index_path;
  ASSIGN_OR_RETURN(const auto weight_map, ReadIndex(index_path));
  std::map<std::string, bool> shards;
  for (const auto& [name, shard] : weight_map) shards[shard] = true;
  for (const auto& [shard, unused] : shards) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(model_dir + "/" + shard));
    RETURN_IF_ERROR(checkpoint->AddFile(std::move(file)));
  }
  for (const auto& [name, shard] : weight_map) {
    const Entry entry = checkpoint->Find(name);
    if (entry.tensor == nullptr || *entry.file != model_dir + "/" + shard) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": tensor '", name, "' is listed in shard ", shard, " but is not in it"));
    }
  }
  return checkpoint;
}

bool Checkpoint::DropMappedPages(const void* data, size_t num_bytes) const {
  if (gguf_ != nullptr && gguf_->mapping().DropPages(data, num_bytes)) return true;
  for (const std::unique_ptr<SafetensorsFile>& file : files_) {
    if (file->mapping().DropPages(data, num_bytes)) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::FromGguf(std::unique_ptr<GgufFile> file,
                                                                 const ModelConfig& config) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->source_ = file->path();
  for (const GgufTensor& gguf : file->tensors()) {
    if (gguf.name == kGgufRopeFreqsTensor) continue;  // Consumed by the config.
    // Names outside the Llama family keep their GGUF name; the binder reports them as unused.
    const std::string name = HfNameOfGgufTensor(gguf.name).value_or(gguf.name);
    SafetensorsTensor& tensor = checkpoint->gguf_tensors_.emplace_back();
    tensor.name = name;
    tensor.dtype = gguf.dtype;
    tensor.dtype_name = GgmlTypeName(gguf.ggml_type);
    tensor.shape = gguf.shape;
    tensor.data = gguf.data;
    tensor.num_bytes = gguf.num_bytes;
    if (gguf.quant) {
      // Served as the blocks themselves, from the mapping (the backends' Gemm and Embed read
      // quantized weights); a non-finite scale would poison a whole block's outputs.
      if (absl::Status valid = ValidateBlocks(*gguf.quant, gguf.data, Numel(gguf.shape));
          !valid.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file->path(), ": tensor '", gguf.name, "': ", valid.message()));
      }
      tensor.dtype = DTypeOf(*gguf.quant);
    }
    const int64_t heads = QkPermutationHeads(config, name);
    // A tensor of the wrong shape is left alone: the binder names it and the expected shape.
    if (heads > 0 && tensor.shape[0] == heads * config.head_dim) {
      const std::span<const uint8_t> rows(tensor.data, tensor.num_bytes);
      std::vector<uint8_t>& copy = checkpoint->owned_.emplace_back(tensor.num_bytes);
      PermuteQkRows(rows, copy, tensor.shape[0], heads, /*to_gguf=*/false);
      tensor.data = copy.data();
    }
    auto [it, inserted] = checkpoint->entries_.emplace(name, Entry{&tensor, &file->path()});
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", gguf.name,
                                                     "' maps to '", name,
                                                     "', which another tensor already has"));
    }
  }
  checkpoint->gguf_ = std::move(file);
  return checkpoint;
}

Checkpoint::Entry Checkpoint::Find(std::string_view name) const {
  auto it = entries_.find(std::string(name));
  return it == entries_.end() ? Entry{nullptr, nullptr} : it->second;
}

std::string Checkpoint::NameInFile(const std::string& name) const {
  if (gguf_ == nullptr) return name;
  return GgufNameOfHfTensor(name).value_or(name);
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

}  // namespace iquest
