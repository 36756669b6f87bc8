"""
The whole Self Forcing model on one page: a small video diffusion transformer (DiT) in pixel space.

One class, CausalDiT, plays every role of the paper by its attention pattern alone:
  "bidirectional"    every frame sees every frame (teacher, critic / "fake score", "real score")
  "causal"           block-causal: a token of chunk i sees chunks <= i (ODE init, diffusion forcing)
  "teacher_forcing"  the [clean | noisy] layout: noisy chunk i sees clean chunks < i and itself
  streaming          forward_chunk() + a KV cache of earlier chunks (Self Forcing rollout, inference)
A "chunk" is K frames; with ModelConfig.first_frame the first one splits into frame 0 alone and frames 1..K-1
(sampler_windows), and every causal path follows those blocks.
It predicts x0 (the clean video) directly; see DESIGN.md section 2 for why not the flow v.

Shape key (every comment below uses it)
    B  batch            F  frames              C  channels (3)         H, W  height, width
    p  patch size       N  tokens per frame = (H/p)(W/p)               L  tokens in a clip = F*N
    D  model width      nh heads               hs head size = D/nh     K  chunk (frames per block)
    Lt text tokens (words)                     S  sampling steps
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.nn.functional import scaled_dot_product_attention as sdpa


# ---------------------------------------------------------------------------------------------
#                                            Config
# ---------------------------------------------------------------------------------------------

@dataclass
class ModelConfig:
    vocab_size: int              # words in the toy vocabulary (toydata.VOCAB); id 0 is <pad>
    resolution: int = 32         # H = W
    patch: int = 8               # p: one token per p x p patch; 3*8*8 = 192 pixel values per token
    channels: int = 3            # C
    chunk: int = 3               # K: frames denoised together; 1 = frame-wise autoregression
    first_frame: bool = False    # causal modes: frame 0 is a block alone, then frames 1..K-1, then chunks of K
    width: int = 128             # D
    depth: int = 4               # DiT blocks
    heads: int = 4               # nh
    text_depth: int = 2          # transformer layers of the word-level text encoder
    max_text_len: int = 12       # Lt: prompts are padded to this many words
    mlp_ratio: float = 4.0       # MLP hidden width = mlp_ratio * D
    rope_theta: float = 10000.0  # RoPE base period of the time axis (rows and columns are circular)
    freq_dim: int = 256          # sinusoidal timestep features fed to the timestep MLP

    def __post_init__(self):
        if self.patch < 1 or self.resolution % self.patch != 0:
            raise ValueError(f"resolution {self.resolution} is not divisible by patch {self.patch}: a frame "
                             f"must split into whole p x p patches (e.g. resolution 32 with patch 8 or 4)")
        if self.width % self.heads != 0:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        hs = self.width // self.heads
        if hs % 2 or hs < 6:
            raise ValueError(f"head size width/heads = {hs} must be even and >= 6 so that it splits into "
                             f"three even RoPE parts (time, row, column)")
        if self.vocab_size < 2 or self.chunk < 1 or self.max_text_len < 1:
            raise ValueError(f"need vocab_size >= 2, chunk >= 1, max_text_len >= 1; got {self}")

    @property
    def grid(self) -> int:               # patches along one side, H/p
        return self.resolution // self.patch

    @property
    def tokens_per_frame(self) -> int:   # N
        return self.grid ** 2

    @property
    def rope_dims(self) -> tuple:        # channels of hs rotated by (time, row, column); all even
        hs = self.width // self.heads
        a = 2 * (hs // 6)
        return hs - 2 * a, a, a


# ---------------------------------------------------------------------------------------------
#            Where a token may look (attention masks) and where it sits (3-D RoPE)
# ---------------------------------------------------------------------------------------------

def sampler_windows(num_frames, chunk, start=0, first_frame=False):
    """The blocks a clip is made in, in order: [(first frame, frames), ...], one chunk of `chunk` frames after
    another from frame `start`. first_frame=True makes frame 0 alone and then the rest of its chunk:
    [(0, 1), (1, K - 1), (K, K), ...]. The teacher's chunk-wise sampler makes its clips so (train.py
    teacher_first_frame) and so does the causal student (ModelConfig.first_frame: its masks, its KV-cache streaming
    and its training all follow these blocks). Why: a chunk made from noise with all its frames equally noisy
    settles where the object is and which way it goes at the same noise level, where the words' "left" or "right" is
    worth little to the loss, and an untaught sign comes out as the average of both ways, an object that stands
    still. Once one frame is finished, the words decide where the next ones go, a lesson learned within hundreds of
    steps (README, "The first frame alone")."""
    first_frame = first_frame and start == 0 and chunk > 1
    if first_frame and num_frames == 1:                                # frame 0 alone is a whole block too
        return [(0, 1)]
    assert chunk >= 1 and 0 <= start < num_frames and (num_frames - start) % chunk == 0, \
        f"frames {start}..{num_frames - 1} do not split into chunks of {chunk}"
    wins = [(s, chunk) for s in range(start, num_frames, chunk)]
    if first_frame:
        wins[:1] = [(0, 1), (1, chunk - 1)]
    return wins


def frame_blocks(num_frames, chunk, first_frame=False):
    """(F,) long: the index of the block (sampler_windows) each frame belongs to, e.g. 12 frames, K = 3 with
    first_frame: [0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]. Training draws one noise level per block with it."""
    wins = sampler_windows(num_frames, chunk, first_frame=first_frame)
    return torch.cat([torch.full((n,), i) for i, (_, n) in enumerate(wins)])


def frame_visibility(num_frames, chunk, window=None, sink=0, first_frame=False):
    """(F, F) bool: may query frame q see key frame k under block-causal attention?
    A query in the block starting at frame s (a chunk, or with first_frame frame 0 alone and frames 1..K-1, see
    sampler_windows) sees its own block (bidirectionally) and the past frames k < s; with a rolling window only the
    sink frames [0, sink) and the last `window` frames [s - window, s) of that past -- exactly the frames a rolling
    KV cache still holds."""
    k = torch.arange(num_frames)[None, :]
    sink = sink or 0                                                   # None means no sink frames
    block = frame_blocks(num_frames, chunk, first_frame)               # (F,) block of each frame
    start = (block[None, :] < block[:, None]).sum(1, keepdim=True)     # (F, 1) first frame of q's block
    past = k < start
    if window is not None:
        past = past & ((k < sink) | (k >= start - window))
    return past | (block[:, None] == block[None, :])                   # (F, F): the past, or the same block


def make_attention_mask(num_frames, tokens_per_frame, chunk, mode, window=None, sink=0, first_frame=False):
    """Token-level mask, (L, L) bool, or (2L, 2L) for "teacher_forcing" ([clean | noisy]). first_frame: the
    causal modes' blocks start with frame 0 alone (sampler_windows)."""
    if mode == "bidirectional":
        if window is not None:
            raise ValueError("a rolling window only makes sense for causal modes, not 'bidirectional'")
        frames = torch.ones(num_frames, num_frames, dtype=torch.bool)
    elif mode in ("causal", "teacher_forcing"):
        if num_frames % chunk != 0 and not (first_frame and num_frames == 1):   # (frame 0 alone: one block)
            raise ValueError(f"{num_frames} frames do not split into chunks of {chunk} frames "
                             f"(mode {mode!r} needs the frame count to be a multiple of the chunk)")
        frames = frame_visibility(num_frames, chunk, window, sink, first_frame)
        if mode == "teacher_forcing":
            same = frame_visibility(num_frames, chunk, 0, 0, first_frame)  # own block only
            clean_past = frames & ~same                                     # clean blocks < i
            frames = torch.cat([torch.cat([frames, torch.zeros_like(frames)], 1),   # clean queries
                                torch.cat([clean_past, same], 1)], 0)               # noisy queries
    else:
        raise ValueError(f"unknown mode {mode!r}; use 'bidirectional', 'causal' or 'teacher_forcing'")
    # all N tokens of a frame share that frame's row / column of the mask
    n = tokens_per_frame
    return frames.repeat_interleave(n, 0).repeat_interleave(n, 1)          # (L, L)


