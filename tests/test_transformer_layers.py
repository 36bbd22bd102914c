"""rtinst.modeling.layers.transformer: the sine embedding at hand-computed positions, the decoder
layer's behaviour (padding, norms), the learnable queries, and each of them exported to ONNX
(opset 17) giving ONNX Runtime's outputs equal to PyTorch's."""
import math

import numpy as np
import pytest
import torch

from rtinst.modeling.layers import (
    LearnableQueries,
    PositionEmbeddingSine,
    TransformerDecoder,
    TransformerDecoderLayer,
)

D, HEADS = 16, 4


def test_sine_embedding_at_a_hand_computed_position():
    # 4 features: dim_t = 10000^(2 * [0, 0, 1, 1] / 4) = [1, 1, 100, 100]; the pixel at row 0,
    # column 1 has y = 1, x = 2
    embedding = PositionEmbeddingSine(num_pos_feats=4)(torch.zeros(1, 3, 2, 3))
    assert embedding.shape == (1, 8, 2, 3)
    expected = [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01),
                math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]
    assert embedding[0, :, 0, 1].tolist() == pytest.approx(expected, abs=1e-6)


def test_normalised_sine_embedding():
    # height 2, width 4: the pixel at row 1, column 1 has y = 2/2 * 2 pi, x = 2/4 * 2 pi
    embedding = PositionEmbeddingSine(num_pos_feats=2, normalize=True)(torch.zeros(1, 1, 2, 4))
    expected = [math.sin(2 * math.pi), math.cos(2 * math.pi), math.sin(math.pi), math.cos(math.pi)]
    assert embedding[0, :, 1, 1].tolist() == pytest.approx(expected, abs=1e-5)


def test_padding_mask_keeps_the_embedding_of_the_image():
    layer = PositionEmbeddingSine(num_pos_feats=8)
    mask = torch.zeros(1, 5, 7, dtype=torch.bool)
    mask[:, 3:, :] = mask[:, :, 4:] = True  # a 3 x 4 image padded to 5 x 7
    padded = layer(torch.zeros(1, 2, 5, 7), mask)
    assert torch.equal(padded[..., :3, :4], layer(torch.zeros(1, 2, 3, 4)))
    with pytest.raises(ValueError, match=r"mask \(1, 5, 6\) does not match"):
        layer(torch.zeros(1, 2, 5, 7), mask[..., :6])
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(num_pos_feats=3)


def _decoder_inputs(batch=2, queries=5, pixels=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, n, D, generator=generator)
            for n in (queries, pixels, queries, pixels)]


@pytest.mark.parametrize("normalize_before", [False, True])
def test_decoder_layer_ignores_padded_pixels(normalize_before):
    torch.manual_seed(0)
    layer = TransformerDecoderLayer(D, HEADS, dim_feedforward=32,
                                    normalize_before=normalize_before).eval()
    queries, memory, query_pos, memory_pos = _decoder_inputs()
    padding = torch.zeros(2, 12, dtype=torch.bool)
    padding[:, 8:] = True
    output = layer(queries, memory, query_pos, memory_pos, padding)
    assert output.shape == (2, 5, D)
    changed = memory.clone()
    changed[:, 8:] += 100.0
    assert torch.allclose(layer(queries, changed, query_pos, memory_pos, padding), output,
                          atol=1e-5)
    assert not torch.allclose(layer(queries, changed, query_pos, memory_pos), output, atol=1e-2)


