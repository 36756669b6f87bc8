"""Tests for model.py: the identities the Self Forcing model must satisfy (CPU, float32, fast).

Most checks need a NON-trivial model: adaLN-Zero makes the untrained model output exactly 0, so
`make_model` first fills every zero-initialised parameter with small random values."""
import copy
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import model as M  # noqa: E402

TOL = 1e-5
VOCAB = 20


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_model(chunk=3, randomize=True, **kw):
    torch.manual_seed(0)
    cfg = M.ModelConfig(vocab_size=VOCAB, resolution=16, patch=4, chunk=chunk, width=64, depth=2,
                        heads=4, text_depth=1, max_text_len=6, **kw)
    model = M.CausalDiT(cfg).eval()
    if randomize:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                if (p == 0).all():                       # adaLN-Zero layers, final layer, biases
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def inputs(model, B=2, F=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.cfg
    x = torch.randn(B, F, c.channels, c.resolution, c.resolution, generator=g)
    t = 1000 * torch.rand(B, F, generator=g)
    tokens = torch.randint(1, VOCAB, (B, c.max_text_len), generator=g)
    tokens[:, 4:] = 0                                    # padded prompts
    return x, t, tokens


def maxdiff(a, b):
    return (a - b).abs().max().item()


# --- 1. adaLN-Zero ---------------------------------------------------------------------------

def test_zero_output_at_init():
    model = make_model(randomize=False)
    x, t, tok = inputs(model)
    for mode in ["bidirectional", "causal"]:
        assert torch.equal(model(x, t, tok, mode=mode), torch.zeros_like(x))
    assert torch.equal(model(x, t, tok, mode="teacher_forcing", clean=x), torch.zeros_like(x))
    cache = model.new_cache(tok)
    assert torch.equal(model.forward_chunk(x[:, :3], t[:, :3], cache, 0), torch.zeros_like(x[:, :3]))


def test_randomized_model_is_not_trivial():
    model = make_model()
    x, t, tok = inputs(model)
    out = model(x, t, tok)
    assert out.abs().mean() > 1e-2 and torch.isfinite(out).all()


# --- 2. causality ----------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [3, 1])
def test_causal_mask_blocks_the_future(chunk):
    model = make_model(chunk)
    x, t, tok = inputs(model, F=6)
    with torch.no_grad():
        base = model(x, t, tok, mode="causal")
        for k in [0, 2, 4]:
            x2 = x.clone()
            x2[:, k] += torch.randn_like(x2[:, k])
            out = model(x2, t, tok, mode="causal")
            start = (k // chunk) * chunk                     # first frame of k's chunk
            if start > 0:
                assert maxdiff(out[:, :start], base[:, :start]) <= 1e-6, f"frame {k} leaked into the past"
            per_frame = (out - base).abs().flatten(2).amax(-1)   # (B, F)
            assert (per_frame[:, start:] > 1e-4).all(), f"frame {k} did not influence chunks >= its own"
        # the bidirectional teacher does see the future
        x2 = x.clone()
        x2[:, -1] += 1
        assert maxdiff(model(x2, t, tok)[:, 0], model(x, t, tok)[:, 0]) > 1e-4


def test_attention_mask_pictures():
    c = M.make_attention_mask(4, 1, 2, "causal").int()              # 4 frames, 1 token each, chunk 2
    tf = M.make_attention_mask(4, 1, 2, "teacher_forcing").int()
    assert c.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    #                  clean keys | noisy keys
    assert tf.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0],
                           [1, 1, 0, 0, 0, 0, 0, 0],
                           [1, 1, 1, 1, 0, 0, 0, 0],
                           [1, 1, 1, 1, 0, 0, 0, 0],
                           [0, 0, 0, 0, 1, 1, 0, 0],     # noisy chunk 0: itself only
                           [0, 0, 0, 0, 1, 1, 0, 0],
                           [1, 1, 0, 0, 0, 0, 1, 1],     # noisy chunk 1: clean chunk 0 + itself
                           [1, 1, 0, 0, 0, 0, 1, 1]]
    # rolling window 2 + sink 1, chunk 1: frame 5 sees frame 0 (sink), 3, 4 (window) and itself
    w = M.make_attention_mask(6, 1, 1, "causal", window=2, sink=1)
    assert w[5].nonzero().flatten().tolist() == [0, 3, 4, 5]
    # first_frame: frame 0 is a block alone, frames 1-2 the next one, then chunks of 3
    ff = M.make_attention_mask(6, 1, 3, "causal", first_frame=True).int()
    assert ff.tolist() == [[1, 0, 0, 0, 0, 0],
                           [1, 1, 1, 0, 0, 0],
                           [1, 1, 1, 0, 0, 0],
                           [1, 1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 1, 1]]
    assert M.frame_blocks(6, 3, first_frame=True).tolist() == [0, 1, 1, 2, 2, 2]
    assert M.frame_blocks(6, 3).tolist() == [0, 0, 0, 1, 1, 1]
    assert M.make_attention_mask(1, 1, 3, "causal", first_frame=True).tolist() == [[True]]   # frame 0 alone
    assert M.make_attention_mask(3, 4, 1, "bidirectional").shape == (12, 12)


