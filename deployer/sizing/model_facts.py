"""What the capacity planner needs to know about a model, without loading its weights.

:func:`facts_from_config` reads a ``config.json`` (as a mapping) and, when given, the headers of
the model's ``.safetensors`` files; :func:`facts_from_folder` reads both from a model folder
(the headers only, never the tensors). The result, :class:`ModelFacts`, gives the shape that
sizes the KV cache (layers, key/value heads, head size, sliding window) and the weights' size.

With safetensors headers the parameter count and bytes are exact: what the files hold. Without
them :func:`estimate_parameters` derives the count from the architecture; it matches the
published totals of the families it knows (Llama, Mistral, Mixtral, Qwen2, Qwen2-MoE, Qwen3,
Gemma, Gemma 2, Phi-3, Falcon, BLOOM, GPT-2, GPT-NeoX, StarCoder2) to the parameter, and raises
:class:`PlanError` for any other ``model_type``. (For GPT-NeoX it counts the parameters; some
Pythia checkpoints also store buffers, such as the causal mask, that no engine loads.)

Config keys are read under their transformers names and the aliases older configs use (BLOOM's
``n_embed``/``n_layer``, GPT-2's ``n_embd``, Falcon RW's ``n_head_kv``). A missing or malformed
key raises :class:`PlanError` naming it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deployer import inputs
from deployer.errors import ManifestError, PlanError
from deployer.hub.safetensors_header import SafetensorsHeader, read_header
from deployer.hub.safety import needs_remote_code

Dtype = Literal["bfloat16", "float16", "float32"]
Attention = Literal["MHA", "GQA", "MQA"]
ParameterSource = Literal["safetensors", "architecture"]

#: Bytes per element of each dtype a config may name.
DTYPE_BYTES: Mapping[Dtype, int] = {"bfloat16": 2, "float16": 2, "float32": 4}

#: The safetensors name of each dtype, used as the key of ``bytes_by_dtype`` for estimates too.
SAFETENSORS_DTYPE: Mapping[Dtype, str] = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}

_DTYPE_ALIASES: Mapping[str, Dtype] = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}

_LLAMA_LIKE = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma2", "phi3"}
)
_FALCON = frozenset({"falcon", "RefinedWeb", "RefinedWebModel"})
_WITH_QKV_BIAS = frozenset({"qwen2", "qwen2_moe"})
# Phi-3's projections never have biases, whatever attention_bias says.
_WITHOUT_BIAS = frozenset({"phi3"})
# Qwen3 normalizes each query and key head (q_norm, k_norm: head_dim weights each per layer).
_QK_NORM = frozenset({"qwen3"})
# Gemma 2 wraps attention and MLP in norms on both sides: four RMSNorms per layer, not two.
_SANDWICH_NORM = frozenset({"gemma2"})
# transformers' default when a config omits tie_word_embeddings: PretrainedConfig says True,
# these families' config classes say False.
_UNTIED_BY_DEFAULT = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "phi3", "gpt_neox"}
)

_SAFETENSORS_INDEX = "model.safetensors.index.json"

_CONFIG_HINT = (
    "check that config.json is the model's own, complete transformers config; deployer reads "
    "the model's shape from it to size memory"
)
_ESTIMATE_HINT = (
    "point deployer at a folder (or repository) with the model's .safetensors files: their "
    "headers give the exact parameter count"
)


@dataclass(frozen=True)
class ModelFacts:
    """A model's shape and weight size, read from its config and safetensors headers."""

    architecture: str
    """``config["architectures"][0]``, e.g. ``"LlamaForCausalLM"``."""
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int | None
    """The MLP width (per expert for MoE models); ``4 * hidden_size`` where the family fixes it."""
    num_attention_heads: int
    num_kv_heads: int
    """Key/value heads: ``num_key_value_heads``; 1 for Falcon's ``multi_query``; all heads
    for MHA families (BLOOM, GPT-2)."""
    head_dim: int
    vocab_size: int
    max_position_embeddings: int | None
    """None when the config sets no limit (ALiBi models such as BLOOM)."""
    sliding_window: int | None
    """Tokens each layer attends to, when the engine applies a window; Qwen2's and Qwen3's count
    only with ``use_sliding_window``. Reported as the config states it: Gemma 2 applies it on
    every other layer only (the rest attend to the whole context)."""
    num_experts: int | None
    experts_per_token: int | None
    tie_word_embeddings: bool
    dtype: Dtype
    """The config's ``torch_dtype``/``dtype``; without one, the dtype holding most bytes in the
    headers, else ``float32`` (transformers' default)."""
    parameter_count: int
    parameter_source: ParameterSource
    weight_bytes: int
    """The safetensors data bytes; estimated as ``parameter_count`` times the dtype's size."""
    bytes_by_dtype: dict[str, int] = field(hash=False)
    """Weight bytes per safetensors dtype name (``{"BF16": ...}``)."""
    needs_remote_code: bool
    """Whether the config has an ``auto_map`` (transformers would import the repository's
    Python)."""
    sliding_layers: int | None = None
    """How many layers apply ``sliding_window`` when not all do (Gemma 2 every other one, from
    ``layer_types`` or the family's pattern; the rest attend to the whole context); None when
    every layer does, or there is no window."""

    unmodelled: tuple[str, ...] = ()
    """Parts of the model's KV cache layout deployer does not model, each a sentence naming the
    part and the size of the error it may cause (multi-head latent attention, chunked local
    attention, state-space or linear-attention layers, cross-attention); empty when none."""

    @property
    def attention(self) -> Attention:
        """``MHA``: a key/value per head; ``MQA``: one shared by all; ``GQA``: groups of heads."""
        if self.num_kv_heads == self.num_attention_heads:
            return "MHA"
        if self.num_kv_heads == 1:
            return "MQA"
        return "GQA"

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Bytes of KV cache one token takes: a key and a value per layer and key/value head,
        each ``head_dim`` elements of ``dtype_bytes``. A sliding window caps the tokens kept,
        not this figure."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes


