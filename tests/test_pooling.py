"""Pooling over valid frames: mean, max and statistics pooling (mean ⊕ std) for clip embeddings, HEAR scene
embeddings and task heads, on inputs whose answers are known."""

import pytest
import torch

from m3bert.inference.representations import Representation
from m3bert.models.pooling import POOLINGS, RunningPool, masked_pool, pooled_dim
from m3bert.tasks.heads import Pooling

# Two clips of three 2-channel frames; the second has one valid frame, then padding that must not count.
X = torch.tensor([[[1.0, 10.0], [3.0, 10.0], [5.0, 40.0]], [[2.0, -1.0], [99.0, 99.0], [99.0, 99.0]]])
VALID = torch.tensor([[True, True, True], [True, False, False]])


def test_masked_pool_values_on_a_known_input():
    torch.testing.assert_close(masked_pool(X, VALID, "mean"), torch.tensor([[3.0, 20.0], [2.0, -1.0]]))
    torch.testing.assert_close(masked_pool(X, VALID, "max"), torch.tensor([[5.0, 40.0], [2.0, -1.0]]))
    std = torch.tensor([(8 / 3) ** 0.5, 200**0.5])  # population std of (1, 3, 5) and (10, 10, 40)
    expected = torch.tensor([[3.0, 20.0, std[0], std[1]], [2.0, -1.0, 1e-5, 1e-5]])  # one frame: the std floor
    torch.testing.assert_close(masked_pool(X, VALID, "mean_std"), expected)
    assert pooled_dim(2, "mean_std") == 4 and pooled_dim(2, "max") == 2
    with pytest.raises(ValueError, match="pooling must be one of"):
        masked_pool(X, VALID, "median")


def test_mean_std_max_and_the_default_clip_embedding_on_a_known_input():
    from m3bert.models.pooling import CLIP_POOLING, clip_embedding

    pooled = masked_pool(X, VALID, "mean_std_max")
    std = (8 / 3) ** 0.5, 200**0.5
    torch.testing.assert_close(pooled[0], torch.tensor([3.0, 20.0, std[0], std[1], 5.0, 40.0]))
    assert pooled_dim(2, "mean_std_max") == 6 and CLIP_POOLING == "mean_std_max"
    # Two "layers" (the two clips here) averaged: the clip embedding is the mean of their pooled vectors.
    torch.testing.assert_close(clip_embedding(pooled), (pooled[0] + pooled[1]) / 2)


@pytest.mark.parametrize("mode, width", [("mean", 2), ("max", 2), ("mean_std", 4), ("attention", 2)])
def test_head_pooling_shapes_ignore_padding_and_train(mode, width):
    pooling = Pooling(2, mode)
    out = pooling(X.requires_grad_(), VALID)
    assert out.shape == (2, width) and pooling.out_dim == width
    # The padded frames (99s) never reach the pooled vector of the second clip.
    torch.testing.assert_close(out[1, :2], torch.tensor([2.0, -1.0]))
    out.sum().backward()
    assert torch.isfinite(X.grad).all() and (X.grad[1, 1:] == 0).all()
    X.grad = None


def test_clip_embeddings_pool_every_layer():
    rep = Representation(X, torch.arange(3.0), (0, 1))  # (layers=2, frames=3, hidden=2)
    assert rep.pooled("mean_std").shape == (2, 4)
    torch.testing.assert_close(rep.pooled("mean_std")[0], masked_pool(X[0], None, "mean_std"))
    torch.testing.assert_close(rep.pooled("max"), X.amax(1))


def test_running_pool_of_chunks_is_the_masked_pool_of_the_whole_sequence():
    x = torch.randn(3, 50, 8) * 4 + 2  # (layers, frames, dim), an offset that a float32 E[x^2] - E[x]^2 would feel
    pool = RunningPool()
    for chunk in x.split([7, 20, 23], dim=1):
        pool.add(chunk)
    for how in POOLINGS:
        torch.testing.assert_close(pool.result(how), masked_pool(x, None, how), rtol=1e-5, atol=1e-5)
    assert pool.result("mean_std").shape == (3, 16) and pool.frames == 50