def test_rope_is_relative_in_time():
    """Bidirectional attention sees only relative positions: shifting every frame index changes
    nothing (up to float error) -- a check that q and k are rotated consistently."""
    model = make_model()
    x, t, tok = inputs(model)
    with torch.no_grad():
        assert maxdiff(model(x, t, tok, frame_offset=7), model(x, t, tok)) < 1e-4


# --- 3. KV cache == full block-causal sequence -------------------------------------------------

def stream_with_clean_context(model, noisy, t, clean, tok, window=None, sink=0):
    """Denoise each block of `noisy` from the cache, then re-fill the cache with the CLEAN block."""
    cache = model.new_cache(tok, window=window, sink=sink)
    outs = []
    for s, n in M.sampler_windows(noisy.shape[1], model.cfg.chunk, first_frame=model.cfg.first_frame):
        outs.append(model.forward_chunk(noisy[:, s:s + n], t[:, s:s + n], cache, s))
        model.append_to_cache(clean[:, s:s + n], cache, s)
        if window is not None:
            assert len(cache.frames) <= sink + window
            assert cache.k[0].shape[2] == len(cache.frames) * model.cfg.tokens_per_frame
    return torch.cat(outs, 1), cache


def full_sequence_reference(model, noisy, t, clean, tok, window=None, sink=0):
    """Block by block: one full causal forward over [clean frames so far at t = 0 | noisy block]."""
    outs = []
    for s, n in M.sampler_windows(noisy.shape[1], model.cfg.chunk, first_frame=model.cfg.first_frame):
        seq = torch.cat([clean[:, :s], noisy[:, s:s + n]], 1)
        tt = torch.cat([torch.zeros_like(t[:, :s]), t[:, s:s + n]], 1)
        outs.append(model(seq, tt, tok, mode="causal", window=window, sink=sink)[:, s:])
    return torch.cat(outs, 1)


@pytest.mark.parametrize("chunk,first_frame", [(3, False), (1, False), (3, True)])
def test_kv_cache_equals_full_sequence(chunk, first_frame):
    model = make_model(chunk, first_frame=first_frame)
    noisy, t, tok = inputs(model, F=6)
    clean = inputs(model, F=6, seed=1)[0]
    with torch.no_grad():
        streamed, cache = stream_with_clean_context(model, noisy, t, clean, tok)
        assert maxdiff(streamed, full_sequence_reference(model, noisy, t, clean, tok)) <= TOL
        tf = model(noisy, t, tok, mode="teacher_forcing", clean=clean)
        assert maxdiff(streamed, tf) <= TOL
    assert cache.frames == list(range(6)) and cache.next_frame == 6