def facts_from_config(
    config: Mapping[str, object], headers: Sequence[SafetensorsHeader] = ()
) -> ModelFacts:
    """The facts of the model ``config`` describes; exact sizes when ``headers`` are given.

    ``headers`` are the model's safetensors headers (every shard, each once). Without them the
    parameter count is :func:`estimate_parameters`'s and the bytes follow from the dtype.
    Raises :class:`PlanError` naming a missing or malformed key, or an unknown ``model_type``
    when there are no headers to count. Pure.
    """
    reader = _Config(config)
    architecture = _architecture(reader)
    model_type = reader.string("model_type")
    num_layers = reader.positive("num_hidden_layers", "n_layer")
    hidden_size = reader.positive("hidden_size", "n_embed", "n_embd", "d_model")
    heads = reader.positive("num_attention_heads", "n_head")
    tied = reader.flag("tie_word_embeddings", default=model_type not in _UNTIED_BY_DEFAULT)
    kv_heads = _kv_heads(reader, model_type, heads)
    head_dim = _head_dim(reader, hidden_size, heads)
    dtype = _dtype(reader, headers)
    if headers:
        count = sum(header.parameter_count for header in headers)
        by_dtype = _merge_bytes(headers)
        weight_bytes = sum(header.data_bytes for header in headers)
        source: ParameterSource = "safetensors"
    else:
        count = estimate_parameters(config)
        weight_bytes = count * DTYPE_BYTES[dtype]
        by_dtype = {SAFETENSORS_DTYPE[dtype]: weight_bytes}
        source = "architecture"
    return ModelFacts(
        architecture=architecture,
        model_type=model_type,
        num_layers=num_layers,
        hidden_size=hidden_size,
        intermediate_size=_intermediate_size(reader, model_type, hidden_size),
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=reader.positive("vocab_size"),
        max_position_embeddings=reader.optional_positive("max_position_embeddings", "n_positions"),
        sliding_window=(window := _sliding_window(reader)),
        num_experts=reader.optional_positive("num_local_experts", "num_experts"),
        experts_per_token=reader.optional_positive("num_experts_per_tok"),
        tie_word_embeddings=tied,
        dtype=dtype,
        parameter_count=count,
        parameter_source=source,
        weight_bytes=weight_bytes,
        bytes_by_dtype=by_dtype,
        needs_remote_code=needs_remote_code(config),
        sliding_layers=_sliding_layers(reader, model_type, num_layers) if window else None,
        unmodelled=_unmodelled(reader, num_layers, 2 * kv_heads * head_dim),
    )