def rope_rotations(frames, grid, dims, theta):
    """The 3-D RoPE rotation of every token, as unit complex numbers e^(i angle): (len(frames)*N, hs/2) complex64,
    for tokens ordered (frame, row, column); one angle per consecutive channel pair of a head (apply_rope).
    `frames` holds ABSOLUTE frame indices, so a key keeps its true position inside a rolling
    cache, however far past the training length the video runs.
    Rows and columns are CIRCULAR: the toy world is a torus (an object leaving on the right comes back on the
    left), so their angles are whole turns per `grid` patches (2 pi j / grid per patch, j = 1, 2, ...), and
    column 0 sits next to column grid-1 exactly as column 1 does. Attention then depends only on toroidal
    offsets, and the model treats every place in the frame alike, as the data does."""
    def axis(pos, d):                                                  # time: (n,) -> (n, d/2), RoFormer's periods
        freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        return pos.double()[:, None] * freqs[None, :]

    def ring(pos, d):                                                  # rows/columns: (g,) -> (g, d/2), periodic
        turns = torch.arange(1, d // 2 + 1, dtype=torch.float64)      # 1, 2, ... whole turns per grid
        return pos.double()[:, None] * (2 * math.pi / grid) * turns[None, :]
    dt, dh, dw = dims
    nf, g = len(frames), grid
    rc = torch.arange(g)
    at = axis(frames.cpu(), dt)[:, None, None, :].expand(nf, g, g, dt // 2)   # (F, H/p, W/p, dt/2)
    ah = ring(rc, dh)[None, :, None, :].expand(nf, g, g, dh // 2)             # (F, H/p, W/p, dh/2)
    aw = ring(rc, dw)[None, None, :, :].expand(nf, g, g, dw // 2)             # (F, H/p, W/p, dw/2)
    ang = torch.cat([at, ah, aw], -1).reshape(nf * g * g, -1)                # (L, hs/2)
    return torch.polar(torch.ones_like(ang), ang).to(torch.complex64)        # (L, hs/2) e^(i angle)


def apply_rope(x, rot):
    """Rotate consecutive channel pairs of q or k by their position's angles: x (..., L, hs), rot (L, hs/2) from
    rope_rotations. A pair (x1, x2) read as the complex number x1 + i x2, times e^(i angle), is
    (x1 cos - x2 sin, x1 sin + x2 cos): the pair rotated, in one complex product instead of six real ones (the
    streaming sampler's calls are small, and their time goes to the number of operations, not their size).
    Rotating both q and k makes q.k depend only on the position DIFFERENCE."""
    z = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))        # (..., L, hs/2) complex
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)          # (..., L, hs)


# ---------------------------------------------------------------------------------------------
#                 Layers: helpers, text encoder, timestep embedder, DiT block
# ---------------------------------------------------------------------------------------------

def split_heads(x, n, nh):
    """(B, L, n*D) -> (n, B, nh, L, hs): the fused q/k/v projection, split per head (a view; unbind(0): q, k, v)."""
    B, L, _ = x.shape
    return x.view(B, L, n, nh, -1).permute(2, 0, 3, 1, 4)


def merge_heads(x):
    """(B, nh, L, hs) -> (B, L, D)"""
    B, nh, L, hs = x.shape
    return x.transpose(1, 2).reshape(B, L, nh * hs)


def modulate(x, shift, scale):
    """adaLN with a per-FRAME condition: x (B, L, D), shift/scale (B, F, 1, D)."""
    F = shift.shape[1]
    return (x.unflatten(1, (F, -1)) * (1 + scale) + shift).flatten(1, 2)   # (B, F, N, D) -> (B, L, D)


def gated(x, gate):
    """x (B, L, D) times a per-frame gate (B, F, 1, D); gate = 0 at init makes the block an identity."""
    return (x.unflatten(1, (gate.shape[1], -1)) * gate).flatten(1, 2)


def mlp(cfg):
    hidden = int(cfg.mlp_ratio * cfg.width)
    # DiT's tanh GELU. The exact (erf) one runs 2-4x faster on CPU and made the teacher's step about 5% faster, but it
    # changes every number the run makes; one run with it (2026-12-02) ended with weaker students (README, "Speed")
    return nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(approximate="tanh"),
                         nn.Linear(hidden, cfg.width))


