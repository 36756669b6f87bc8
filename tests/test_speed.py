"""Speed ratios measured side by side in one run (medians of several repeats), never absolute times."""
import torch

import toydata
from evaluate import median_seconds
from model import CausalDiT, ModelConfig


def test_rendering_is_a_small_fraction_of_a_training_step():
    # the tiny config's model and a batch of 64 twelve-frame 32x32 videos
    prompts = toydata.ALL_PROMPTS[:64]
    seeds = list(range(64))
    render = median_seconds(lambda: toydata.render_batch(prompts, seeds, 12, 32), 5)
    model = CausalDiT(ModelConfig(vocab_size=len(toydata.VOCAB)))
    x = toydata.render_batch(prompts, seeds, 12, 32)
    tokens = toydata.tokenize(prompts)
    t = torch.rand(64, 12) * 1000

    def step():
        model.zero_grad(set_to_none=True)
        model(x, t, tokens).pow(2).mean().backward()

    train = median_seconds(step, 3)
    ratio = render / train
    print(f"\nrender 64x12 frames: {1000 * render:.1f} ms; forward+backward: {1000 * train:.0f} ms; "
          f"ratio {ratio:.4f}")
    assert ratio < 0.05, f"rendering costs {100 * ratio:.1f}% of a training step (want < 5%)"