def facts_from_folder(folder: Path) -> ModelFacts:
    """The facts of the model in ``folder``: its ``config.json`` and its top-level safetensors.

    Reads each ``.safetensors`` file's header only, never the tensors. With
    ``model.safetensors.index.json`` present, ``consolidated*.safetensors`` (Mistral's second
    copy of the same weights) is skipped, as the engine skips it. A folder without safetensors
    gets an estimate from the architecture. Raises :class:`PlanError` when ``config.json`` is
    missing or not a JSON object, and :class:`~deployer.errors.UnsafeModelError` for a header
    that does not parse. Reads only.
    """
    config_path = folder / "config.json"
    try:
        config = inputs.read_json_object(config_path, inputs.MODEL_CONFIG)
    except FileNotFoundError:
        raise PlanError(
            f"{folder} has no config.json",
            hint="a model folder holds the transformers config.json beside its weights",
        ) from None
    except ManifestError as exc:
        raise PlanError(f"{config_path}: {exc.reason}", hint=_CONFIG_HINT) from None
    headers = [read_header(path) for path in _weight_files(folder)]
    return facts_from_config(config, headers)


def estimate_parameters(config: Mapping[str, object]) -> int:
    """The parameter count of the model ``config`` describes, from its architecture.

    Counts what the checkpoint stores: every weight and bias, the embeddings, and the output
    projection unless tied to them (non-persistent buffers such as rotary frequencies are not
    stored). Raises :class:`PlanError` for a ``model_type`` it does not know, or a missing or
    malformed key. Pure.
    """
    reader = _Config(config)
    model_type = reader.string("model_type")
    if model_type in _LLAMA_LIKE:
        return _llama_like(reader, model_type)
    if model_type in _FALCON:
        return _falcon(reader)
    if model_type == "bloom":
        return _bloom(reader)
    if model_type == "gpt2":
        return _gpt2(reader)
    if model_type == "gpt_neox":
        return _gpt_neox(reader)
    if model_type == "starcoder2":
        return _starcoder2(reader)
    known = sorted(_LLAMA_LIKE | _FALCON | {"bloom", "gpt2", "gpt_neox", "starcoder2"})
    raise PlanError(
        f"cannot estimate the parameters of model_type {model_type!r} from its config "
        f"(known: {', '.join(known)})",
        hint=_ESTIMATE_HINT,
    )


# --- families -----------------------------------------------------------------------------------


def _llama_like(reader: _Config, model_type: str) -> int:
    """Llama, Mistral, Qwen2/3, Gemma (1, 2), Phi-3 and the MoE forms: RMSNorm (weight only),
    gated MLP, RoPE.

    Phi-3 fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``: the same weights in
    fewer tensors. Gemma's GeGLU MLP has the same three matrices as SwiGLU.
    """
    hidden = reader.positive("hidden_size")
    layers = reader.positive("num_hidden_layers")
    heads = reader.positive("num_attention_heads")
    kv_heads = _kv_heads(reader, model_type, heads)
    head_dim = _head_dim(reader, hidden, heads)
    vocab = reader.positive("vocab_size")
    tied = reader.flag("tie_word_embeddings", default=model_type not in _UNTIED_BY_DEFAULT)

    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    attention = hidden * q_width + 2 * hidden * kv_width + q_width * hidden
    if model_type in _WITH_QKV_BIAS:
        attention += q_width + 2 * kv_width
    elif model_type not in _WITHOUT_BIAS and reader.flag("attention_bias", default=False):
        attention += q_width + 2 * kv_width + hidden
    if model_type in _QK_NORM:
        attention += 2 * head_dim
    norms = (4 if model_type in _SANDWICH_NORM else 2) * hidden

    if model_type == "mixtral":
        experts = reader.positive("num_local_experts")
        mlp = experts * _gated_mlp(reader, hidden, reader.positive("intermediate_size"))
        per_layer = [attention + mlp + hidden * experts + norms] * layers
    elif model_type == "qwen2_moe":
        per_layer = [attention + _qwen2_moe_mlp(reader, hidden, i) + norms for i in range(layers)]
    else:
        mlp = _gated_mlp(reader, hidden, reader.positive("intermediate_size"))
        per_layer = [attention + mlp + norms] * layers

    embeddings = vocab * hidden
    lm_head = 0 if tied else vocab * hidden
    return embeddings + sum(per_layer) + hidden + lm_head


