"""CoCa's text tower and multimodal decoder run one new token at a time, with key/value caches.

open_clip's towers have no cache: ``CoCa.generate`` (and the uncached path of
:mod:`services.captioner.coca`) re-runs the text tower and the decoder on the whole prefix at every
step, so a 30-token caption costs about 30 x 30 / 2 token passes instead of 30.
:class:`CachedCocaDecoder` computes the same thing from the same modules (their parameters, their
layer norms, MLPs and layer scales; no copy of the model):

- the self-attention keys and values of every layer of the text tower and of the decoder are kept
  per beam (``(beams, heads, length, head_dim)``) and extended by the new token; when beam search
  re-ranks its beams, :meth:`CachedCocaDecoder.reorder` index-selects them on the beam dimension;
- the cross-attention keys and values of the image embedding are computed once per search (beams
  only continue beams of their own image, so they never move).

What the text tower's attention mask does is reproduced exactly: the causal mask, and open_clip's
padding mask, which hides the key position of a token equal to the pad id (0, "!", a token a caption
can contain) or, with the legacy mask CoCa configs use (``correct_cls_mask`` off), the one after
it. The class token CoCa appends to the text is only ever attended to by itself (causal mask) and
only feeds the contrastive text embedding, never the decoder, so it is left out.
"""

from __future__ import annotations

import torch
from open_clip.transformer import MultimodalTransformer, ResidualAttentionBlock, TextTransformer
from torch import nn
from torch.nn import functional as F


def unsupported_reason(net: nn.Module) -> str:
    """Why :class:`CachedCocaDecoder` cannot run ``net`` ('' when it can)."""
    text, decoder = getattr(net, "text", None), getattr(net, "text_decoder", None)
    if not isinstance(text, TextTransformer) or not isinstance(decoder, MultimodalTransformer):
        return "the model has no open_clip text tower and multimodal decoder"
    if text.attn_mask is None:
        return "its text tower is not causal"
    blocks = [*text.transformer.resblocks, *decoder.resblocks, *decoder.cross_attn]
    for block in blocks:
        if type(block) is not ResidualAttentionBlock:
            return f"its attention blocks are {type(block).__name__}, not ResidualAttentionBlock"
        attn = block.attn
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            return "its attention layers have separate or extra key/value projections"
    return ""


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(R, n, E) -> (R, heads, n, E / heads)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _attend(
    attn: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Scaled dot-product attention over split heads, then the layer's output projection."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(out.transpose(1, 2).flatten(-2), attn.out_proj.weight, attn.out_proj.bias)


def _finish(block: ResidualAttentionBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of ``ResidualAttentionBlock.forward`` once its attention is computed."""
    x = x + block.ls_1(attended)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


class _SelfAttentionCache:
    """Keys and values of one causal self-attention block, (R, heads, length, head_dim) each."""

    def __init__(self, block: ResidualAttentionBlock) -> None:
        self.block = block
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn = self.block.attn
        q, k, v = F.linear(self.block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (_heads(t, attn.num_heads) for t in (q, k, v))
        if self.keys is not None and self.values is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return _finish(self.block, x, _attend(attn, q, k, v, mask))

    def reorder(self, index: torch.Tensor) -> None:
        if self.keys is not None and self.values is not None:
            self.keys, self.values = self.keys.index_select(0, index), self.values.index_select(0, index)


class _CrossAttention:
    """A cross-attention block whose keys and values (the image embedding's) are computed once."""

    def __init__(self, block: ResidualAttentionBlock, image_embs: torch.Tensor, rows: torch.Tensor) -> None:
        """``image_embs`` (N, tokens, width) per image; ``rows`` (R,): the image of each beam."""
        self.block = block
        attn = block.attn
        width = attn.embed_dim
        kv = F.linear(
            block.ln_1_kv(image_embs), attn.in_proj_weight[width:], attn.in_proj_bias[width:]
        ).chunk(2, dim=-1)
        self.keys, self.values = (_heads(t, attn.num_heads).index_select(0, rows) for t in kv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.block.attn
        width = attn.embed_dim
        q = F.linear(self.block.ln_1(x), attn.in_proj_weight[:width], attn.in_proj_bias[:width])
        return _finish(self.block, x, _attend(attn, _heads(q, attn.num_heads), self.keys, self.values, None))


class CachedCocaDecoder:
    """Next-token logits of a CoCa model for growing prefixes, one new token per call.

    ``decoder(rows, tokens)`` takes the whole prefixes ``tokens`` (R, L) (``rows`` (R,) says which
    image each belongs to) and runs only the tokens added since the previous call through the towers;
    :meth:`reorder` tells it that prefix ``i`` now continues former prefix ``index[i]``. Both
    signatures are what :func:`services.captioner.coca.beam_search` calls.
    """

    def __init__(self, net: nn.Module, image_embs: torch.Tensor) -> None:
        reason = unsupported_reason(net)
        if reason:
            raise ValueError(f"no key/value cache for this model: {reason}")
        self.text: TextTransformer = net.text  # type: ignore[assignment]
        self.decoder: MultimodalTransformer = net.text_decoder  # type: ignore[assignment]
        self.image_embs = image_embs
        self.text_layers = [_SelfAttentionCache(b) for b in self.text.transformer.resblocks]
        self.decoder_layers = [_SelfAttentionCache(b) for b in self.decoder.resblocks]
        self.cross_layers: list[_CrossAttention] = []
        self.rows: torch.Tensor | None = None
        self.length = 0  # tokens already in the caches

    def __call__(self, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.rows is None:  # the first step: the images' cross-attention keys, once per search
            self.rows = rows
            self.cross_layers = [_CrossAttention(b, self.image_embs, rows) for b in self.decoder.cross_attn]
        elif not torch.equal(rows, self.rows):
            raise ValueError("the beams' images changed without reorder()")
        start, length = self.length, tokens.shape[1]
        positions = torch.arange(start, length, device=tokens.device)
        keys = torch.arange(length, device=tokens.device)
        causal = keys[None, :] <= positions[:, None]  # (new, length): True = may attend

        text = self.text
        cast = text.transformer.get_cast_dtype()
        x = text.token_embedding(tokens[:, start:]).to(cast) + text.positional_embedding[start:length].to(
            cast
        )
        text_mask = causal[None, None]
        if text.use_pad_mask or text.cls_emb is not None:  # as TextTransformer._build_additive_mask
            valid = tokens != text.pad_id
            if text.cls_emb is not None and not text.correct_cls_mask:
                # Legacy CoCa weights: the mask is shifted by one (the class token's slot first).
                valid = torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1)
            text_mask = text_mask & valid[:, None, None, :]
        for layer in self.text_layers:
            x = layer.forward(x, text_mask)
        decoder_mask = None if length - start == 1 else causal[None, None]
        for layer, cross in zip(self.decoder_layers, self.cross_layers, strict=True):
            x = cross.forward(layer.forward(x, decoder_mask))
        self.length = length
        out = self.decoder.ln_final(x[:, -1])
        return out @ self.decoder.text_projection if self.decoder.text_projection is not None else out

    def reorder(self, index: torch.Tensor) -> None:
        """Prefix ``i`` continues former prefix ``index[i]`` (beam search re-ranked its beams).

        Beams only ever continue beams of their own image: the decoder's cached keys depend on the
        image (through the cross-attention of the layers below), so the image keys stay put."""
        if self.rows is not None and not torch.equal(self.rows.index_select(0, index), self.rows):
            raise ValueError("a beam cannot continue a beam of another image")
        for layer in (*self.text_layers, *self.decoder_layers):
            layer.reorder(index)
