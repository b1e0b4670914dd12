"""Users' models for the bad-input corpus: each wrong in one way."""

import flax.linen as nn


class ThreeOutputs(nn.Module):
    """Three logits, whatever the task's classes (the digits have ten)."""

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


class NeedsWidth(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(10)(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))


NOT_A_MODULE = 42