def _gated_mlp(reader: _Config, hidden: int, width: int) -> int:
    # gate_proj and up_proj (hidden -> width), down_proj (width -> hidden).
    biases = 2 * width + hidden if reader.flag("mlp_bias", default=False) else 0
    return 3 * hidden * width + biases


def _qwen2_moe_mlp(reader: _Config, hidden: int, layer: int) -> int:
    # transformers' Qwen2MoeDecoderLayer: sparse unless listed in mlp_only_layers or off-step.
    only_dense = reader.int_list("mlp_only_layers")
    step = reader.optional_positive("decoder_sparse_step") or 1
    experts = reader.positive("num_experts")
    if layer in only_dense or (layer + 1) % step != 0:
        return 3 * hidden * reader.positive("intermediate_size")
    routed = experts * 3 * hidden * reader.positive("moe_intermediate_size")
    router = hidden * experts
    shared_width = reader.optional_positive("shared_expert_intermediate_size") or 0
    shared = 3 * hidden * shared_width + hidden if shared_width else 0
    return routed + router + shared


def _falcon(reader: _Config) -> int:
    """Falcon: fused query_key_value, LayerNorms with bias, a 4h GELU MLP, tied lm_head.

    The 7B (``multi_query``) has one key/value head and, with parallel attention, one
    LayerNorm per layer; the 40B (``new_decoder_architecture``) has ``num_kv_heads`` groups and
    two (``ln_attn``, ``ln_mlp``).
    """
    hidden = reader.positive("hidden_size")
    layers = reader.positive("num_hidden_layers", "n_layer")
    heads = reader.positive("num_attention_heads", "n_head")
    kv_heads = _kv_heads(reader, "falcon", heads)
    head_dim = _head_dim(reader, hidden, heads)
    vocab = reader.positive("vocab_size")
    bias = reader.flag("bias", default=False)
    ffn = _intermediate_size(reader, "falcon", hidden) or 4 * hidden

    qkv_width = (heads + 2 * kv_heads) * head_dim
    attention = hidden * qkv_width + heads * head_dim * hidden
    mlp = 2 * hidden * ffn
    if bias:
        attention += qkv_width + hidden
        mlp += ffn + hidden
    if reader.flag("new_decoder_architecture", default=False):
        layer_norms = reader.optional_positive("num_ln_in_parallel_attn") or 2
    elif reader.flag("parallel_attn", default=True):
        layer_norms = 1
    else:
        layer_norms = 2
    per_layer = attention + mlp + layer_norms * 2 * hidden

    tied = reader.flag("tie_word_embeddings", default=True)
    lm_head = 0 if tied else vocab * hidden
    return vocab * hidden + layers * per_layer + 2 * hidden + lm_head


def _bloom(reader: _Config) -> int:
    """BLOOM: ALiBi (no position table), LayerNorm after the embeddings, biases everywhere."""
    hidden = reader.positive("hidden_size", "n_embed")
    layers = reader.positive("num_hidden_layers", "n_layer")
    vocab = reader.positive("vocab_size")
    ffn = 4 * hidden
    attention = hidden * 3 * hidden + 3 * hidden + hidden * hidden + hidden
    mlp = 2 * hidden * ffn + ffn + hidden
    per_layer = attention + mlp + 2 * (2 * hidden)
    tied = reader.flag("tie_word_embeddings", default=True)
    lm_head = 0 if tied else vocab * hidden
    embeddings = vocab * hidden + 2 * hidden
    return embeddings + layers * per_layer + 2 * hidden + lm_head


