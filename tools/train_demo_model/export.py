"""Writes the HF checkpoint folder: config.json, generation_config.json, tokenizer_config.json,
model.safetensors (bf16), and the held-out files the eval gate scores."""

import json
import os

import safetensors_bf16


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def write_configs(cfg, out):
    _write_json(os.path.join(out, "config.json"), {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "torch_dtype": "bfloat16",
    })
    _write_json(os.path.join(out, "generation_config.json"), {
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "do_sample": True,
        "temperature": 0.8,
        "top_p": 0.95,
    })
    # Training framed every file as [BOS] text [EOS], so prompts get a BOS as well.
    _write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": cfg.max_position_embeddings,
        "clean_up_tokenization_spaces": False,
    })


def write_weights(model, out):
    tensors = {name: p for name, p in model.state_dict().items()}
    safetensors_bf16.write(os.path.join(out, "model.safetensors"), tensors)


def read_weights(out, cfg):
    return safetensors_bf16.read(os.path.join(out, "model.safetensors"))


def write_validation(texts, path):
    """One JSON object per held-out file: {"path": relative to the stdlib, "text": ...}."""
    with open(path, "w", encoding="utf-8") as f:
        for p in sorted(texts):
            f.write(json.dumps({"path": p, "text": texts[p]}, ensure_ascii=False) + "\n")