@pytest.mark.parametrize("chunk,window,sink,first_frame", [(3, 6, 3, False), (1, 5, 2, False), (3, 9, 0, True)])
def test_rolling_cache_four_times_training_length(chunk, window, sink, first_frame):
    model = make_model(chunk, first_frame=first_frame)
    F = 48 if chunk == 3 else 24                         # training length 12 (resp. 6 frame-wise)
    noisy, t, tok = inputs(model, B=1, F=F)
    clean = inputs(model, B=1, F=F, seed=1)[0]
    with torch.no_grad():
        streamed, cache = stream_with_clean_context(model, noisy, t, clean, tok, window, sink)
        ref = full_sequence_reference(model, noisy, t, clean, tok, window, sink)
        assert maxdiff(streamed, ref) <= TOL
        tf = model(noisy, t, tok, mode="teacher_forcing", clean=clean, window=window, sink=sink)
        assert maxdiff(streamed, tf) <= TOL
        # the window really matters: the unwindowed model gives something else
        assert maxdiff(streamed, full_sequence_reference(model, noisy, t, clean, tok)) > 1e-4
    assert cache.frames == list(range(sink)) + list(range(F - window, F))


# --- 5. no gradient reaches the cache ----------------------------------------------------------

def test_cache_is_detached_and_gradient_matches_detached_reference():
    model = make_model(3)
    noisy, t, tok = inputs(model, F=6)
    x1 = noisy[:, :3].clone().requires_grad_(True)
    x2 = noisy[:, 3:].clone().requires_grad_(True)

    # streamed: chunk 1 with grad, clean re-fill of its output, chunk 2 attends to it
    with torch.no_grad():
        cache = model.new_cache(tok)
    out1 = model.forward_chunk(x1, t[:, :3], cache, 0)
    assert out1.requires_grad
    model.append_to_cache(out1, cache, 0)
    assert not any(z.requires_grad for z in cache.k + cache.v + [c for kv in cache.text_kv for c in kv])
    out2 = model.forward_chunk(x2, t[:, 3:], cache, 3)
    loss = out1.square().sum() + (out2 * out1.detach()).sum()
    params = [p for p in model.parameters()]
    g_stream = torch.autograd.grad(loss, [x1, x2] + params, allow_unused=True)   # text encoder unused

    # reference: chunk 2's context built by a frozen copy from the explicitly detached output
    frozen = copy.deepcopy(model).requires_grad_(False)
    ref_cache = frozen.new_cache(tok)
    out1_ref = model.forward_chunk(x1, t[:, :3], ref_cache, 0)
    frozen.append_to_cache(out1_ref.detach(), ref_cache, 0)
    out2_ref = model.forward_chunk(x2, t[:, 3:], ref_cache, 3)
    loss_ref = out1_ref.square().sum() + (out2_ref * out1_ref.detach()).sum()
    g_ref = torch.autograd.grad(loss_ref, [x1, x2] + params, allow_unused=True, retain_graph=True)
    for a, b in zip(g_stream, g_ref):
        assert (a is None) == (b is None)
        if a is not None:
            assert maxdiff(a, b) <= 1e-4 * max(1.0, b.abs().max().item())

    # input gradients also match the full causal sequence with a detached clean context
    seq = torch.cat([out1_ref.detach(), x2], 1)
    tt = torch.cat([torch.zeros_like(t[:, :3]), t[:, 3:]], 1)
    out2_full = model(seq, tt, tok, mode="causal")[:, 3:]
    g_full = torch.autograd.grad((out2_full * out1_ref.detach()).sum(), x2)[0]
    assert maxdiff(g_full, g_stream[1]) <= 1e-4 * max(1.0, g_full.abs().max().item())

    # and the check has teeth: WITHOUT the detach, chunk 1's input receives a different gradient
    leaky = model(torch.cat([out1_ref, x2], 1), tt, tok, mode="causal")[:, 3:]
    g_leak = torch.autograd.grad(out1_ref.square().sum() + (leaky * out1_ref.detach()).sum(), x1)[0]
    assert maxdiff(g_leak, g_stream[0]) > 1e-4


def test_forward_chunk_does_not_modify_cache():
    model = make_model(3)
    x, t, tok = inputs(model, F=6)
    with torch.no_grad():
        cache = model.new_cache(tok)
        model.append_to_cache(x[:, :3], cache, 0)
        before = [k.clone() for k in cache.k]
        model.forward_chunk(x[:, 3:], t[:, 3:], cache, 3)
    assert all(torch.equal(a, b) for a, b in zip(before, cache.k)) and cache.next_frame == 3


