"""ModelSpec: what the estimator and the UI need to know about a model, read from its config alone."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LinearGroup:
    """All nn.Linear modules sharing one leaf name (e.g. every layer's ``q_proj``).

    Attributes:
        name: leaf module name.
        in_features: D, the input width.
        out_features: N, the output width (the weight is N x D).
        count: how many modules carry this name (usually num_hidden_layers).
    """

    name: str
    in_features: int
    out_features: int
    count: int

    def lora_params(self, r: int) -> int:
        """Trainable LoRA parameters over all ``count`` modules: count x r x (in + out) (seed 26.2.2)."""
        return self.count * r * (self.in_features + self.out_features)

    @property
    def base_params(self) -> int:
        """Frozen weight parameters over all modules: count x in x out."""
        return self.count * self.in_features * self.out_features


@dataclass(frozen=True)
class ModelSpec:
    """Shape facts of a causal LM, from ``config.json`` (built on the meta device; no weights read).

    Attributes:
        model_name_or_path: what the user picked.
        architecture: e.g. "LlamaForCausalLM".
        model_type: config.model_type, e.g. "llama".
        num_params: total parameters (tied embeddings counted once).
        dtype: dtype the checkpoint is stored in, e.g. "bfloat16".
        max_position_embeddings: context length in tokens.
        has_chat_template: whether the tokenizer ships a chat template.
        hidden_size, num_hidden_layers, intermediate_size, vocab_size, num_attention_heads,
        num_key_value_heads: the usual config fields.
        linear_groups: every nn.Linear leaf name inside the decoder layers (lm_head excluded).
        embedding_params: parameters of input embeddings plus an untied lm_head.
        source: where the facts came from: "config.json" (read from the model's folder or the hub), or
            "catalogue <date>" (core.catalogue's offline copy, read on that date); "" when not recorded.
    """

    model_name_or_path: str
    architecture: str
    model_type: str
    num_params: int
    dtype: str
    max_position_embeddings: int
    has_chat_template: bool
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    linear_groups: tuple[LinearGroup, ...] = field(default_factory=tuple)
    embedding_params: int = 0
    source: str = ""

    @property
    def linear_names(self) -> list[str]:
        """Leaf names of the adaptable linear modules, in model order."""
        return [g.name for g in self.linear_groups]

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder's linear weights (what 4-bit quantization packs)."""
        return sum(g.base_params for g in self.linear_groups)

    def lora_params(self, r: int, target_modules: tuple[str, ...] | list[str]) -> int:
        """Trainable parameters of a LoRA with rank ``r`` on ``target_modules``; equals peft's count."""
        wanted = set(target_modules)
        return sum(g.lora_params(r) for g in self.linear_groups if g.name in wanted)

    def lora_params_by_module(self, r: int, target_modules: tuple[str, ...] | list[str]) -> dict[str, int]:
        """{module name: count x r x (in + out)} for each targeted module name."""
        wanted = set(target_modules)
        return {g.name: g.lora_params(r) for g in self.linear_groups if g.name in wanted}