class TextLayer(nn.Module):
    """Pre-norm transformer layer over the prompt's words (bidirectional, pads masked out)."""

    def __init__(self, cfg):
        super().__init__()
        self.nh = cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.qkv, self.proj = nn.Linear(cfg.width, 3 * cfg.width), nn.Linear(cfg.width, cfg.width)
        self.mlp = mlp(cfg)

    def forward(self, x, mask):                                       # x (B, Lt, D), mask (B, 1, 1, Lt)
        q, k, v = split_heads(self.qkv(self.norm1(x)), 3, self.nh).unbind(0)   # 3 x (B, nh, Lt, hs)
        x = x + self.proj(merge_heads(sdpa(q, k, v, attn_mask=mask)))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """A tiny word-level encoder; the empty prompt (all pads) maps to a LEARNED null context,
    the "unconditional" input of classifier-free guidance (trained by prompt dropout).

    Each word also carries a FIXED random code (a buffer, never trained), added to the encoder's output. The
    paper's text encoder is a frozen pretrained umT5, in which two different words differ from the first step on.
    A learned toy encoder starts with every word nearly alike (embeddings of std 0.02) and keeps apart only the
    words whose difference the DiT already uses: after 2,800 steps without the code, "clockwise" and
    "counter-clockwise" reached the DiT's pooled condition 30x closer together than "left to right" and "right to
    left". With the code every word is as far from every other (about sqrt(2 D)) from step 0, and the same 2,800
    teacher steps drew 96 of 96 straight lines the asked way instead of 75, 48 of 48 triangles instead of 6
    (README, "A fixed code for every word")."""

    def __init__(self, cfg):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_text_len, cfg.width))
        self.layers = nn.ModuleList(TextLayer(cfg) for _ in range(cfg.text_depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.null = nn.Parameter(torch.zeros(1, cfg.max_text_len, cfg.width))
        # (vocab, D), N(0, 1) like the unit-variance output of self.norm; its own generator, so every run (and every
        # model of a run) gets the same code and the global RNG, which draws the learned weights, is left untouched.
        # The pad's row is zero: pads are masked out of cross-attention and of the pooled prompt anyway.
        code = torch.randn(cfg.vocab_size, cfg.width, generator=torch.Generator().manual_seed(0))
        code[0] = 0.0
        self.register_buffer("code", code)

    def forward(self, tokens):                                        # tokens (B, Lt) long, 0 = pad
        Lt = tokens.shape[1]
        real = tokens != 0                                            # (B, Lt)
        empty = ~real.any(1)                                          # (B,)
        # an all-pad row would attend to no key at all (NaN); let it see every slot -- its result
        # is replaced by the null context below, which is then attended in full
        mask = real | empty[:, None]                                  # (B, Lt)
        x = self.tok(tokens) + self.pos[:, :Lt]                       # (B, Lt, D)
        for layer in self.layers:
            x = layer(x, mask[:, None, None, :])
        ctx = torch.where(empty[:, None, None], self.null[:, :Lt], self.norm(x) + self.code[tokens])   # (B, Lt, D)
        return ctx, mask


class TimestepEmbedder(nn.Module):
    """t in [0, 1000], one per frame (B, F) -> sinusoidal features -> MLP -> (B, F, D)."""

    def __init__(self, cfg):
        super().__init__()
        self.freq_dim = cfg.freq_dim
        self.mlp = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.width), nn.SiLU(),
                                 nn.Linear(cfg.width, cfg.width))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)   # (half,)
        args = t.float()[..., None] * freqs                                                # (B, F, half)
        emb = torch.cat([args.cos(), args.sin()], -1)                                     # (B, F, freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))                                  # (B, F, D)


class DiTBlock(nn.Module):
    """Self-attention (3-D RoPE, mask or KV cache) -> cross-attention to the prompt -> MLP.
    Self-attention and MLP are modulated per frame by the timestep (shift, scale, gate); the
    gates start at 0 (adaLN-Zero), so at init the block passes its input through unchanged
    except for cross-attention, whose output is then zeroed by the zero-initialised final layer."""

    def __init__(self, cfg):
        super().__init__()
        D, self.nh = cfg.width, cfg.heads
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.qkv, self.attn_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.norm_cross = nn.LayerNorm(D, eps=1e-6)
        self.cross_q, self.cross_kv, self.cross_proj = nn.Linear(D, D), nn.Linear(D, 2 * D), nn.Linear(D, D)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(cfg)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))   # zero-initialised

    def text_kv(self, ctx):                                           # (B, Lt, D) -> 2 x (B, nh, Lt, hs)
        return split_heads(self.cross_kv(ctx), 2, self.nh).unbind(0)

    def modulation(self, c):                                         # (B, F, D) -> 6 x (B, F, 1, D)
        return self.adaLN(c)[:, :, None].chunk(6, -1)

    def forward(self, x, mod, rope, mask, text_kv, text_mask, past_kv=None, kv_only=False):
        """x (B, L, D), mod = modulation(c) of the per-frame condition c (B, F, D), rope (L, hs/2) rotations.
        past_kv: cached (K, V) of earlier frames, each (B, nh, Lc, hs). Returns the new x and this call's own
        (K, V) -- RoPE already applied -- for the cache.
        kv_only: return (None, (K, V)) without the rest of the block (the cache re-fill's last block)."""
        sh1, sc1, g1, sh2, sc2, g2 = mod                            # 6 x (B, F, 1, D)
        # self-attention: a streamed chunk prepends the cached past to its own keys/values
        qk, v = split_heads(self.qkv(modulate(self.norm1(x), sh1, sc1)), 3, self.nh).split([2, 1])
        q, k = apply_rope(qk, rope).unbind(0)              # q and k rotated in one call: 2 x (B, nh, L, hs)
        v = v.squeeze(0)                                   # (B, nh, L, hs)
        if kv_only:
            return None, (k, v)
        ks, vs = (k, v) if past_kv is None else (torch.cat([past_kv[0], k], 2), torch.cat([past_kv[1], v], 2))
        x = x + gated(self.attn_proj(merge_heads(sdpa(q, ks, vs, attn_mask=mask))), g1)
        # cross-attention: every token reads the prompt (pads masked out)
        q = split_heads(self.cross_q(self.norm_cross(x)), 1, self.nh)[0]      # (B, nh, L, hs)
        x = x + self.cross_proj(merge_heads(sdpa(q, *text_kv, attn_mask=text_mask)))
        x = x + gated(self.mlp(modulate(self.norm2(x), sh2, sc2)), g2)
        return x, (k, v)