def _gpt2(reader: _Config) -> int:
    """GPT-2: learned positions, Conv1D layers with biases, LayerNorms with bias."""
    hidden = reader.positive("n_embd", "hidden_size")
    layers = reader.positive("n_layer", "num_hidden_layers")
    vocab = reader.positive("vocab_size")
    positions = reader.positive("n_positions", "max_position_embeddings")
    ffn = _intermediate_size(reader, "gpt2", hidden) or 4 * hidden
    attention = hidden * 3 * hidden + 3 * hidden + hidden * hidden + hidden
    mlp = 2 * hidden * ffn + ffn + hidden
    per_layer = attention + mlp + 2 * (2 * hidden)
    tied = reader.flag("tie_word_embeddings", default=True)
    lm_head = 0 if tied else vocab * hidden
    return vocab * hidden + positions * hidden + layers * per_layer + 2 * hidden + lm_head


def _gpt_neox(reader: _Config) -> int:
    """GPT-NeoX (Pythia, GPT-NeoX-20B): fused query_key_value, biases on every projection,
    LayerNorms with bias, a plain GELU MLP, and an untied ``embed_out``."""
    hidden = reader.positive("hidden_size")
    layers = reader.positive("num_hidden_layers")
    vocab = reader.positive("vocab_size")
    ffn = reader.positive("intermediate_size")
    attention = hidden * 3 * hidden + hidden * hidden
    if reader.flag("attention_bias", default=True):
        attention += 3 * hidden + hidden
    mlp = 2 * hidden * ffn + ffn + hidden
    per_layer = attention + mlp + 2 * (2 * hidden)
    tied = reader.flag("tie_word_embeddings", default=False)
    lm_head = 0 if tied else vocab * hidden
    return vocab * hidden + layers * per_layer + 2 * hidden + lm_head


def _starcoder2(reader: _Config) -> int:
    """StarCoder2: GQA with RoPE, biases everywhere (``use_bias``), LayerNorms with bias, a
    plain GELU MLP (``c_fc``, ``c_proj``), and an lm_head tied to the embeddings."""
    hidden = reader.positive("hidden_size")
    layers = reader.positive("num_hidden_layers")
    heads = reader.positive("num_attention_heads")
    kv_heads = _kv_heads(reader, "starcoder2", heads)
    head_dim = _head_dim(reader, hidden, heads)
    vocab = reader.positive("vocab_size")
    ffn = reader.positive("intermediate_size")
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    attention = hidden * q_width + 2 * hidden * kv_width + q_width * hidden
    mlp = 2 * hidden * ffn
    if reader.flag("use_bias", default=True):
        attention += q_width + 2 * kv_width + hidden
        mlp += ffn + hidden
    per_layer = attention + mlp + 2 * (2 * hidden)
    tied = reader.flag("tie_word_embeddings", default=True)
    lm_head = 0 if tied else vocab * hidden
    return vocab * hidden + layers * per_layer + 2 * hidden + lm_head


# --- shared fields ------------------------------------------------------------------------------


def _architecture(reader: _Config) -> str:
    architectures = reader.raw("architectures")
    if (
        not isinstance(architectures, list)
        or not architectures
        or not isinstance(architectures[0], str)
    ):
        raise PlanError(
            f"config.json has no usable 'architectures' (found {architectures!r})",
            hint=_CONFIG_HINT,
        )
    return architectures[0]


def _kv_heads(reader: _Config, model_type: str, heads: int) -> int:
    if model_type in _FALCON:
        if reader.flag("new_decoder_architecture", default=False):
            return reader.positive("num_kv_heads", "n_head_kv")
        return 1 if reader.flag("multi_query", default=True) else heads
    if model_type in {"bloom", "gpt2"}:
        return heads
    kv_heads = reader.optional_positive("num_key_value_heads") or heads
    if heads % kv_heads:
        raise PlanError(
            f"config.json has num_attention_heads {heads}, not a multiple of "
            f"num_key_value_heads {kv_heads}",
            hint=_CONFIG_HINT,
        )
    return kv_heads


