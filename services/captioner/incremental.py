"""CoCa's text tower and multimodal decoder run one new token at a time, with key/value caches.

open_clip's towers have no cache: ``CoCa.generate`` (and the uncached path of
:mod:`services.captioner.coca`) re-runs the text tower and the decoder on the whole prefix at every
step, so a 30-token caption costs about 30 x 30 / 2 token passes instead of 30.
:class:`CachedCocaDecoder` computes the same thing from the same modules (their parameters, their
layer norms, MLPs and layer scales; no copy of the model):

- the self-attention keys and values of every layer of the text tower and of the decoder are kept
  per beam in one preallocated buffer and written in place; when beam search re-ranks its beams,
  :meth:`CachedCocaDecoder.reorder` copies the beams that moved;
- the cross-attention keys and values of the image embedding are computed once per search and kept
  once per image (beams only continue beams of their own image, so they never move).

A cached step is bound by reading the weights (two rows through every matrix): what is left per step
is only what the new token needs (docs/captioner.md, "Where a cached step's time goes").

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


def _self_attention(
    block: ResidualAttentionBlock,
    x: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    start: int,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """A causal self-attention block for the new positions ``start:`` of ``x`` (R, new, E); their keys
    and values are written into ``keys`` / ``values`` (R, heads, >= start + new, head_dim) in place."""
    attn = block.attn
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    length = start + x.shape[1]
    keys[:, :, start:length] = _heads(k, attn.num_heads)
    values[:, :, start:length] = _heads(v, attn.num_heads)
    q = _heads(q, attn.num_heads)
    return _finish(block, x, _attend(attn, q, keys[:, :, :length], values[:, :, :length], mask))


class _CrossAttention:
    """A cross-attention block whose keys and values (the image embedding's) are computed once.

    When the beams are grouped by image (``rows`` = 0,0,1,1,... as beam search lays them out) the
    keys stay one copy per image and the queries of an image's beams attend to them together, as
    extra query positions (cross-attention has no mask): each step reads the image keys once per
    image, not once per beam."""

    def __init__(self, block: ResidualAttentionBlock, image_embs: torch.Tensor, rows: torch.Tensor) -> None:
        """``image_embs`` (N, tokens, width) per image; ``rows`` (R,): the image of each beam."""
        self.block = block
        attn = block.attn
        width = attn.embed_dim
        kv = F.linear(
            block.ln_1_kv(image_embs), attn.in_proj_weight[width:], attn.in_proj_bias[width:]
        ).chunk(2, dim=-1)
        images = image_embs.shape[0]
        self.beams = len(rows) // images
        grouped = len(rows) == images * self.beams and torch.equal(
            rows, torch.arange(images, device=rows.device).repeat_interleave(self.beams)
        )
        self.keys, self.values = (_heads(t, attn.num_heads) for t in kv)
        if not grouped:
            self.beams = 1
            self.keys, self.values = self.keys.index_select(0, rows), self.values.index_select(0, rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.block.attn
        width, heads = attn.embed_dim, attn.num_heads
        q = F.linear(self.block.ln_1(x), attn.in_proj_weight[:width], attn.in_proj_bias[:width])
        rows, new = x.shape[:2]
        # (R, new, E) -> (N, heads, beams * new, head_dim): an image's beams side by side
        q = q.view(-1, self.beams, new, heads, width // heads).permute(0, 3, 1, 2, 4).flatten(2, 3)
        out = F.scaled_dot_product_attention(q, self.keys, self.values)
        out = out.unflatten(2, (self.beams, new)).permute(0, 2, 3, 1, 4).reshape(rows, new, width)
        return _finish(self.block, x, F.linear(out, attn.out_proj.weight, attn.out_proj.bias))


class CachedCocaDecoder:
    """Next-token logits of a CoCa model for growing prefixes, one new token per call.

    ``decoder(rows, tokens)`` takes the whole prefixes ``tokens`` (R, L) (``rows`` (R,) says which
    image each belongs to) and runs only the tokens added since the previous call through the towers;
    :meth:`reorder` tells it that prefix ``i`` now continues former prefix ``index[i]``. Both
    signatures are what :func:`services.captioner.coca.beam_search` calls.

    The keys and values of all self-attention layers live in one buffer, (2, layers, R, heads,
    capacity, head_dim), allocated on the first call for ``capacity`` positions (grown if a prefix
    gets longer): a step writes its new position in place rather than concatenating every layer's
    cache, and a reorder copies only the beams that moved, for all layers in one operation.
    """

    def __init__(self, net: nn.Module, image_embs: torch.Tensor, capacity: int = 32) -> None:
        reason = unsupported_reason(net)
        if reason:
            raise ValueError(f"no key/value cache for this model: {reason}")
        self.text: TextTransformer = net.text  # type: ignore[assignment]
        self.decoder: MultimodalTransformer = net.text_decoder  # type: ignore[assignment]
        self.image_embs = image_embs
        self.text_blocks: list[ResidualAttentionBlock] = list(self.text.transformer.resblocks)
        self.decoder_blocks: list[ResidualAttentionBlock] = list(self.decoder.resblocks)
        self.cross_layers: list[_CrossAttention] = []
        self.capacity = capacity
        self.cache = torch.empty(0)
        self.rows: torch.Tensor | None = None
        self.length = 0  # tokens already in the caches

    def _allocate(self, rows: int, length: int) -> None:
        """Room for at least ``length`` positions, keeping what the cache holds."""
        block = self.text_blocks[0].attn
        heads, head_dim = block.num_heads, block.embed_dim // block.num_heads
        layers = len(self.text_blocks) + len(self.decoder_blocks)
        self.capacity = max(self.capacity, length, 2 * self.length)
        old, self.cache = (
            self.cache,
            self.image_embs.new_empty((2, layers, rows, heads, self.capacity, head_dim)),
        )
        if self.length:  # grown mid-search
            self.cache[..., : self.length, :] = old[..., : self.length, :]

    def __call__(self, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.rows is None:  # the first step: the images' cross-attention keys, once per search
            self.rows = rows
            self.cross_layers = [_CrossAttention(b, self.image_embs, rows) for b in self.decoder.cross_attn]
        elif not torch.equal(rows, self.rows):
            raise ValueError("the beams' images changed without reorder()")
        start, length = self.length, tokens.shape[1]
        if self.cache.dim() == 1 or length > self.cache.shape[-2]:
            self._allocate(len(rows), length)
        positions = torch.arange(start, length, device=tokens.device)
        keys = torch.arange(length, device=tokens.device)
        causal = keys[None, :] <= positions[:, None]  # (new, length): True = may attend

        text = self.text
        cast = text.transformer.get_cast_dtype()
        x = text.token_embedding(tokens[:, start:]).to(cast) + text.positional_embedding[start:length].to(
            cast
        )
        # One new token may attend to every earlier one: no causal mask needed.
        text_mask = None if length - start == 1 else causal[None, None]
        if text.use_pad_mask or text.cls_emb is not None:  # as TextTransformer._build_additive_mask
            valid = tokens != text.pad_id
            if text.cls_emb is not None and not text.correct_cls_mask:
                # Legacy CoCa weights: the mask is shifted by one (the class token's slot first).
                valid = torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1)
            if not bool(valid.all()):
                text_mask = causal[None, None] & valid[:, None, None, :]
        cache = self.cache
        for i, block in enumerate(self.text_blocks):
            x = _self_attention(block, x, cache[0, i], cache[1, i], start, text_mask)
        decoder_mask = None if length - start == 1 else causal[None, None]
        first = len(self.text_blocks)
        for i, (block, cross) in enumerate(zip(self.decoder_blocks, self.cross_layers, strict=True)):
            x = _self_attention(block, x, cache[0, first + i], cache[1, first + i], start, decoder_mask)
            x = cross.forward(x)
        self.length = length
        out = self.decoder.ln_final(x[:, -1])
        return out @ self.decoder.text_projection if self.decoder.text_projection is not None else out

    def rewind(self, length: int) -> None:
        """Forget the positions from ``length`` on: the next call recomputes them from its prefix
        (the bench times one step at a given prefix length again and again this way)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind to {length} positions: the cache holds {self.length}")
        self.length = length

    def reorder(self, index: torch.Tensor) -> None:
        """Prefix ``i`` continues former prefix ``index[i]`` (beam search re-ranked its beams).

        Beams only ever continue beams of their own image: the decoder's cached keys depend on the
        image (through the cross-attention of the layers below), so the image keys stay put."""
        if self.rows is None:
            return
        if not torch.equal(self.rows.index_select(0, index), self.rows):
            raise ValueError("a beam cannot continue a beam of another image")
        moved = torch.nonzero(index != torch.arange(len(index), device=index.device)).squeeze(1)
        if len(moved):  # a beam that continues itself keeps its cache where it is
            live = self.cache[..., : self.length, :]
            live.index_copy_(2, moved, live.index_select(2, index.index_select(0, moved)))