def test_modulation_memo_serves_a_stream_but_never_a_gradient_step():
    """Without gradient a cache keeps the adaLN modulations of each noise level it is asked for, and the next chunk
    at that level reads them back; a call WITH gradient (the rollout's exit step) makes its own, or the adaLN
    weights would get no gradient from it."""
    model = make_model(3)
    x, _, tok = inputs(model, F=6)
    t = torch.full((2, 3), 937.5)
    with torch.no_grad():
        cache = model.new_cache(tok)
        a = model.forward_chunk(x[:, :3], t, cache, 0)
        model.append_to_cache(a, cache, 0)                       # the re-fill's level, 0
        assert len(cache.modulations) == 2, list(cache.modulations)
        b = model.forward_chunk(x[:, 3:], t, cache, 3)           # 937.5 again: read from the memo
        assert len(cache.modulations) == 2, "the same level was stored twice"
        cache.modulations.clear()
        assert torch.equal(b, model.forward_chunk(x[:, 3:], t, cache, 3)), "the memo changed the output"
    model.zero_grad()
    model.forward_chunk(x[:, 3:], t, cache, 3).square().sum().backward()
    for i, blk in enumerate(model.blocks + [model.final]):
        g = blk.adaLN[-1].weight.grad
        assert g is not None and g.abs().sum() > 0, f"adaLN {i} got no gradient: the memo served a gradient step"
    assert len(cache.modulations) == 1, "a call with gradient stored its modulations"


# --- 6. samplers and sigmas ------------------------------------------------------------------

def test_student_sigmas_and_grid():
    assert [1000 * s for s in M.student_sigmas(4, 5.0)] == pytest.approx([1000, 937.5, 833.3333, 625])
    grid = M.euler_sigmas(16, 5.0)
    assert grid[0] == 1 and grid[-1] == 0 and len(grid) == 17
    assert [grid[i] for i in (0, 4, 8, 12)] == pytest.approx(M.student_sigmas(4, 5.0))
    x0, eps = torch.randn(2, 3, 3, 4, 4), torch.randn(2, 3, 3, 4, 4)
    sigma = torch.rand(2, 3) * 0.9 + 0.1
    xt = M.add_noise(x0, eps, sigma)
    v = M.x0_to_v(x0, xt, sigma)
    assert maxdiff(v, eps - x0) < 1e-4 and maxdiff(M.v_to_x0(v, xt, sigma), x0) < 1e-5
    assert maxdiff(M.add_noise(x0, eps, torch.full((2,), 0.5)), 0.5 * (x0 + eps)) < 1e-6


@pytest.mark.parametrize("chunk,window,sink,frames,first_frame",
                         [(3, None, 0, 9, False), (1, 3, 1, 8, False), (3, 6, 0, 15, True)])
