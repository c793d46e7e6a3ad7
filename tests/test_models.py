import pytest
import torch

from m3bert.data import Batch
from m3bert.masking import Masker
from m3bert.models import M3BERT, M3BERTConfig
from m3bert.models.encoder import rotary_table, rotate
from m3bert.objectives import MaskedReconstruction

TINY = dict(input_dim=12, hidden_size=16, num_layers=2, num_heads=2, ffn_size=32, dropout=0.0, max_positions=64)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("downsample", [1, 3])
def test_shapes_of_every_layer(norm_first, downsample):
    model = M3BERT(M3BERTConfig(**TINY, norm_first=norm_first, downsample=downsample)).eval()
    out = model(torch.randn(3, 20, 12), torch.tensor([20, 11, 4]))
    tokens = -(-20 // downsample)
    assert len(out.hidden_states) == 3  # embedding + 2 layers
    assert all(h.shape == (3, tokens, 16) for h in out.hidden_states)
    assert out.lengths.tolist() == [-(-n // downsample) for n in (20, 11, 4)]


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_does_not_change_valid_outputs(norm_first, positions):
    torch.manual_seed(0)
    model = M3BERT(M3BERTConfig(**TINY, norm_first=norm_first, positions=positions)).eval()
    clip = torch.randn(1, 9, 12)
    alone = model(clip, torch.tensor([9])).last_hidden_state
    padded = torch.cat([clip, 100 * torch.randn(1, 7, 12)], dim=1)  # garbage in the padding
    batched = model(padded, torch.tensor([9])).last_hidden_state
    torch.testing.assert_close(batched[:, :9], alone, rtol=1e-5, atol=1e-5)


def test_wrong_feature_dimension_is_named():
    model = M3BERT(M3BERTConfig(**TINY))
    with pytest.raises(ValueError, match="model.input_dim=12"):
        model(torch.randn(1, 5, 324))


def test_too_long_input_names_the_fix():
    model = M3BERT(M3BERTConfig(**TINY))
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.randn(1, 65, 12))


def test_heads_must_divide_hidden_size():
    with pytest.raises(ValueError, match="num_heads"):
        M3BERTConfig(input_dim=12, hidden_size=10, num_heads=4)


def test_positional_table_is_a_buffer_not_saved():
    model = M3BERT(M3BERTConfig(**TINY))
    assert "positions" not in model.state_dict()
    assert model.positions.shape == (64, 16)


def test_rotary_query_key_products_depend_only_on_distance():
    table = rotary_table(64, 8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def product(m, n):  # q at position m, k at position n
        at = lambda x, i: rotate(torch.cat([torch.zeros(1, 1, i, 8), x], 2), table)[:, :, i]  # noqa: E731
        return (at(q, m) * at(k, n)).sum()

    torch.testing.assert_close(product(3, 7), product(20, 24))
    torch.testing.assert_close(product(9, 2), product(40, 33))
    assert not torch.allclose(product(3, 7), product(3, 8))
    torch.testing.assert_close(rotate(q, table).norm(), q.norm())  # a rotation keeps lengths


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
def test_only_sinusoidal_positions_enter_the_embeddings(positions):
    model = M3BERT(M3BERTConfig(**TINY, positions=positions)).eval()
    frame = torch.randn(1, 1, 12).expand(1, 10, 12)  # the same frame at 10 positions
    embeddings = model(frame).hidden_states[0][0]
    assert torch.allclose(embeddings[0], embeddings[7]) == (positions == "rotary")
    last = model(frame).last_hidden_state[0]  # equal tokens attend alike when positions only act through distance
    assert torch.allclose(last[0], last[7], atol=1e-5) == (positions == "rotary")


def test_unknown_positions_and_odd_rotary_heads_are_refused():
    with pytest.raises(ValueError, match="model.positions must be one of sinusoidal, rotary"):
        M3BERTConfig(input_dim=12, positions="learned")
    with pytest.raises(ValueError, match="hidden_size / num_heads must be even"):
        M3BERTConfig(input_dim=12, hidden_size=18, num_heads=2, positions="rotary")


def test_attention_maps_are_distributions_that_ignore_padding():
    model = M3BERT(M3BERTConfig(**TINY)).eval()
    maps = model.attention_maps(torch.randn(2, 10, 12), torch.tensor([10, 6]))
    assert len(maps) == 2 and maps[0].shape == (2, 2, 10, 10)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, 10))
    assert maps[1][1, :, :, 6:].abs().max() == 0


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    cfg = M3BERTConfig(**TINY)
    model = MaskedReconstruction(cfg, Masker(0.15, frames={})).eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    clone = MaskedReconstruction(cfg, Masker(0.15, frames={})).eval()
    clone.load_state_dict(torch.load(tmp_path / "model.pt"))
    x, lengths = torch.randn(2, 15, 12), torch.tensor([15, 8])
    out_a = model(Batch(x, lengths, torch.arange(2)), torch.Generator().manual_seed(3))
    out_b = clone(Batch(x, lengths, torch.arange(2)), torch.Generator().manual_seed(3))
    assert torch.equal(out_a.loss_sum, out_b.loss_sum)


def test_loss_covers_exactly_the_masked_positions():
    cfg = M3BERTConfig(**TINY)
    model = MaskedReconstruction(cfg, Masker(0.3, frames={})).eval()
    x, lengths = torch.randn(2, 30, 12), torch.tensor([30, 20])
    out = model(Batch(x, lengths, torch.arange(2)), torch.Generator().manual_seed(0))
    masked = model.masker(x, lengths, torch.Generator().manual_seed(0))
    prediction = model.reconstruct(masked, lengths)
    error = torch.nn.functional.huber_loss(prediction, x, reduction="none")
    assert out.count == masked.mask.sum() > 0
    torch.testing.assert_close(out.loss_sum, error[masked.mask].sum())
    assert not masked.mask[1, 20:].any()  # padding is never in the loss