class FinalLayer(nn.Module):
    """adaLN + linear back to pixel patches; zero-initialised so the untrained model outputs 0."""

    def __init__(self, cfg):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(cfg.width, cfg.channels * cfg.patch ** 2)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))

    def modulation(self, c):                                         # (B, F, D) -> 2 x (B, F, 1, D)
        return self.adaLN(c)[:, :, None].chunk(2, -1)

    def forward(self, x, mod):                                        # (B, L, D) -> (B, L, C*p*p)
        shift, scale = mod                                            # 2 x (B, F, 1, D)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------
#                 The model: one network, four attention patterns, a KV cache
# ---------------------------------------------------------------------------------------------

@dataclass
class KVCache:
    """Everything a streamed chunk needs from the past. Frame keys/values are DETACHED (filled by
    append_to_cache under no_grad) and never written in place; a new chunk's own K/V are computed
    fresh and concatenated, so gradient can flow through the current chunk but never into the cache.
    text_kv follows the grad mode new_cache() ran under (no in-place writes there either)."""
    k: list                      # per layer (B, nh, Lc, hs), RoPE applied at the absolute frame index
    v: list                      # per layer (B, nh, Lc, hs)
    text_kv: list                # per layer (K, V) of the prompt, each (B, nh, Lt, hs), computed once
    text_mask: torch.Tensor      # (B, 1, 1, Lt) True = real word
    text_pooled: torch.Tensor    # (B, D) the prompt as one vector, added to every frame's adaLN condition
    window: int = None           # keep at most this many most recent frames (None = keep all) ...
    sink: int = 0                # ... plus the first `sink` frames of the video, forever
    frames: list = field(default_factory=list)   # absolute index of every cached frame, in order
    modulations: dict = field(default_factory=dict)   # adaLN modulations by noise levels (CausalDiT._modulations)
    next_frame: int = 0          # the frame the next chunk must start at