def test_stream_sample_cache_and_recompute_agree(chunk, window, sink, frames, first_frame):
    model = make_model(chunk, first_frame=first_frame)
    _, _, tok = inputs(model)
    sig = M.student_sigmas(4, 5.0)
    seen = []
    a = M.stream_sample(model, tok, frames, sig, generator=torch.Generator().manual_seed(3),
                        window=window, sink=sink, progress=lambda i, x: seen.append((i, x.shape[1])))
    b = M.stream_sample(model, tok, frames, sig, generator=torch.Generator().manual_seed(3),
                        kv_cache=False, window=window, sink=sink)
    assert a.shape == (2, frames, 3, 16, 16) and maxdiff(a, b) <= TOL
    assert not (a.requires_grad or b.requires_grad), "a sampler kept autograd's graph (grad is on in this test)"
    sizes = ([1, chunk - 1] if first_frame else [chunk]) + [chunk] * (frames // chunk - 1)   # frames per block
    assert seen == list(enumerate(sizes))
    # a known prefix enters the cache block by block: the continuation is the one recompute gives
    prefix = a[:, :chunk]
    c = M.stream_sample(model, tok, frames, sig, generator=torch.Generator().manual_seed(4), window=window,
                        sink=sink, prefix=prefix)
    d = M.stream_sample(model, tok, frames, sig, generator=torch.Generator().manual_seed(4), window=window,
                        sink=sink, prefix=prefix, kv_cache=False)
    assert torch.equal(c[:, :chunk], prefix) and maxdiff(c, d) <= TOL


def test_euler_sample_shapes_and_cfg():
    model = make_model()
    _, _, tok = inputs(model)
    noise = torch.randn(2, 6, 3, 16, 16)
    out = M.euler_sample(model, tok, noise, 4, 3.0, guidance=3.0)
    traj = M.euler_sample(model, tok, noise, 4, 3.0, guidance=3.0, return_trajectory=True)
    assert out.shape == noise.shape and traj.shape == (5, 2, 6, 3, 16, 16)
    assert torch.equal(traj[0], noise) and torch.equal(traj[-1], out)
    out1 = M.euler_sample(model, tok, noise, sigmas=M.euler_sigmas(4, 3.0))
    assert torch.isfinite(out1).all() and maxdiff(out1, out) > 1e-4      # guidance changes the result
    assert M.euler_sample(model, tok, noise, 2, 3.0, mode="causal").shape == noise.shape
    # batched CFG equals running cond and uncond separately
    t = torch.full((2, 6), 500.0)
    ctx = M.cfg_context(model, tok, 3.0)
    with torch.no_grad():
        cond, unc = model(noise, t, tok), model(noise, t, torch.zeros_like(tok))
        # (1 - g) unc + g cond carries each call's rounding (batch 4 against batch 2: other GEMM blocking) times
        # |1 - g| + g = 5 at g = 3; another CPU measured 1.1e-5 against 1e-5, while a wrong formula is off by ~0.1
        assert maxdiff(M.cfg_x0(model, noise, t, ctx, 3.0), unc + 3 * (cond - unc)) <= 5 * TOL


# --- 7. bad input ----------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="not divisible by patch"):
        M.ModelConfig(vocab_size=VOCAB, resolution=30, patch=8)
    with pytest.raises(ValueError, match="RoPE"):
        M.ModelConfig(vocab_size=VOCAB, width=20, heads=5)
    model = make_model(3)
    x, t, tok = inputs(model, F=6)
    with pytest.raises(ValueError, match="multiple of the chunk"):
        model(x[:, :5], t[:, :5], tok, mode="causal")
    with pytest.raises(ValueError, match=r"\(B, F, C, H, W\)"):
        model(x[:, :, :, :8], t, tok)
    with pytest.raises(ValueError, match="one timestep"):
        model(x, t[:, :4], tok)
    with pytest.raises(ValueError, match="batch"):
        model(x, t, tok[:1])
    with pytest.raises(ValueError, match="token ids"):
        model(x, t, tok + VOCAB)
    with pytest.raises(ValueError, match="unknown mode"):
        model(x, t, tok, mode="sideways")
    with pytest.raises(ValueError, match="clean="):
        model(x, t, tok, mode="teacher_forcing")
    cache = model.new_cache(tok)
    with pytest.raises(ValueError, match="stream chunks in order"):
        model.forward_chunk(x[:, :3], t[:, :3], cache, 3)
    with pytest.raises(ValueError, match="multiple of the chunk"):
        M.stream_sample(model, tok, 7, [1.0])


# --- 8. text and the null prompt -------------------------------------------------------------

def test_empty_prompt_uses_learned_null_context():
    model = make_model()
    x, t, tok = inputs(model)
    tok = tok.clone()
    tok[1] = 0                                           # row 1 is the empty prompt
    ctx, mask = model.encode_text(tok)
    assert torch.equal(ctx[1], model.text.null[0]) and mask[1].all()
    assert not torch.allclose(ctx[0], ctx[1]) and mask[0].tolist() == (tok[0] != 0).tolist()
    out = model(x, t, tok)
    assert torch.isfinite(out).all()
    out[1].square().sum().backward()
    assert model.text.null.grad is not None and model.text.null.grad.abs().sum() > 0
    # precomputed ctx gives the same answer as tokens
    with torch.no_grad():
        assert torch.equal(model(x, t, ctx=(ctx, mask)), model(x, t, tok))


def test_word_code_keeps_words_apart_whatever_the_encoder_learns():
    """Each word's fixed random code (TextEncoder.code): a buffer, not a parameter, the same for every model
    whatever the seed, zero for the pad; and no learned weight can make two words alike: with the encoder's
    embeddings of two words made equal, their outputs still differ by exactly the difference of their codes."""
    model = make_model()
    assert "text.code" in model.state_dict() and "text.code" not in dict(model.named_parameters())
    torch.manual_seed(123)
    other = M.CausalDiT(model.cfg)
    assert torch.equal(other.text.code, model.text.code), "the code must not depend on the global seed"
    assert not torch.equal(other.text.tok.weight, model.text.tok.weight)
    code = model.text.code
    assert code[0].abs().sum() == 0 and (code[1:].norm(dim=1) > 0.5 * model.cfg.width ** 0.5).all()
    a, b = 4, 5                                          # two word ids
    with torch.no_grad():
        model.text.tok.weight[b] = model.text.tok.weight[a]   # the learned part can no longer tell them apart
    tok = torch.tensor([[1, 2, a, 0, 0, 0], [1, 2, b, 0, 0, 0]])
    ctx, _ = model.encode_text(tok)
    assert torch.allclose(ctx[0, [0, 1]], ctx[1, [0, 1]], atol=1e-6)
    assert torch.allclose(ctx[0, 2] - ctx[1, 2], code[a] - code[b], atol=1e-5)
    assert (ctx[0, 2] - ctx[1, 2]).norm() > model.cfg.width ** 0.5     # about sqrt(2 D) apart
    # and the DiT sees the difference: the same noisy video under the two prompts gives two different x0
    x, t, _ = inputs(model, B=1)
    with torch.no_grad():
        out = model(x.repeat(2, 1, 1, 1, 1), t.repeat(2, 1), tok)             # (2, F, C, H, W)
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_chunkwise_euler_sample_keeps_the_past_finished_and_the_future_noise():
    """The teacher's chunk-wise sampler: chunk i runs its Euler steps with the chunks before it finished at t = 0
    and the chunks after it at their noise at t = 1000; a prefix is kept as given; first_frame makes frame 0 alone."""
    model = make_model(chunk=3)
    _, _, tok = inputs(model)
    noise = torch.randn(2, 6, 3, 16, 16)
    traj = M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0, return_trajectory=True, chunk=3)
    out = M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0, chunk=3)
    assert torch.equal(traj[0], noise) and torch.equal(traj[-1], out)
    # chunk 0 by hand: Euler over frames 0-2 only, frames 3-5 held at their noise with t = 1000
    sig, ctx, x = M.euler_sigmas(4, 3.0), M.cfg_context(model, tok, 2.0), noise.clone()
    with torch.no_grad():
        for s, s_next in zip(sig[:-1], sig[1:]):
            t = torch.tensor([1000 * s] * 3 + [1000.0] * 3).expand(2, 6)
            x0 = M.cfg_x0(model, x, t, ctx, 2.0)
            x[:, :3] = x[:, :3] + (s_next - s) * M.x0_to_v(x0[:, :3], x[:, :3], s)
    assert maxdiff(out[:, :3], x[:, :3]) <= TOL
    assert maxdiff(out[:, :3], M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0)[:, :3]) > 1e-4  # not joint
    # a given first chunk stays exactly as given, and only the frames after it are sampled
    prefix = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    cont = M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0, chunk=3, prefix=prefix)
    assert torch.equal(cont[:, :3], prefix) and maxdiff(cont[:, 3:], out[:, 3:]) > 1e-4
    # chunk = the whole clip is the joint sampler
    assert maxdiff(M.euler_sample(model, tok, noise, 4, 3.0, chunk=6), M.euler_sample(model, tok, noise, 4, 3.0)) == 0
    # first_frame: frame 0 alone (the rest at t = 1000), then frames 1-2 with frame 0 finished, then chunk-wise
    first = M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0, chunk=3, first_frame=True)
    x = noise.clone()
    with torch.no_grad():
        for a, n in [(0, 1), (1, 2)]:
            for s, s_next in zip(sig[:-1], sig[1:]):
                t = torch.tensor([0.0] * a + [1000 * s] * n + [1000.0] * (6 - a - n)).expand(2, 6)
                x0 = M.cfg_x0(model, x, t, ctx, 2.0)
                x[:, a:a + n] = x[:, a:a + n] + (s_next - s) * M.x0_to_v(x0[:, a:a + n], x[:, a:a + n], s)
    assert maxdiff(first[:, :3], x[:, :3]) <= TOL and maxdiff(first[:, :3], out[:, :3]) > 1e-4
    traj = M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0, return_trajectory=True, chunk=3, first_frame=True)
    assert torch.equal(traj[-1], first) and torch.equal(traj[0], noise)
    # with a prefix, the first chunk is given: first_frame changes nothing
    assert torch.equal(M.euler_sample(model, tok, noise, 4, 3.0, guidance=2.0, chunk=3, prefix=prefix,
                                      first_frame=True), cont)


