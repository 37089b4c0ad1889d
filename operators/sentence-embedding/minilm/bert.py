"""BERT's encoder in plain torch, reading all-MiniLM-L6-v2's ``model.safetensors``.

Why not ``transformers.AutoModel``: in a fresh process importing transformers and building
its BERT took ~2.9 s on the 2-vCPU VM (0.55 s import, 2.3 s ``from_pretrained``), this
~0.05 s, and every Ray actor of a step pays it at start-up, all at once (benchmarks/
w5_model.py, "with start-up"). The computation is BERT's, in the same order: embeddings
(word + position + token type 0) and LayerNorm, then per layer self-attention with the
padding masked, a residual LayerNorm, a GELU feed-forward, a residual LayerNorm. The last
hidden states equal transformers' within ~4e-6 (tests/test_hub_operators.py checks the
vectors against sentence-transformers' own ``encode``). Query, key and value come from one
matrix product over their stacked weights: one GPU kernel instead of three per layer; on the
CPU the vectors are the same to the bit and as fast (1,277 help-topic passages, 2 vCPUs).

Half precision (``dtype=torch.bfloat16`` or ``torch.float16``) is mixed, as ``torch.autocast``
would run it, with the weights cast once at load instead of at every call: the matrix
products and attention run in the half dtype, while the embeddings, the residual sum and
LayerNorm stay float32 (a LayerNorm over half-precision sums is where BERT loses most). In
float32 every cast below is a no-op (``Tensor.to`` returns the tensor itself), so the float32
computation is the one it always was.
"""
import json
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from safetensors.torch import load_file
from torch.nn import functional

# What this encoder implements; another config is refused rather than computed wrongly.
SUPPORTED = {'model_type': 'bert', 'hidden_act': 'gelu', 'position_embedding_type': 'absolute'}
_DEFAULTS = {'position_embedding_type': 'absolute'}   # BertConfig's, when config.json omits it
_LAYER_WEIGHTS = ('attention.self.query', 'attention.self.key', 'attention.self.value',
                  'attention.output.dense', 'attention.output.LayerNorm', 'intermediate.dense',
                  'output.dense', 'output.LayerNorm')
# The layer weights computed in the half dtype (the others, LayerNorm, stay float32).
_HALF_WEIGHTS = ('query', 'key', 'value', 'dense')


class BertEncoder:
    """``encoder(input_ids, attention_mask)`` -> the last hidden states, ``(batch, width,
    hidden)`` in float32, like ``BertModel(...).last_hidden_state`` in eval mode with token
    type 0; ``dtype`` is what the matrix products compute in (see the module's docstring)."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        config = json.loads((folder / 'config.json').read_text())
        found = {key: config.get(key, _DEFAULTS.get(key)) for key in SUPPORTED}
        if found != SUPPORTED:
            raise ValueError(f'{folder / "config.json"}: this BERT encoder computes {SUPPORTED}, '
                             f'the model asks for {found}')
        self.pad_token_id = config.get('pad_token_id', 0)
        self.heads = config['num_attention_heads']
        self.eps = config['layer_norm_eps']
        weights = load_file(str(folder / 'model.safetensors'), device=str(device))
        weights = {name.removeprefix('bert.'): tensor for name, tensor in weights.items()}
        self.dtype = dtype
        weights = {name: tensor.to(dtype) if name.startswith('encoder.') and
                   name.rsplit('.', 2)[-2] in _HALF_WEIGHTS else tensor
                   for name, tensor in weights.items()}
        self.word = weights['embeddings.word_embeddings.weight']
        self.position = weights['embeddings.position_embeddings.weight']
        self.token_type = weights['embeddings.token_type_embeddings.weight'][0]
        self.embedding_norm = self._pair(weights, 'embeddings.LayerNorm')
        self.layers = [self._layer_weights(weights, f'encoder.layer.{index}')
                       for index in range(config['num_hidden_layers'])]

    @staticmethod
    def _pair(weights: Dict[str, torch.Tensor], name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        return weights[f'{name}.weight'], weights[f'{name}.bias']

    def _layer_weights(self, weights: Dict[str, torch.Tensor],
                       prefix: str) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """A layer's weight pairs in ``_layer``'s order, query, key and value stacked into one
        (one matrix product instead of three, reading the hidden states once)."""
        pairs = [self._pair(weights, f'{prefix}.{name}') for name in _LAYER_WEIGHTS]
        query_key_value = tuple(torch.cat(parts) for parts in zip(*pairs[:3]))
        return [query_key_value, *pairs[3:]]

    def _norm(self, x: torch.Tensor, pair: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return functional.layer_norm(x, x.shape[-1:], *pair, eps=self.eps)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, width = input_ids.shape
        x = self.word[input_ids] + self.position[:width] + self.token_type
        x = self._norm(x, self.embedding_norm)
        hidden = x.shape[-1]
        # padding keys get the dtype's lowest value added to their scores, as in transformers
        mask = (1.0 - attention_mask[:, None, None, :].to(self.dtype)) * torch.finfo(self.dtype).min
        for layer in self.layers:
            x = self._layer(x, mask, layer, batch, width, hidden)
        return x

    def _layer(self, x: torch.Tensor, mask: torch.Tensor, layer: List[Tuple[torch.Tensor, torch.Tensor]],
               batch: int, width: int, hidden: int) -> torch.Tensor:
        query_key_value, attention_out, attention_norm, intermediate, out, out_norm = layer
        # (batch, width, 3 x hidden) -> query, key and value, each (batch, heads, width, head size)
        query, key, value = (functional.linear(x.to(self.dtype), *query_key_value)
                             .view(batch, width, 3, self.heads, -1).permute(2, 0, 3, 1, 4))
        attended = functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        attended = attended.transpose(1, 2).reshape(batch, width, hidden)
        x = self._norm(functional.linear(attended, *attention_out).float() + x, attention_norm)
        expanded = functional.gelu(functional.linear(x.to(self.dtype), *intermediate))
        feed_forward = functional.linear(expanded, *out)
        return self._norm(feed_forward.float() + x, out_norm)