def test_post_norm_ends_with_layer_norm_and_pre_norm_does_not():
    torch.manual_seed(0)
    queries, memory, _, _ = _decoder_inputs()
    post = TransformerDecoderLayer(D, HEADS, dim_feedforward=32).eval()(queries, memory)
    pre = TransformerDecoderLayer(D, HEADS, dim_feedforward=32, normalize_before=True).eval()(
        queries * 10, memory)
    # a LayerNorm fresh from init: every query has mean 0 and (biased) variance 1
    assert torch.allclose(post.mean(-1), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(post.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3)
    assert pre.var(-1, unbiased=False).min() > 10  # the residual keeps the input's scale


def test_decoder_stack_returns_every_layer_and_normalises_pre_norm_outputs():
    torch.manual_seed(0)
    decoder = TransformerDecoder(3, d_model=D, nhead=HEADS, dim_feedforward=32,
                                 normalize_before=True).eval()
    queries, memory, query_pos, memory_pos = _decoder_inputs()
    outputs = decoder(queries, memory, query_pos, memory_pos)
    assert len(outputs) == 3
    x = queries
    for layer, output in zip(decoder.layers, outputs):
        x = layer(x, memory, query_pos, memory_pos)
        assert torch.allclose(output, decoder.norm(x), atol=1e-6)
    with pytest.raises(ValueError, match="at least one layer"):
        TransformerDecoder(0, d_model=D, nhead=HEADS)
    with pytest.raises(ValueError, match="'relu' or 'gelu', got 'tanh'"):
        TransformerDecoderLayer(D, HEADS, activation="tanh")


def test_learnable_queries():
    queries = LearnableQueries(7, D)
    features, positions = queries(torch.zeros(3, D, 4, 4))
    assert features.shape == positions.shape == (3, 7, D)
    assert torch.equal(features[2], queries.features.weight)
    assert torch.equal(positions[0], queries.pos.weight)
    assert LearnableQueries(7, D, with_pos=False)(torch.zeros(2, 1))[1] is None


class _Queries(torch.nn.Module):
    """LearnableQueries with its batch taken from the features, both outputs as tensors."""

    def __init__(self):
        super().__init__()
        self.queries = LearnableQueries(6, D)

    def forward(self, features):
        return self.queries(features)


def _onnx_matches_pytorch(module, inputs, tmp_path):
    import onnxruntime

    module.eval()
    path = tmp_path / "module.onnx"
    names = [f"input{i}" for i in range(len(inputs))]
    torch.onnx.export(module, tuple(inputs), str(path), input_names=names, opset_version=17,
                      dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # an input only the output's shape depends on (the sine embedding without a mask) is folded
    graph_inputs = {i.name for i in session.get_inputs()}
    got = session.run(None, {n: x.numpy() for n, x in zip(names, inputs) if n in graph_inputs})
    with torch.no_grad():
        expected = module(*inputs)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    assert len(got) == len(expected)
    for ours, theirs in zip(expected, got):
        np.testing.assert_allclose(theirs, ours.detach().numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sine", "sine_normalised_padded", "layer_post", "layer_pre",
                                  "decoder_2_layers", "queries"])
def test_onnx_export_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    queries, memory, query_pos, memory_pos = _decoder_inputs()
    padding = torch.zeros(2, 5, 6, dtype=torch.bool)
    padding[0, 3:] = padding[1, :, 4:] = True
    module, inputs = {
        "sine": (PositionEmbeddingSine(8), [torch.randn(2, 3, 5, 6)]),
        "sine_normalised_padded": (PositionEmbeddingSine(8, normalize=True),
                                   [torch.randn(2, 3, 5, 6), padding]),
        "layer_post": (TransformerDecoderLayer(D, HEADS, 32),
                       [queries, memory, query_pos, memory_pos]),
        "layer_pre": (TransformerDecoderLayer(D, HEADS, 32, activation="gelu",
                                              normalize_before=True),
                      [queries, memory, query_pos, memory_pos]),
        "decoder_2_layers": (TransformerDecoder(2, d_model=D, nhead=HEADS, dim_feedforward=32),
                             [queries, memory, query_pos, memory_pos]),
        "queries": (_Queries(), [torch.randn(2, D, 3, 3)]),
    }[name]
    _onnx_matches_pytorch(module, inputs, tmp_path)