@pytest.mark.parametrize("chunk,guidance", [(3, 2.0), (1, 1.0)])
def test_stream_euler_sample_equals_the_causal_euler_sampler(chunk, guidance):
    """The baselines' many-step streaming (KV cache, CFG) is the chunk-wise Euler sampler in causal mode, where the
    past sits finished at t = 0 and the future is masked: the same video, with and without a given first chunk.
    And the teacher_forcing layout with clean_t reads its context at those levels, as causal mode reads its past."""
    model = make_model(chunk)
    _, _, tok = inputs(model)
    noise = torch.randn(2, 6, 3, 16, 16)
    with torch.no_grad():
        streamed = M.stream_euler_sample(model, tok, noise, 4, 3.0, guidance)
        full = M.euler_sample(model, tok, noise, 4, 3.0, guidance, mode="causal", chunk=chunk)
        assert maxdiff(streamed, full) <= TOL
        prefix = torch.rand(2, 3, 3, 16, 16) * 2 - 1
        cont = M.stream_euler_sample(model, tok, noise, 4, 3.0, guidance, prefix=prefix)
        assert torch.equal(cont[:, :3], prefix)
        assert maxdiff(cont, M.euler_sample(model, tok, noise, 4, 3.0, guidance, mode="causal", chunk=chunk,
                                            prefix=prefix)) <= TOL
        x, t, _ = inputs(model, F=6)
        ctx, ct = inputs(model, F=6, seed=1)[:2]
        tf = model(x, t, tok, mode="teacher_forcing", clean=ctx, clean_t=ct)
        assert maxdiff(tf, model(x, t, tok, mode="teacher_forcing", clean=ctx)) > 1e-4      # the levels matter
        # chunk i of tf = the causal model on [context chunks < i at their levels | chunk i at its own]
        K, s = chunk, 3
        ref = model(torch.cat([ctx[:, :s], x[:, s:s + K]], 1), torch.cat([ct[:, :s], t[:, s:s + K]], 1), tok,
                    mode="causal")[:, s:]
        assert maxdiff(tf[:, s:s + K], ref) <= TOL


def test_rope_rotations_kept_from_sampling_serve_training():
    """CausalDiT._rope keeps each frame set's rotations; the first call may come from sample.py's inference mode, and
    training must still be able to use them (an inference-mode tensor cannot be saved for backward)."""
    model = make_model(chunk=3)
    x, t, tok = inputs(model)
    with torch.inference_mode():
        first = model(x, t, tok)
    assert len(model._rotations) == 1
    out = model(x, t, tok)                                   # the kept rotations, now under autograd
    out.square().mean().backward()
    assert torch.equal(out.detach(), first) and len(model._rotations) == 1
    rot = next(iter(model._rotations.values()))
    assert not rot.is_inference() and rot.dtype == torch.complex64 and torch.allclose(rot.abs(), torch.ones(()))