class CausalDiT(nn.Module):
    """Text-conditioned video DiT predicting x0. forward() runs a whole clip under one of three
    masks; new_cache / forward_chunk / append_to_cache stream it chunk by chunk."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Linear(cfg.channels * cfg.patch ** 2, cfg.width)
        # No absolute position embedding: on the torus no place is special, and RoPE alone (relative in time,
        # circular in space) keeps the model equivariant to whole-patch shifts and to shifts in time.
        # the prompt as one vector joins the timestep in adaLN, as the class label does in DiT: a global path
        # for "what" (colour, shape, motion) next to cross-attention's per-token "where". It reads the word
        # slots IN ORDER (one linear map of all of them), not their mean: "from left to right" and "from right
        # to left" have the same words, and a mean would tell them apart only through the text encoder.
        self.text_pool = nn.Linear(cfg.max_text_len * cfg.width, cfg.width)
        self.t_embed = TimestepEmbedder(cfg)
        self.text = TextEncoder(cfg)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg)
        self.initialize_weights()
        self._rotations = {}     # (frame indices, device) -> RoPE rotations: the same few sets, call after call

    def initialize_weights(self):
        # as in DiT: Xavier linears with zero bias, small normal embeddings ...
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.text.tok.weight, self.text.pos, self.text.null,
                  self.t_embed.mlp[0].weight, self.t_embed.mlp[2].weight):
            nn.init.normal_(p, std=0.02)
        # ... and adaLN-Zero: modulation and output layers start at exactly zero
        for lin in [blk.adaLN[-1] for blk in self.blocks] + [self.final.adaLN[-1], self.final.linear]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    # ---- pixels <-> tokens ------------------------------------------------------------------
    def patchify(self, x):
        B, F, C, H, W = x.shape
        p, g = self.cfg.patch, self.cfg.grid
        x = x.reshape(B, F, C, g, p, g, p)                           # (B, F, C, H/p, p, W/p, p)
        x = x.permute(0, 1, 3, 5, 2, 4, 6)                           # (B, F, H/p, W/p, C, p, p)
        return x.reshape(B, F * g * g, C * p * p)                    # (B, L, C*p*p)

    def unpatchify(self, x, F):
        B, C, p, g = x.shape[0], self.cfg.channels, self.cfg.patch, self.cfg.grid
        x = x.reshape(B, F, g, g, C, p, p)                           # (B, F, H/p, W/p, C, p, p)
        x = x.permute(0, 1, 4, 2, 5, 3, 6)                           # (B, F, C, H/p, p, W/p, p)
        return x.reshape(B, F, C, g * p, g * p)                      # (B, F, C, H, W)

    # ---- input checks (clear messages instead of a shape error deep inside attention) --------
    def _check_video(self, x, name):
        c = self.cfg
        want = (c.channels, c.resolution, c.resolution)
        if not torch.is_tensor(x) or x.ndim != 5 or tuple(x.shape[2:]) != want:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{name} must be (B, F, C, H, W) = (batch, frames, {c.channels}, "
                             f"{c.resolution}, {c.resolution}); got {got}")
        return x.shape[0], x.shape[1]

    def _check_t(self, t, B, F, device):
        t = torch.as_tensor(t, dtype=torch.float32, device=device)
        if t.ndim == 1 and t.shape[0] == B:
            t = t[:, None].expand(B, F)                              # one t per video -> per frame
        if tuple(t.shape) != (B, F):
            raise ValueError(f"t must be (B, F) = ({B}, {F}), one timestep in [0, 1000] per frame, "
                             f"or (B,); got {tuple(t.shape)}")
        return t

    def encode_text(self, tokens):
        """tokens (B, Lt) long -> ctx (B, Lt, D), ctx_mask (B, Lt) bool. All-pad row = null prompt."""
        if not torch.is_tensor(tokens) or tokens.ndim != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a (B, Lt) long tensor of word ids (toydata.tokenize); got "
                             f"{tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens).__name__}")
        if tokens.shape[1] > self.cfg.max_text_len:
            raise ValueError(f"prompts have {tokens.shape[1]} tokens > max_text_len {self.cfg.max_text_len}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, vocab_size={self.cfg.vocab_size})")
        return self.text(tokens)

    def _text(self, tokens, ctx, B):
        """Per-layer text K/V and key mask, from tokens or from a precomputed (ctx, ctx_mask)."""
        ctx, mask = self.encode_text(tokens) if ctx is None else ctx
        if B is not None and ctx.shape[0] != B:
            raise ValueError(f"prompt batch {ctx.shape[0]} does not match video batch {B}")
        slots = ctx * mask[:, :, None].to(ctx.dtype)                           # (B, Lt, D) pads zeroed
        slots = nn.functional.pad(slots, (0, 0, 0, self.cfg.max_text_len - slots.shape[1]))  # (B, max_text_len, D)
        pooled = self.text_pool(slots.flatten(1))                              # (B, max_text_len*D) -> (B, D)
        return [blk.text_kv(ctx) for blk in self.blocks], mask[:, None, None, :], pooled   # mask (B, 1, 1, Lt)

    def _rope(self, frames, device):
        """rope_rotations for these absolute frame indices, computed once per set: a streamed video asks for the
        same K frames' rotations at every step of a chunk, and training for the same clip's at every iteration."""
        key = (tuple(frames.tolist()), str(device))
        if key not in self._rotations:
            if len(self._rotations) >= 1024:                         # a very long video: start the memo afresh
                self._rotations.clear()
            with torch.inference_mode(False):  # a normal tensor even when first asked for by sample.py, so
                self._rotations[key] = rope_rotations(frames, self.cfg.grid, self.cfg.rope_dims,  # training can
                                                      self.cfg.rope_theta).to(device)             # use it later
        return self._rotations[key]

    # ---- the trunk every mode shares ---------------------------------------------------------
    def _modulations(self, t, pooled, memo=None):
        """Every block's adaLN shift / scale / gate and the final layer's, for noise levels t (B, F) and the pooled
        prompt (B, D): they depend on nothing else. memo (a KVCache's): a streamed video asks for the same few levels
        chunk after chunk (the student's 4 sigmas, the re-fill's 0), so without gradient each set is made once per
        video and looked up after, 7 of the 33 linear layers of a student call (a call with gradient, the Self
        Forcing rollout's exit step, makes its own, so that gradient reaches the adaLN weights). A cache serves one
        stream, and no optimizer step falls inside one, so what it keeps is never stale."""
        use_memo = memo is not None and not torch.is_grad_enabled()
        key = (tuple(t.shape), tuple(t.flatten().tolist())) if use_memo else None
        if use_memo and key in memo:
            return memo[key]
        c = self.t_embed(t) + pooled[:, None, :]                     # (B, F, D) timestep + prompt, per frame
        mods = [blk.modulation(c) for blk in self.blocks] + [self.final.modulation(c)]
        if use_memo:
            memo[key] = mods
        return mods

    def _run(self, x, t, frames, text, mask=None, past=None, final=True, memo=None):
        """x (B, F, C, H, W) at noise levels t (B, F); frames (F,) absolute frame indices.
        past: per-layer cached (K, V) or None; memo: see _modulations. Returns x0_hat (B, F, C, H, W) (None if not
        final) and the per-layer (K, V) of x's own tokens."""
        F = x.shape[1]
        h = self.patch_embed(self.patchify(x))                       # (B, L, D)
        text_kv, text_mask, pooled = text
        mods = self._modulations(t, pooled, memo)                    # per block, then the final layer's
        rope = self._rope(frames, h.device)                         # (L, hs/2) complex
        kvs = []
        for i, blk in enumerate(self.blocks):
            # without the final layer, the last block only has to make its K/V (the cache re-fill)
            h, kv = blk(h, mods[i], rope, mask, text_kv[i], text_mask, None if past is None else past[i],
                        kv_only=not final and i == len(self.blocks) - 1)
            kvs.append(kv)
        return (self.unpatchify(self.final(h, mods[-1]), F) if final else None), kvs

    def forward(self, x, t, tokens=None, mode="bidirectional", clean=None, window=None, sink=0,
                frame_offset=0, ctx=None, clean_t=None):
        """x (B, F, C, H, W) noisy video, t (B, F) = 1000*sigma per frame -> x0_hat (B, F, C, H, W).
        mode "teacher_forcing": clean (B, F, C, H, W) is the clean context, run at t = 0 in front
        of x with the same RoPE positions; only x's predictions are returned. clean_t (B, F): the
        context's own levels instead of 0, when it is noisy ground truth (the DF+DMD baseline).
        window/sink: rolling-window mask for the causal modes (frame counts; sink = the first
        frames of x). ctx: optional precomputed encode_text(tokens) -> (ctx, ctx_mask)."""
        B, F = self._check_video(x, "x")
        t = self._check_t(t, B, F, x.device)
        text = self._text(tokens, ctx, B)
        frames = torch.arange(F) + frame_offset
        if mode == "teacher_forcing":
            if clean is None or clean.shape != x.shape:
                raise ValueError(f"mode 'teacher_forcing' needs clean= of x's shape {tuple(x.shape)}")
            x = torch.cat([clean, x], 1)                             # (B, 2F, C, H, W): [clean | noisy]
            ct = torch.zeros_like(t) if clean_t is None else self._check_t(clean_t, B, F, x.device)
            t = torch.cat([ct, t], 1)                                # (B, 2F): context at t = 0 (or clean_t)
            frames = frames.repeat(2)                                # (2F,): both halves share positions
        elif clean is not None or clean_t is not None:
            raise ValueError("clean= and clean_t= are only used by mode='teacher_forcing'")
        if mode == "bidirectional" and window is not None:
            raise ValueError("a rolling window only makes sense for causal modes, not 'bidirectional'")
        mask = None if mode == "bidirectional" else \
            make_attention_mask(F, self.cfg.tokens_per_frame, self.cfg.chunk, mode, window, sink,
                                self.cfg.first_frame).to(x.device)
        out, _ = self._run(x, t, frames, text, mask)
        return out[:, -F:]                                           # (B, F, C, H, W)

    # ---- streaming with a KV cache (the Self Forcing rollout and inference) -------------------
    def new_cache(self, tokens=None, window=None, sink=0, ctx=None):
        """An empty cache for one batch of prompts; the prompt's cross-attention K/V are computed
        here once. window/sink: keep the last `window` frames plus the first `sink` frames."""
        sink = sink or 0                                             # None means no sink frames
        if (window is not None and window < 0) or sink < 0:
            raise ValueError(f"window and sink must be >= 0; got window={window}, sink={sink}")
        text_kv, text_mask, pooled = self._text(tokens, ctx, None)
        B, nh, D = text_mask.shape[0], self.cfg.heads, self.cfg.width
        empty = text_kv[0][0].new_zeros(B, nh, 0, D // nh)           # (B, nh, 0, hs): no past yet
        return KVCache([empty] * self.cfg.depth, [empty] * self.cfg.depth, text_kv, text_mask, pooled,
                       window, sink)

    def _check_cache(self, cache, B, frame_start):
        if not isinstance(cache, KVCache):
            raise ValueError("cache must come from model.new_cache(tokens)")
        if cache.text_mask.shape[0] != B:
            raise ValueError(f"cache was made for batch {cache.text_mask.shape[0]}, chunk has batch {B}")
        if frame_start != cache.next_frame:
            raise ValueError(f"frame_start={frame_start} but the cache ends at frame {cache.next_frame}: "
                             f"stream chunks in order and call append_to_cache after each one")

    def forward_chunk(self, x_chunk, t_chunk, cache, frame_start):
        """x_chunk (B, K, C, H, W) at t_chunk (B, K) -> x0_hat (B, K, C, H, W). The chunk's queries
        attend to [cached K/V | its own fresh K/V] (bidirectional inside the chunk). The cache is
        not modified; gradient may flow through x_chunk and the parameters."""
        B, K = self._check_video(x_chunk, "x_chunk")
        t_chunk = self._check_t(t_chunk, B, K, x_chunk.device)
        self._check_cache(cache, B, frame_start)
        out, _ = self._run(x_chunk, t_chunk, torch.arange(K) + frame_start,
                           (cache.text_kv, cache.text_mask, cache.text_pooled), past=list(zip(cache.k, cache.v)),
                           memo=cache.modulations)
        return out

    @torch.no_grad()
    def append_to_cache(self, x_clean, cache, frame_start, t=None):
        """Re-run the model on a finished chunk at t = 0 (or at t, e.g. noisy context) WITHOUT
        gradient and append its per-layer K/V; then evict all but the sink frames and the last
        `window` frames. This is the paper's clean-context re-fill."""
        B, K = self._check_video(x_clean, "x_clean")
        t = self._check_t(torch.zeros(B, K) if t is None else t, B, K, x_clean.device)
        self._check_cache(cache, B, frame_start)
        text = (cache.text_kv, cache.text_mask, cache.text_pooled)
        _, kvs = self._run(x_clean, t, torch.arange(K) + frame_start, text, past=list(zip(cache.k, cache.v)),
                           final=False, memo=cache.modulations)
        frames = cache.frames + list(range(frame_start, frame_start + K))
        end = frame_start + K                                        # the next chunk starts here
        keep = [i for i, f in enumerate(frames)
                if cache.window is None or f < cache.sink or f >= end - cache.window]
        N = self.cfg.tokens_per_frame
        idx = torch.tensor([i * N + j for i in keep for j in range(N)], device=x_clean.device)  # kept tokens
        for layer, (k, v) in enumerate(kvs):
            k = torch.cat([cache.k[layer], k.detach()], 2)           # (B, nh, Lc + K*N, hs), a new tensor
            v = torch.cat([cache.v[layer], v.detach()], 2)
            cache.k[layer], cache.v[layer] = k.index_select(2, idx), v.index_select(2, idx)
        cache.frames, cache.next_frame = [frames[i] for i in keep], end


# ---------------------------------------------------------------------------------------------
#                     Rectified-flow helpers (x_t = (1 - sigma) x0 + sigma eps, t = 1000 sigma)
# ---------------------------------------------------------------------------------------------

def shift_sigma(sigma, s):
    """Timestep shift sigma' = s sigma / (1 + (s - 1) sigma): more steps / samples at high noise."""
    return s * sigma / (1 + (s - 1) * sigma)


def _bcast(sigma, x):
    """sigma scalar, (B,) or (B, F) -> broadcastable against x (B, F, C, H, W)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    assert sigma.ndim <= 2 and tuple(sigma.shape) == tuple(x.shape[:sigma.ndim]), \
        f"sigma {tuple(sigma.shape)} must be a scalar, (B,) or (B, F) for x {tuple(x.shape)}"
    return sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))


def add_noise(x0, eps, sigma):
    s = _bcast(sigma, x0)
    return (1 - s) * x0 + s * eps


def x0_to_v(x0, x_t, sigma, min_sigma=0.05):
    """flow v = eps - x0 = (x_t - x0) / sigma; sigma clamped so the division stays tame near 0."""
    return (x_t - x0) / _bcast(sigma, x_t).clamp(min=min_sigma)


def v_to_x0(v, x_t, sigma):
    return x_t - _bcast(sigma, x_t) * v


def student_sigmas(num_steps=4, shift=5.0):
    """The few-step student's sigmas: uniform [1, .75, .5, .25] warped by the shift (s=5: t = 1000,
    937.5, 833.3, 625)."""
    return [shift_sigma(1.0 - i / num_steps, shift) for i in range(num_steps)]


def stream_layout(sigma, now, length):
    """sigma (B, F) -> (B, F): what the chunk-wise sampler shows the teacher while it makes frames
    now[b] .. now[b] + length[b] - 1: the frames before them finished (0), those frames at their level sigma, the
    frames after them noise (1). now and length: ints or (B,). The teacher trains on this layout (train.py,
    teacher_stream) and euler_sample(chunk=K) samples in it, one window of sampler_windows() at a time."""
    f = torch.arange(sigma.shape[1], device=sigma.device)[None, :]               # (1, F)
    now = torch.as_tensor(now, device=sigma.device).reshape(-1, 1)              # (B, 1) or (1, 1)
    end = now + torch.as_tensor(length, device=sigma.device).reshape(-1, 1)     # (B, 1) or (1, 1)
    return torch.where(f < now, 0.0, torch.where(f < end, sigma, 1.0))


def euler_sigmas(num_steps, shift):
    """num_steps + 1 sigmas from 1 to 0 on a shifted uniform grid. When num_steps is a multiple of
    4 (the student's step count), the student's sigmas sit exactly at grid indices 0, n/4, n/2, 3n/4."""
    return [shift_sigma(1.0 - i / num_steps, shift) for i in range(num_steps + 1)]


# ---------------------------------------------------------------------------------------------
#                                          Samplers
# ---------------------------------------------------------------------------------------------

def cfg_context(model, tokens, guidance):
    """Encode the prompts once; with guidance != 1 rows are [prompts; empty prompts] (2B)."""
    if guidance == 1:
        return model.encode_text(tokens)
    return model.encode_text(torch.cat([tokens, torch.zeros_like(tokens)]))


def cfg_x0(model, x, t, ctx, guidance, **kw):
    """Classifier-free guidance on x0: uncond + g (cond - uncond), cond and uncond in ONE batch.
    ctx = cfg_context(model, tokens, guidance). (The official Self Forcing code writes
    cond + g' (cond - uncond); that is g = g' + 1 here.)"""
    if guidance == 1:
        return model(x, t, ctx=ctx, **kw)
    x0 = model(torch.cat([x, x]), torch.cat([t, t]), ctx=ctx, **kw)   # (2B, F, C, H, W)
    cond, uncond = x0.chunk(2)                                        # 2 x (B, F, C, H, W)
    return uncond + guidance * (cond - uncond)


def videos_per_call(device):
    """How many videos the many-step samplers (euler_sample, stream_euler_sample) take at once when many are asked
    for: on a CPU 16 (32 rows with CFG) made 64 of the tiny run's ODE pairs in 31 s where one call of 64 took 36 s,
    with the same videos to the last bit (a video does not depend on what it is batched with); a GPU wants big
    batches."""
    return 16 if torch.device(device).type == "cpu" else 64


@torch.no_grad()
def euler_sample(model, tokens, noise, num_steps=None, shift=None, guidance=1.0, mode="bidirectional",
                 return_trajectory=False, sigmas=None, chunk=None, prefix=None, first_frame=False):
    """Many-step sampler of the teacher (and of the TF/DF baselines with mode="causal"): Euler on the
    rectified-flow ODE from sigma = 1 to 0, on euler_sigmas(num_steps, shift) or an explicit grid.
    chunk=K samples K frames at a time, as the student streams: while chunk i runs its Euler steps,
    the chunks before it sit finished at t = 0 and the chunks after it stay at their noise at t = 1000
    (the teacher's training includes that layout; see train.py). chunk=None: all frames together.
    first_frame=True (with chunk): frame 0 alone first, then the rest of the first chunk (sampler_windows).
    return_trajectory=True: return instead the states x at every grid point, a tensor
    (len(sigmas), B, F, C, H, W) whose [0] is the noise and [-1] the video (chunk-wise: each window's
    own state at that point of its own pass). prefix (B, P, C, H, W), P a multiple of K: known first
    frames, kept clean; sampling starts after them (continuing a given first chunk)."""
    if sigmas is None:
        sigmas = euler_sigmas(num_steps, shift)
    sigmas = [float(s) for s in sigmas]
    assert len(sigmas) >= 2 and sigmas[-1] == 0 and all(a > b for a, b in zip(sigmas, sigmas[1:])), \
        f"sigmas must decrease strictly and end at 0; got {sigmas}"
    F = noise.shape[1]
    K = F if chunk is None else chunk
    assert F % K == 0, f"{F} frames do not split into chunks of {K}"
    P = 0 if prefix is None else prefix.shape[1]
    assert P % K == 0 and P < F, f"prefix of {P} frames must be a multiple of the chunk {K} and shorter than {F}"
    ctx = cfg_context(model, tokens, guidance)
    x = noise.clone()
    if P:
        x[:, :P] = prefix
    traj = [x.clone() for _ in sigmas] if return_trajectory else None
    for start, n in sampler_windows(F, K, P, first_frame and chunk is not None):
        here = slice(start, start + n)
        for j, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            t = 1000 * stream_layout(x.new_full(x.shape[:2], s), start, n)   # (B, F) past 0, window s, future 1
            x0 = cfg_x0(model, x, t, ctx, guidance, mode=mode)
            x[:, here] = x[:, here] + (s_next - s) * x0_to_v(x0[:, here], x[:, here], s)  # Euler, dx/dsigma = v
            if traj is not None:
                traj[j + 1][:, here] = x[:, here]
    return torch.stack(traj) if return_trajectory else x


@torch.no_grad()
def prefill(model, cache, prefix):
    """Known first frames prefix (B, P, C, H, W) enter the cache as finished blocks at t = 0, block by block as
    the model would have made them (sampler_windows), so their K/V are those a generated prefix would leave."""
    for start, n in sampler_windows(prefix.shape[1], model.cfg.chunk, first_frame=model.cfg.first_frame):
        model.append_to_cache(prefix[:, start:start + n], cache, start)


@torch.no_grad()  # a sampler: called with autograd on (evaluate.py's continuations) it kept 44 MB a video of graph
def stream_sample(model, tokens, num_frames, sigmas, generator=None, noise=None, kv_cache=True,
                  window=None, sink=0, progress=None, ctx=None, prefix=None):
    """Few-step autoregressive inference, the paper's sampler (and the Self Forcing rollout without
    the gradient bookkeeping):
        for each block i (frames start .. start+n: a chunk of K, see sampler_windows):
            x = eps_0                                        fresh noise
            for j, sigma_j in enumerate(sigmas):
                x0 = G(x, sigma_j | cache)                   forward_chunk
                if j is not the last step:
                    x = (1 - sigma_j+1) x0 + sigma_j+1 eps_j+1   RE-NOISE with fresh noise (not Euler)
            block i = x0;  cache += K/V of G(x0, t = 0)      append_to_cache, no gradient
    kv_cache=False recomputes the block-causal sequence [generated frames at t = 0 | current block]
    at every step instead: the same video for the same noise, more compute.
    noise: (S, B, F, C, H, W), noise[j] = eps_j for every block; drawn here from `generator` in one
    go if not given, so both paths consume identical noise. window/sink: rolling cache (see
    KVCache), any num_frames. progress(block_index, x0_block) is called after each block (tqdm).
    prefix (B, P, C, H, W), P a multiple of K: known first frames, kept as they are; streaming starts after them."""
    cfg, K, S = model.cfg, model.cfg.chunk, len(sigmas)
    B = tokens.shape[0] if ctx is None else ctx[0].shape[0]
    P = 0 if prefix is None else prefix.shape[1]
    if num_frames < 1 or num_frames % K != 0:
        raise ValueError(f"num_frames={num_frames} must be a positive multiple of the chunk size {K}")
    assert P % K == 0 and P < num_frames, f"a prefix of {P} frames must be a multiple of the chunk {K}, < {num_frames}"
    assert S >= 1 and all(0 < s <= 1 for s in sigmas), f"sigmas must lie in (0, 1]; got {sigmas}"
    dev = next(model.parameters()).device
    shape = (S, B, num_frames, cfg.channels, cfg.resolution, cfg.resolution)
    if noise is None:
        noise = torch.randn(shape, generator=generator,
                            device=generator.device if generator is not None else dev).to(dev)
    assert tuple(noise.shape) == shape, f"noise must be (S, B, F, C, H, W) = {shape}; got {list(noise.shape)}"
    ctx = model.encode_text(tokens) if ctx is None else ctx
    cache = model.new_cache(window=window, sink=sink, ctx=ctx) if kv_cache else None
    chunks = [] if prefix is None else [prefix]
    if kv_cache and prefix is not None:
        prefill(model, cache, prefix)
    for bi, (start, n) in enumerate(sampler_windows(num_frames, K, P, cfg.first_frame)):
        x = noise[0, :, start:start + n]                             # (B, n, C, H, W)
        for j, s in enumerate(sigmas):
            t = torch.full((B, n), 1000 * s, device=dev)
            if kv_cache:
                x0 = model.forward_chunk(x, t, cache, start)
            else:
                seq = torch.cat(chunks + [x], 1)                     # (B, start + n, C, H, W)
                tt = torch.cat([torch.zeros(B, start, device=dev), t], 1)   # context at t = 0
                x0 = model(seq, tt, mode="causal", window=window, sink=sink, ctx=ctx)[:, start:]
            if j + 1 < S:
                x = add_noise(x0, noise[j + 1, :, start:start + n], sigmas[j + 1])
        chunks.append(x0)
        if kv_cache and start + n < num_frames:                      # the last block's K/V would never be read
            model.append_to_cache(x0, cache, start)
        if progress is not None:
            progress(bi, x0)
    return torch.cat(chunks, 1)                                      # (B, F, C, H, W)


@torch.no_grad()
def stream_euler_sample(model, tokens, noise, num_steps, shift, guidance=1.0, window=None, sink=0, prefix=None):
    """Many-step streaming for causal models trained with the diffusion loss (the teacher-forcing and
    diffusion-forcing baselines): block by block through the KV cache as stream_sample, but each block
    takes num_steps deterministic Euler steps with CFG instead of 4 re-noised ones. noise (B, F, C, H, W);
    prefix (B, P, C, H, W), P a multiple of K: known first frames that enter the cache as finished blocks."""
    B, F = noise.shape[:2]
    K = model.cfg.chunk
    P = 0 if prefix is None else prefix.shape[1]
    assert F % K == 0 and P % K == 0 and P < F, f"{F} frames and a prefix of {P} must be multiples of the chunk {K}"
    sigmas = euler_sigmas(num_steps, shift)
    ctx = cfg_context(model, tokens, guidance)                       # (B or 2B rows): cond [; uncond]
    rows = ctx[0].shape[0]                                           # the cache holds cond and uncond streams
    cache = model.new_cache(window=window, sink=sink, ctx=ctx)
    double = (lambda v: torch.cat([v, v])) if rows != B else (lambda v: v)
    chunks = [] if prefix is None else [prefix]
    if prefix is not None:
        prefill(model, cache, double(prefix))
    for start, n in sampler_windows(F, K, P, model.cfg.first_frame):
        x = noise[:, start:start + n].clone()                       # (B, n, C, H, W)
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            x0 = model.forward_chunk(double(x), x.new_full((rows, n), 1000 * s), cache, start)
            if rows != B:
                cond, uncond = x0.chunk(2)
                x0 = uncond + guidance * (cond - uncond)             # (B, n, C, H, W)
            x = x + (s_next - s) * x0_to_v(x0, x, s)                 # Euler, dx/dsigma = v
        chunks.append(x)
        if start + n < F:
            model.append_to_cache(double(x), cache, start)
    return torch.cat(chunks, 1)                                      # (B, F, C, H, W)