def _head_dim(reader: _Config, hidden: int, heads: int) -> int:
    explicit = reader.optional_positive("head_dim")
    if explicit is not None:
        return explicit
    if hidden % heads:
        raise PlanError(
            f"config.json has hidden_size {hidden}, not a multiple of num_attention_heads "
            f"{heads}, and no head_dim",
            hint=_CONFIG_HINT,
        )
    return hidden // heads


def _intermediate_size(reader: _Config, model_type: str, hidden: int) -> int | None:
    if model_type in _FALCON:
        return reader.optional_positive("ffn_hidden_size") or 4 * hidden
    if model_type == "bloom":
        return 4 * hidden
    if model_type == "gpt2":
        return reader.optional_positive("n_inner") or 4 * hidden
    return reader.optional_positive("intermediate_size")


#: Families whose layers alternate between the window and full attention, when the config has no
#: ``layer_types``: Gemma 2 windows every other layer (the even ones, transformers' default),
#: Gemma 3 and Cohere 2 all but every ``sliding_window_pattern``-th (default 6 and 4).
_INTERLEAVED_PATTERN: Mapping[str, int] = {"gemma2": 2, "gemma3": 6, "gemma3_text": 6, "cohere2": 4}


def _sliding_layers(reader: _Config, model_type: str, num_layers: int) -> int | None:
    """How many of ``num_layers`` apply the window when not all do (see
    :attr:`ModelFacts.sliding_layers`)."""
    types = reader.raw("layer_types")
    if isinstance(types, list) and len(types) == num_layers:
        sliding = sum(1 for kind in types if kind == "sliding_attention")
    elif model_type in _INTERLEAVED_PATTERN:
        every = _INTERLEAVED_PATTERN[model_type]
        if model_type != "gemma2":
            every = reader.optional_positive("sliding_window_pattern") or every
        sliding = num_layers - num_layers // every
    else:
        return None
    return sliding if sliding < num_layers else None


_MODELLED_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})


def _unmodelled(reader: _Config, num_layers: int, planned: int) -> tuple[str, ...]:
    """The layouts of :attr:`ModelFacts.unmodelled` that ``reader``'s config shows; ``planned``
    is the plan's K and V values per layer and token.

    Each is a KV cache spec of vLLM's (``vllm/v1/kv_cache_interface.py``) other than
    ``FullAttentionSpec`` and ``SlidingWindowSpec``, which the planner models exactly.
    """
    notes: list[str] = []
    rank = reader.optional_positive("kv_lora_rank")
    if rank is not None:
        cached = rank + (reader.optional_positive("qk_rope_head_dim") or 0)
        notes.append(
            f"multi-head latent attention (kv_lora_rank {rank}) is not modelled: vLLM's "
            f"MLAAttentionSpec caches {cached} values per layer and token where the plan counts "
            f"{planned}, so the planned KV tokens and concurrency may be {planned / cached:.1f}x "
            "too low"
        )
    chunk = reader.optional_positive("attention_chunk_size")
    if chunk is not None:
        notes.append(
            f"chunked local attention ({chunk:,}-token chunks) is not modelled: the plan counts "
            "those layers as full attention (vLLM's ChunkedLocalAttentionSpec holds at most a "
            "chunk per request), so above that context the planned concurrency may be too low, "
            f"by up to the share of chunked layers; up to {num_layers}x in the extreme"
        )
    other = _other_layers(reader, num_layers)
    if other:
        notes.append(
            f"{other} of {num_layers} layers are state-space or linear attention, not modelled: "
            "vLLM keeps a fixed state per request for them (MambaSpec) where the plan counts "
            "KV per token, so the planned KV tokens may be off either way, by up to "
            f"{num_layers / max(num_layers - other, 1):.1f}x"
        )
    if reader.raw("is_encoder_decoder") is True or reader.raw("cross_attention_layers"):
        notes.append(
            "cross-attention to an encoder is not modelled: vLLM's CrossAttentionSpec caches "
            "the encoder's tokens per request as well, so the planned concurrency may be too "
            "high by the encoder's share of the cache"
        )
    return tuple(notes)


