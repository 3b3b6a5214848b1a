// Binding a checkpoint to its config: missing, mis-shaped and mis-typed tensors, sharded
// checkpoints and their index, and garbage config.json. Errors name the file and the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <numeric>

#include "kernels/cpu/cpu_backend.h"
#include "model/llama.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_model.h"

namespace iquest {
namespace {

class ModelLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TinyModelOptions options;
    options.arch = "qwen2";
    ASSERT_OK(WriteTinyModel(dir_.path(), options));
    ASSERT_OK_AND_ASSIGN(tensors_, testing::ReadAllTensors(dir_.Join("model.safetensors")));
  }

  // Rewrites model.safetensors after `mutate` and returns the load error.
  absl::Status LoadAfter(const std::function<void(std::vector<TensorToWrite>&)>& mutate) {
    std::vector<TensorToWrite> tensors = tensors_;
    mutate(tensors);
    const absl::Status written = WriteSafetensors(dir_.Join("model.safetensors"), tensors);
    if (!written.ok()) return written;
    return LlamaModel::Load(dir_.path(), backend_).status();
  }

  TensorToWrite& Named(std::vector<TensorToWrite>& tensors, const std::string& name) {
    return *std::find_if(tensors.begin(), tensors.end(),
                         [&](const TensorToWrite& t) { return t.name == name; });
  }

  static void ExpectMentions(const absl::Status& status, const std::string& a,
                             const std::string& b) {
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.message().find(a), absl::string_view::npos) << status;
    EXPECT_NE(status.message().find(b), absl::string_view::npos) << status;
  }

  testing::TempDir dir_;
  CpuBackend backend_;
  std::vector<TensorToWrite> tensors_;
};

TEST_F(ModelLoaderTest, LoadsTheUnchangedModel) {
  EXPECT_OK(LoadAfter([](std::vector<TensorToWrite>&) {}));
}

TEST_F(ModelLoaderTest, MissingTensor) {
  const absl::Status status = LoadAfter([](std::vector<TensorToWrite>& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const TensorToWrite& x) {
                             return x.name == "model.layers.1.mlp.up_proj.weight";
                           }),
            t.end());
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  ExpectMentions(status, "model.safetensors", "model.layers.1.mlp.up_proj.weight");
}

TEST_F(ModelLoaderTest, MissingQwen2Bias) {
  const absl::Status status = LoadAfter([](std::vector<TensorToWrite>& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const TensorToWrite& x) {
                             return x.name == "model.layers.0.self_attn.k_proj.bias";
                           }),
            t.end());
  });
  ExpectMentions(status, "model.safetensors", "model.layers.0.self_attn.k_proj.bias");
}

// A Loop checkpoint's gates (model.gate_projections.{i}, outside model.layers): missing and
// mis-shaped ones are load errors naming the tensor and the expected shape.
TEST(LoopLoaderTest, GateTensorsAreCheckedByNameAndShape) {
  testing::TempDir dir;
  TinyModelOptions options;
  options.arch = "loop";
  options.num_heads = 4;
  options.hidden_size = 64;  // head_dim 16
  ASSERT_OK(WriteTinyModel(dir.path(), options));
  CpuBackend backend;
  ASSERT_OK(LlamaModel::Load(dir.path(), backend).status());
  ASSERT_OK_AND_ASSIGN(const std::vector<TensorToWrite> tensors,
                       testing::ReadAllTensors(dir.Join("model.safetensors")));
  auto load_after = [&](const std::function<void(std::vector<TensorToWrite>&)>& mutate) {
    std::vector<TensorToWrite> t = tensors;
    mutate(t);
    EXPECT_OK(WriteSafetensors(dir.Join("model.safetensors"), t));
    return LlamaModel::Load(dir.path(), backend).status();
  };
  const absl::Status missing = load_after([](std::vector<TensorToWrite>& t) {
    std::erase_if(t,
                  [](const TensorToWrite& x) { return x.name == "model.gate_projections.1.bias"; });
  });
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_NE(missing.message().find("'model.gate_projections.1.bias'"), std::string::npos)
      << missing;
  const absl::Status shape = load_after([](std::vector<TensorToWrite>& t) {
    for (TensorToWrite& x : t) {
      if (x.name == "model.gate_projections.0.weight") x.shape = {16, 4};  // Transposed.
    }
  });
  EXPECT_NE(shape.message().find("'model.gate_projections.0.weight' has shape [16, 4], "
                                 "expected [4, 16]"),
            std::string::npos)
      << shape;
}