def _other_layers(reader: _Config, num_layers: int) -> int:
    """Layers that are neither full nor sliding-window attention (Mamba, linear attention):
    from ``layer_types``, Jamba's and Granite's ``layers_block_type``, or Nemotron-H's
    ``hybrid_override_pattern`` (``M`` a Mamba layer)."""
    types = reader.raw("layer_types")
    if isinstance(types, list):
        return sum(1 for kind in types if kind not in _MODELLED_LAYER_TYPES)
    blocks = reader.raw("layers_block_type")
    if isinstance(blocks, list):
        return sum(1 for kind in blocks if kind != "attention")
    pattern = reader.raw("hybrid_override_pattern")
    if isinstance(pattern, str):
        return pattern.count("M")
    return 0


def _sliding_window(reader: _Config) -> int | None:
    # Qwen2 ships sliding_window: 131072 with use_sliding_window: false; the window is off.
    if not reader.flag("use_sliding_window", default=True):
        return None
    return reader.optional_positive("sliding_window")


def _dtype(reader: _Config, headers: Sequence[SafetensorsHeader]) -> Dtype:
    key = "torch_dtype" if reader.raw("torch_dtype") is not None else "dtype"
    value = reader.raw(key)
    if value is None:
        return _dominant_dtype(headers)
    name = value.removeprefix("torch.") if isinstance(value, str) else None
    if name is None or name not in _DTYPE_ALIASES:
        raise PlanError(
            f"config.json has {key} {value!r}; expected bfloat16, float16 or float32",
            hint=_CONFIG_HINT,
        )
    return _DTYPE_ALIASES[name]


def _dominant_dtype(headers: Sequence[SafetensorsHeader]) -> Dtype:
    by_name = {name: dtype for dtype, name in SAFETENSORS_DTYPE.items()}
    totals = _merge_bytes(headers)
    floats = [(size, name) for name, size in totals.items() if name in by_name]
    if not floats:
        return "float32"
    return by_name[max(floats)[1]]


def _merge_bytes(headers: Sequence[SafetensorsHeader]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for header in headers:
        for dtype, size in header.bytes_by_dtype.items():
            totals[dtype] = totals.get(dtype, 0) + size
    return totals


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(path for path in folder.glob("*.safetensors") if path.is_file())
    if (folder / _SAFETENSORS_INDEX).is_file():
        files = [path for path in files if not fnmatch.fnmatchcase(path.name, "consolidated*")]
    return files


# --- reading config values ---------------------------------------------------------------------


class _Config:
    """Typed reads from a config mapping; every problem is a :class:`PlanError` naming the key."""

    def __init__(self, config: Mapping[str, object]):
        self._config = config

    def raw(self, key: str) -> object:
        return self._config.get(key)

    def string(self, key: str) -> str:
        value = self._config.get(key)
        if not isinstance(value, str) or not value:
            raise self._problem(key, value, "a name")
        return value

    def positive(self, key: str, *aliases: str) -> int:
        value = self.optional_positive(key, *aliases)
        if value is None:
            also = f" (nor {', '.join(repr(a) for a in aliases)})" if aliases else ""
            raise PlanError(f"config.json has no {key!r}{also}", hint=_CONFIG_HINT)
        return value

    def optional_positive(self, key: str, *aliases: str) -> int | None:
        """The first of ``key`` and ``aliases`` present and not null; None when none is."""
        for name in (key, *aliases):
            value = self._config.get(name)
            if value is None:
                continue
            # bool is an int subclass; JSON true must not pass as 1.
            if type(value) is not int or value <= 0:
                raise self._problem(name, value, "a positive integer")
            return value
        return None

    def flag(self, key: str, *, default: bool) -> bool:
        value = self._config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._problem(key, value, "true or false")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self._config.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(type(item) is int for item in value):
            raise self._problem(key, value, "a list of integers")
        return value

    @staticmethod
    def _problem(key: str, value: object, expected: str) -> PlanError:
        if value is None:
            return PlanError(f"config.json has no {key!r}", hint=_CONFIG_HINT)
        return PlanError(
            f"config.json has {key} {value!r}, which is not {expected}", hint=_CONFIG_HINT
        )