TEST_F(ModelLoaderTest, ShapeMismatch) {
  const absl::Status status = LoadAfter([&](std::vector<TensorToWrite>& t) {
    TensorToWrite& norm = Named(t, "model.norm.weight");
    norm.shape = {63};
    norm.bytes.resize(63 * 4);
  });
  ExpectMentions(status, "model.safetensors", "'model.norm.weight' has shape [63], expected [64]");
}

TEST_F(ModelLoaderTest, DTypeMismatch) {
  const absl::Status status = LoadAfter([&](std::vector<TensorToWrite>& t) {
    Named(t, "model.layers.0.self_attn.q_proj.weight").dtype_name = "I32";
  });
  ExpectMentions(status, "model.layers.0.self_attn.q_proj.weight", "has dtype I32");
}

TEST_F(ModelLoaderTest, TruncatedWeightsFile) {
  std::vector<char> bytes;
  {
    std::ifstream in(dir_.Join("model.safetensors"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(dir_.Join("model.safetensors"), std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 100));
  ExpectMentions(LlamaModel::Load(dir_.path(), backend_).status(), "model.safetensors", "tensor '");
}

TEST_F(ModelLoaderTest, GarbageConfigJson) {
  std::ofstream(dir_.Join("config.json"), std::ios::trunc) << "{\"hidden_size\": 64,,}";
  ExpectMentions(LlamaModel::Load(dir_.path(), backend_).status(), "config.json", "invalid JSON");
}

// Splits the checkpoint into two shards with an index, as HF does for big models.
class ShardedLoaderTest : public ModelLoaderTest {
 protected:
  void WriteShards(const std::string& index_override = "") {
    const size_t half = tensors_.size() / 2;
    ASSERT_OK(WriteSafetensors(dir_.Join("model-00001-of-00002.safetensors"),
                               {tensors_.begin(), tensors_.begin() + half}));
    ASSERT_OK(WriteSafetensors(dir_.Join("model-00002-of-00002.safetensors"),
                               {tensors_.begin() + half, tensors_.end()}));
    std::string index = R"({"metadata": {"total_size": 0}, "weight_map": {)";
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (i > 0) index.append(",");
      index.append("\"").append(tensors_[i].name).append("\": \"model-0000");
      index.append(i < half ? "1" : "2").append("-of-00002.safetensors\"");
    }
    index += "}}";
    std::ofstream(dir_.Join("model.safetensors.index.json"))
        << (index_override.empty() ? index : index_override);
    std::filesystem::remove(dir_.Join("model.safetensors"));
  }
};

TEST_F(ShardedLoaderTest, ShardedGivesTheSameLogitsAsSingleFile) {
  auto logits_of = [&]() -> std::vector<float> {
    auto model = LlamaModel::Load(dir_.path(), backend_);
    EXPECT_OK(model);
    if (!model.ok()) return {};
    KvCacheConfig cache_config{4, 16, DType::kF32};
    auto cache = KvCache::Create(backend_, (*model)->config(), cache_config);
    std::vector<int32_t> table = {3, 1};
    BatchBuilder builder(16);
    builder.AddSequence(std::vector<int32_t>{5, 6, 7, 8, 9}, 0, table, LogitsWanted::kAll);
    std::vector<float> logits;
    EXPECT_OK((*model)->Forward(builder.Build(), **cache, logits));
    return logits;
  };
  const std::vector<float> single = logits_of();
  WriteShards();
  const std::vector<float> sharded = logits_of();
  ASSERT_FALSE(single.empty());
  EXPECT_EQ(single, sharded);
}

TEST_F(ShardedLoaderTest, IndexMayNotEscapeTheModelFolder) {
  WriteShards(R"({"weight_map": {"model.norm.weight": "../evil.safetensors"}})");
  ExpectMentions(LlamaModel::Load(dir_.path(), backend_).status(), "index.json",
                 "must name a file inside the model folder");
}

TEST_F(ShardedLoaderTest, MissingShard) {
  WriteShards(R"({"weight_map": {"model.norm.weight": "model-00009-of-00009.safetensors"}})");
  ExpectMentions(LlamaModel::Load(dir_.path(), backend_).status(),
                 "model-00009-of-00009.safetensors", "cannot open");
}

TEST_F(ShardedLoaderTest, TensorListedInTheWrongShard) {
  // Tensors come back sorted by name, so lm_head.weight is first and sits in shard 1.
  WriteShards(
      R"({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors",
          "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  ExpectMentions(LlamaModel::Load(dir_.path(), backend_).status(), "lm_head.weight", "not in it");
}

}  // namespace
}  // namespace iquest
