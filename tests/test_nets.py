"""One parametrized suite for every generator and discriminator (diffusers' ModelTesterMixin style).

A new architecture or conditioning method is tested by adding one line to ``GENERATORS`` or
``DISCRIMINATORS``: output shape, backward to every parameter (and, for D, to the input, which the gradient
penalties need), determinism and batch independence in eval mode, eval forwards that move no buffer, and, for
conditional networks, outputs that depend on the condition.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.conditioning import (
    AuxiliaryClassifier,
    ConditionalBatchNorm,
    Conditioning,
    LabelConcat,
    Projection,
    SpatialCondition,
)
from gan_lightning.errors import UserError
from gan_lightning.nets import (
    BigGANConditionalBatchNorm,
    BigGANDiscriminator,
    BigGANGenerator,
    ClassEmbedding,
    ClassProjection,
    DCGANDiscriminator,
    DCGANGenerator,
    Discriminator,
    MLPDiscriminator,
    MLPGenerator,
    ResNetDiscriminator,
    R3GANDiscriminator,
    R3GANGenerator,
    ResNetGenerator,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)
from gan_lightning.nets.base import numel, squeeze_score
from gan_lightning.nets.stylegan2 import MinibatchStdLayer
from gan_lightning.training.system import GAN

# Small settings of the zoo's networks (StyleGAN2's mapping and channels, R3GAN's 3 stages for 28 px).
SG2 = {"w_dim": 8, "mapping_layers": 1, "channel_base": 64, "channel_max": 8}
SG2_D = {"channel_base": 64, "channel_max": 8, "mbstd_group_size": 2}
R3 = {"widths": [8, 8, 8], "cardinalities": [2, 2, 2], "blocks": [1, 1, 1]}

N = 4   # batch size
K = 3   # classes of the conditional cases
Z = 4   # latent size

GENERATORS: dict[str, Callable[[], nn.Module]] = {
    "mlp_2d": lambda: MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8, 8]),
    "mlp_2d_nonorm": lambda: MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8], norm="none", activation_fn="elu"),
    "mlp_28_c1": lambda: MLPGenerator(out_shape=[1, 28, 28], latent_dim=Z, hidden=[8], out_activation_fn="tanh"),
    "dcgan_28_c1": lambda: DCGANGenerator(latent_dim=Z, channels=1, image_size=28, ngf=4),
    "dcgan_28_c3": lambda: DCGANGenerator(latent_dim=Z, channels=3, image_size=28, ngf=4),
    "dcgan_32_c1": lambda: DCGANGenerator(latent_dim=Z, channels=1, image_size=32, ngf=4),
    "dcgan_32_c3": lambda: DCGANGenerator(latent_dim=Z, channels=3, image_size=32, ngf=4),
    "dcgan_64_c1": lambda: DCGANGenerator(latent_dim=Z, channels=1, image_size=64, ngf=4),
    "dcgan_64_c3": lambda: DCGANGenerator(latent_dim=Z, channels=3, image_size=64, ngf=4),
    "resnet_32_c3": lambda: ResNetGenerator(latent_dim=Z, channels=3, image_size=32, ngf=8),
    # conditional
    "mlp_2d_concat_onehot": lambda: MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8], num_classes=K,
                                                 conditioning=LabelConcat()),
    "mlp_28_concat_learned": lambda: MLPGenerator(out_shape=[1, 28, 28], latent_dim=Z, hidden=[8], num_classes=K,
                                                  out_activation_fn="tanh",
                                                  conditioning=LabelConcat("learned", embedding_dim=5)),
    "dcgan_28_concat_onehot": lambda: DCGANGenerator(latent_dim=Z, ngf=4, num_classes=K, conditioning=LabelConcat()),
    "dcgan_32_c3_concat_learned": lambda: DCGANGenerator(latent_dim=Z, channels=3, image_size=32, ngf=4,
                                                         num_classes=K, conditioning=LabelConcat("learned")),
    "dcgan_28_cbn": lambda: DCGANGenerator(latent_dim=Z, ngf=4, num_classes=K, conditioning=ConditionalBatchNorm()),
    "resnet_28_c1_cbn": lambda: ResNetGenerator(latent_dim=Z, channels=1, image_size=28, ngf=8, num_classes=K,
                                                conditioning=ConditionalBatchNorm("one_hot")),
    "dcgan_28_spatial": lambda: DCGANGenerator(latent_dim=Z, ngf=4, conditioning=SpatialCondition(size=7)),
    # the model zoo
    "biggan_32_c3": lambda: BigGANGenerator(latent_dim=Z, image_size=32, ch=2),
    "biggan_28_c1_hier": lambda: BigGANGenerator(latent_dim=6, channels=1, image_size=28, ch=2, hier=True, num_classes=K,
                                                 conditioning=BigGANConditionalBatchNorm(shared_dim=4)),
    "stylegan2_28_c1": lambda: StyleGAN2Generator(latent_dim=Z, channels=1, image_size=28, **SG2),
    "stylegan2_32_c3_embed": lambda: StyleGAN2Generator(latent_dim=Z, image_size=32, num_classes=K, **SG2),
    "r3gan_28_c1": lambda: R3GANGenerator(latent_dim=Z, channels=1, image_size=28, out_activation="tanh", **R3),
    "r3gan_28_c1_embed": lambda: R3GANGenerator(latent_dim=Z, channels=1, image_size=28, out_activation="tanh",
                                                num_classes=K, conditioning=ClassEmbedding(), **R3),
}

DISCRIMINATORS: dict[str, Callable[[], nn.Module]] = {
    "mlp_2d_maxout": lambda: MLPDiscriminator(in_shape=[2], hidden=[8, 8], maxout_pieces=3),
    "mlp_2d_plain_sn": lambda: MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=0, norm="spectral"),
    "mlp_28_c1_dropout": lambda: MLPDiscriminator(in_shape=[1, 28, 28], hidden=[8], maxout_pieces=2, dropout=0.5),
    "dcgan_28_c1_bn": lambda: DCGANDiscriminator(channels=1, image_size=28, ndf=4, norm="batch"),
    "dcgan_28_c3_bn": lambda: DCGANDiscriminator(channels=3, image_size=28, ndf=4, norm="batch"),
    "dcgan_32_c1_bn": lambda: DCGANDiscriminator(channels=1, image_size=32, ndf=4, norm="batch"),
    "dcgan_32_c3_bn": lambda: DCGANDiscriminator(channels=3, image_size=32, ndf=4, norm="batch"),
    "dcgan_64_c1_bn": lambda: DCGANDiscriminator(channels=1, image_size=64, ndf=4, norm="batch"),
    "dcgan_64_c3_bn": lambda: DCGANDiscriminator(channels=3, image_size=64, ndf=4, norm="batch"),
    "dcgan_28_c1_sn": lambda: DCGANDiscriminator(channels=1, image_size=28, ndf=4, norm="spectral"),
    "dcgan_32_c3_none": lambda: DCGANDiscriminator(channels=3, image_size=32, ndf=4, norm="none"),
    "resnet_32_c3_sn": lambda: ResNetDiscriminator(channels=3, image_size=32, ndf=8),
    "resnet_64_c1_none": lambda: ResNetDiscriminator(channels=1, image_size=64, ndf=8, norm="none"),
    # conditional
    "mlp_2d_concat_learned": lambda: MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=2, num_classes=K,
                                                      conditioning=LabelConcat("learned", embedding_dim=2)),
    "mlp_28_concat_onehot": lambda: MLPDiscriminator(in_shape=[1, 28, 28], hidden=[8], num_classes=K,
                                                     conditioning=LabelConcat()),
    "dcgan_28_concat_onehot": lambda: DCGANDiscriminator(ndf=4, num_classes=K, conditioning=LabelConcat()),
    "dcgan_32_c3_sn_concat_learned": lambda: DCGANDiscriminator(channels=3, image_size=32, ndf=4, norm="spectral",
                                                                num_classes=K, conditioning=LabelConcat("learned")),
    "dcgan_28_projection": lambda: DCGANDiscriminator(ndf=4, norm="spectral", num_classes=K, conditioning=Projection()),
    "resnet_32_c3_projection": lambda: ResNetDiscriminator(channels=3, image_size=32, ndf=8, num_classes=K,
                                                           conditioning=Projection("none")),
    "dcgan_28_acgan": lambda: DCGANDiscriminator(ndf=4, num_classes=K, conditioning=AuxiliaryClassifier()),
    "dcgan_28_spatial": lambda: DCGANDiscriminator(ndf=4, conditioning=SpatialCondition(size=7)),
    # the model zoo
    "biggan_32_c3_projection": lambda: BigGANDiscriminator(image_size=32, ch=2, num_classes=K, conditioning=Projection()),
    "biggan_28_c1": lambda: BigGANDiscriminator(channels=1, image_size=28, ch=2),
    "stylegan2_28_c1_orig": lambda: StyleGAN2Discriminator(channels=1, image_size=28, architecture="orig", **SG2_D),
    "stylegan2_32_c3_mapped": lambda: StyleGAN2Discriminator(image_size=32, num_classes=K, **SG2_D),
    "r3gan_28_c1_projection": lambda: R3GANDiscriminator(channels=1, image_size=28, num_classes=K,
                                                         conditioning=ClassProjection(), **R3),
    "r3gan_32_c3": lambda: R3GANDiscriminator(image_size=32, widths=[8, 8, 8, 8], cardinalities=[2, 2, 2, 2],
                                              blocks=[1, 1, 1, 1]),
}


def condition_for(net: nn.Module, n: int, shift: int = 0) -> Tensor | None:
    """A batch of conditions for ``net``; ``shift`` gives a different condition for every sample."""
    if net.condition == "label":
        return (torch.arange(n) + shift) % K
    if net.condition == "spatial":
        g = torch.Generator().manual_seed(shift)
        return torch.rand(n, 1, net.conditioning.size, net.conditioning.size, generator=g) * 2 - 1
    assert net.condition == "none"
    return None


def call(net: nn.Module, inputs: Tensor, y: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
    return net(inputs) if y is None else net(inputs, y)


def scores(out: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


def projection(out: Tensor | tuple[Tensor, ...]) -> Tensor:
    """A scalar that depends on every output in a generic way."""
    outs = out if isinstance(out, tuple) else (out,)
    g = torch.Generator().manual_seed(0)
    return sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs)


@torch.no_grad()
def perturbed(net: nn.Module) -> nn.Module:
    """The network with every parameter moved a little, as after some training. Some methods start out
    ignoring the condition on purpose (conditional batch norm starts with gamma = 1, beta = 0 for every class)."""
    for p in net.parameters():
        p.add_(0.1 * torch.randn_like(p))
    return net


def _state(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture
def seeded():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- generators


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("make", GENERATORS.values(), ids=GENERATORS.keys())
class TestGenerator:
    def inputs(self, net, n=N, shift=0):
        return torch.randn(n, net.latent_dim), condition_for(net, n, shift)

    def test_output_shape(self, make):
        net = make()
        z, y = self.inputs(net)
        out = call(net, z, y)
        assert out.shape == (N, *net.out_shape) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        if net.is_image and not isinstance(net, StyleGAN2Generator):  # the others end in tanh: images in [-1, 1]
            assert out.abs().max() <= 1.0  # (StyleGAN2's G has no output nonlinearity; pixels are clamped)

    def test_backward_reaches_every_parameter(self, make):
        # Perturbed: a zero-initialised residual branch (R3GAN's fix-up init) passes no gradient to the layers
        # before its last one until that one has moved.
        net = perturbed(make()).train()
        z, y = self.inputs(net)
        projection(call(net, z, y)).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(p.grad).all(), name
            if p.dim() > 1:
                assert p.grad.abs().sum() > 0, f"all-zero gradient for {name}"

    def test_eval_is_deterministic_and_per_sample(self, make):
        net = make()
        net.train()(*[t for t in self.inputs(net, 16) if t is not None])  # move BN running stats off their init
        net.eval()
        z, y = self.inputs(net)
        before = _state(net)
        a, b = call(net, z, y), call(net, z, y)
        assert torch.equal(a, b)
        # A sample does not depend on the rest of its batch in eval mode.
        first = call(net, z[:1], y[:1] if y is not None else None)
        torch.testing.assert_close(first, a[:1], rtol=1e-5, atol=1e-6)
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "an eval forward moved a buffer"

    def test_output_depends_on_noise_and_condition(self, make):
        net = perturbed(make()).eval()
        z, y = self.inputs(net)
        out = call(net, z, y)
        assert not torch.allclose(call(net, torch.randn_like(z), y), out)
        if y is not None:
            other = call(net, z, condition_for(net, N, shift=1))
            assert (other - out).flatten(1).abs().amax(1).min() > 0, "a sample ignored its condition"


# ----------------------------------------------------------------------------- discriminators


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("make", DISCRIMINATORS.values(), ids=DISCRIMINATORS.keys())
class TestDiscriminator:
    def inputs(self, net, n=N, shift=0):
        return torch.rand(n, *net.in_shape) * 2 - 1, condition_for(net, n, shift)

    def test_output_shape(self, make):
        net = make()
        x, y = self.inputs(net)
        out = call(net, x, y)
        assert scores(out).shape == (N,) and torch.isfinite(scores(out)).all()
        if isinstance(out, tuple):  # auxiliary classifier: class logits beside the score
            assert net.condition == "label" and out[1].shape == (N, K)

    def test_backward_reaches_every_parameter_and_the_input(self, make):
        net = perturbed(make()).train()  # as for generators: zero-initialised branches pass no gradient at first
        x, y = self.inputs(net)
        x.requires_grad_(True)
        projection(call(net, x, y)).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(p.grad).all(), name
            if p.dim() > 1:
                assert p.grad.abs().sum() > 0, f"all-zero gradient for {name}"
        # Gradient penalties (WGAN-GP, R1) differentiate D's output with respect to its input.
        assert x.grad is not None and x.grad.flatten(1).abs().sum(1).min() > 0

    def test_eval_is_deterministic_and_per_sample(self, make):
        net = make()
        net.train()(*[t for t in self.inputs(net, 16) if t is not None])
        net.eval()
        x, y = self.inputs(net)
        before = _state(net)
        a, b = call(net, x, y), call(net, x, y)
        assert torch.equal(scores(a), scores(b))
        if not any(isinstance(m, MinibatchStdLayer) for m in net.modules()):  # minibatch std looks across the batch
            first = call(net, x[:1], y[:1] if y is not None else None)
            torch.testing.assert_close(scores(first), scores(a)[:1], rtol=1e-5, atol=1e-6)
        # Spectral norm does not advance its power iteration and batch norm keeps its statistics in eval mode.
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "an eval forward moved a buffer"

    def test_output_depends_on_input_and_condition(self, make):
        net = perturbed(make()).eval()
        x, y = self.inputs(net)
        out = scores(call(net, x, y))
        assert not torch.allclose(scores(call(net, torch.rand_like(x) * 2 - 1, y)), out)
        if y is not None and not isinstance(net.conditioning, AuxiliaryClassifier):  # AC-GAN's score ignores y
            other = scores(call(net, x, condition_for(net, N, shift=1)))
            assert (other - out).abs().min() > 0, "a score ignored its condition"


# The discriminators built on the template (StyleGAN2's and R3GAN's override forward, as the reference ones score).
TEMPLATE_DISCRIMINATORS = {k: v for k, v in DISCRIMINATORS.items() if not k.startswith(("stylegan2", "r3gan"))}


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("make", TEMPLATE_DISCRIMINATORS.values(), ids=TEMPLATE_DISCRIMINATORS.keys())
def test_forward_scores_the_conditioned_features_with_the_head(make):
    """The template's forward is the chain every discriminator used to write out: condition the input,
    extract features, score them with ``head``, let the conditioning act on the score, squeeze."""
    net = perturbed(make()).eval()
    x, y = TestDiscriminator().inputs(net)
    with torch.no_grad():
        h = net.conditioning.condition_input(x, y)
        assert h.shape[1:] == net.input_shape
        if isinstance(net, MLPDiscriminator):
            f = net.body(h.flatten(1))
        elif isinstance(net, DCGANDiscriminator):
            f = net.body(h).flatten(1)
        else:
            f = F.relu(net.blocks(h)).sum(dim=(2, 3))
        assert f.shape == (N, net.features_dim)
        expected = squeeze_score(net.conditioning.condition_output(f, net.head(f), y))
        out = call(net, x, y)
    assert type(out) is type(expected)
    for a, b in zip(out if isinstance(out, tuple) else (out,), expected if isinstance(out, tuple) else (expected,)):
        assert torch.equal(a, b)
    # Checkpoints keep their keys: the score head is still `head`.
    assert {"head.weight", "head.bias"} <= {k.replace(".parametrizations.weight.original", ".weight")
                                           for k in net.state_dict()}


# ----------------------------------------------------------------------------- the discriminator template


class FeaturesOnly(Discriminator):
    """A discriminator that supplies only a feature extractor and its size; the base class does the rest."""

    def __init__(self, in_shape=(1, 4, 4), num_classes=0, conditioning=None, norm="none", declare=True) -> None:
        super().__init__(in_shape, num_classes, conditioning)
        self.body = nn.Linear(numel(self.input_shape), 5)
        if declare:
            self.set_features(5, norm)

    def features(self, x: Tensor) -> Tensor:
        return torch.tanh(self.body(x.flatten(1)))


TEMPLATE_CONDITIONINGS = {
    "none": lambda: None,
    "label_concat": LabelConcat,
    "projection": lambda: Projection("none"),
    "projection_classifier": lambda: Projection("none", classifier=True),
    "auxiliary_classifier": AuxiliaryClassifier,
}


@pytest.mark.parametrize("norm", ["none", "spectral"])
@pytest.mark.parametrize("make_conditioning", TEMPLATE_CONDITIONINGS.values(), ids=TEMPLATE_CONDITIONINGS.keys())
def test_template_discriminator_from_features_alone(make_conditioning, norm):
    torch.manual_seed(0)
    conditioning = make_conditioning()
    d = perturbed(FeaturesOnly(num_classes=0 if conditioning is None else K, conditioning=conditioning, norm=norm))
    x = torch.rand(N, 1, 4, 4) * 2 - 1
    y = None if conditioning is None else torch.tensor([0, 2, 1, 2])
    call(d.train(), x, y)  # spectral norm's power iteration catches up with the moved weights
    out = call(d.eval(), x, y)

    # The conditioned input, the features and the linear score head, computed by hand.
    with torch.no_grad():
        h = x
        if isinstance(conditioning, LabelConcat):
            assert d.input_channels == 1 + K and d.input_shape == (1 + K, 4, 4)
            h = torch.cat([x, F.one_hot(y, K).float()[:, :, None, None].expand(-1, -1, 4, 4)], dim=1)
        else:
            assert d.input_channels == 1 and d.input_shape == (1, 4, 4)
        f = torch.tanh(h.flatten(1) @ d.body.weight.T + d.body.bias)
        w = d.head.weight  # under spectral norm: the normalized weight
        if norm == "spectral":
            assert hasattr(d.head, "parametrizations")
            assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, abs=1e-3)
        else:
            assert not hasattr(d.head, "parametrizations")
        score = (f @ w.T + d.head.bias)[:, 0]
        logits = None
        if isinstance(conditioning, Projection):  # psi(f) + <embed(y), f>
            score = score + (d.conditioning.embed.weight[y] * f).sum(dim=1)
        if getattr(conditioning, "classifier", None) is not None:  # AC-GAN class head on f
            logits = f @ d.conditioning.classifier.weight.T + d.conditioning.classifier.bias

    assert d.features_dim == 5
    if logits is None:
        assert isinstance(out, Tensor) and out.shape == (N,)
        torch.testing.assert_close(out, score)
    else:
        assert isinstance(out, tuple) and out[0].shape == (N,) and out[1].shape == (N, K)
        torch.testing.assert_close(out[0], score)
        torch.testing.assert_close(out[1], logits)
        if isinstance(conditioning, AuxiliaryClassifier):  # AC-GAN's score does not see the label
            torch.testing.assert_close(call(d, x, (y + 1) % K)[0], out[0])


def test_template_discriminator_that_declares_no_features_fails_clearly():
    d = FeaturesOnly(declare=False)
    with pytest.raises(TypeError, match=r"FeaturesOnly: call self\.set_features\(features_dim\) in __init__"):
        d(torch.zeros(N, 1, 4, 4))
    d.set_features(5)
    assert d(torch.zeros(N, 1, 4, 4)).shape == (N,)
    with pytest.raises(RuntimeError, match="set_features: called twice"):
        d.set_features(5)


def test_template_discriminator_without_features_or_with_a_hidden_features_module_fails_clearly():
    class NoFeatures(Discriminator):
        def __init__(self) -> None:
            super().__init__((2,))
            self.set_features(2)

    class FeaturesModule(NoFeatures):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Identity()  # hidden behind the method of the same name

    with pytest.raises(NotImplementedError, match=r"NoFeatures: implement features\(x\)"):
        NoFeatures()(torch.zeros(N, 2))
    with pytest.raises(TypeError, match="a submodule named 'features' is hidden"):
        FeaturesModule()(torch.zeros(N, 2))


def test_a_discriminator_that_overrides_forward_needs_no_template():
    class Critic(Discriminator):
        def __init__(self) -> None:
            super().__init__((2,))
            self.w = nn.Parameter(torch.tensor([3.0, -1.0]))

        def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
            return x @ self.w

    d = Critic()
    assert d.features_dim is None and not hasattr(d, "head")
    torch.testing.assert_close(d(torch.tensor([[1.0, 2.0], [0.0, 1.0]])), torch.tensor([1.0, -1.0]))


class MapsOnly(Conditioning):
    """A condition that needs feature maps, whatever its kind."""

    kind = "maps"
    needs_feature_maps = True


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MLPGenerator(out_shape=[1, 28, 28], hidden=[4], conditioning=SpatialCondition()),
         r"^generator\.conditioning: SpatialCondition needs feature maps, .*DCGAN or ResNet"),
        (lambda: MLPDiscriminator(in_shape=[1, 28, 28], hidden=[4], conditioning=SpatialCondition()),
         r"^discriminator\.conditioning: SpatialCondition needs feature maps, .*DCGAN or ResNet"),
        (lambda: MLPGenerator(hidden=[4], conditioning=MapsOnly()), r"^generator\.conditioning: MapsOnly needs feature"),
        (lambda: MLPDiscriminator(hidden=[4], conditioning=MapsOnly()), r"^discriminator\.conditioning: MapsOnly needs"),
    ],
    ids=["g_spatial", "d_spatial", "g_flag", "d_flag"],
)
def test_mlp_networks_refuse_conditions_that_need_feature_maps(make, match):
    with pytest.raises(UserError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


def test_convolutional_networks_accept_conditions_that_need_feature_maps():
    d = DCGANDiscriminator(ndf=4, conditioning=SpatialCondition(size=7))
    r = ResNetDiscriminator(channels=1, image_size=28, ndf=8, conditioning=SpatialCondition(size=7))
    assert d.input_channels == 2 and r.input_channels == 2
    assert d.body[0].in_channels == 2 and r.blocks[0].conv1.in_channels == 2


# ----------------------------------------------------------------------------- contracts between the two


@pytest.mark.parametrize(
    "g, d, match",
    [
        (lambda: DCGANGenerator(latent_dim=Z, image_size=28, ngf=4), lambda: DCGANDiscriminator(image_size=32, ndf=4),
         "out_shape"),
        (lambda: DCGANGenerator(latent_dim=Z, channels=3, ngf=4), lambda: DCGANDiscriminator(channels=1, ndf=4),
         "out_shape"),
        (lambda: MLPGenerator(out_shape=[2], hidden=[4]), lambda: MLPDiscriminator(in_shape=[3], hidden=[4]),
         "out_shape"),
        (lambda: DCGANGenerator(latent_dim=Z, ngf=4, num_classes=K, conditioning=LabelConcat()),
         lambda: DCGANDiscriminator(ndf=4), "num_classes"),
    ],
    ids=["size", "channels", "vector_dim", "classes"],
)
def test_mismatched_networks_are_a_user_error(g, d, match):
    with pytest.raises(UserError, match=match):
        GAN(g(), d())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DCGANGenerator(image_size=48, ngf=4), r"generator\.image_size"),
        (lambda: DCGANDiscriminator(image_size=16, ndf=4), r"discriminator\.image_size"),
        (lambda: DCGANDiscriminator(ndf=4, norm="layer"), r"discriminator\.norm"),
        (lambda: MLPGenerator(activation_fn="swish"), r"generator\.activation_fn"),
        (lambda: DCGANGenerator(ngf=4, num_classes=K), r"generator\.conditioning"),  # classes but no method
        (lambda: DCGANGenerator(ngf=4, num_classes=0, conditioning=LabelConcat()), r"generator\.conditioning"),  # method, 0 classes
        (lambda: DCGANGenerator(ngf=4, num_classes=K, conditioning=Projection()), r"generator\.conditioning"),
    ],
    ids=["g_size", "d_size", "d_norm", "activation", "classes_without_method", "method_without_classes", "d_only"],
)
def test_bad_network_options_name_the_field(make, match):
    with pytest.raises(UserError, match=match):
        make()


@pytest.mark.parametrize("norm", ["batch", "spectral", "none"])
def test_dcgan_discriminator_init_is_the_papers(norm):
    """DCGAN (Radford et al.): every conv/linear weight drawn from N(0, 0.02), also under spectral norm, where
    the weight that is stored and trained is ``parametrizations.weight.original``."""
    torch.manual_seed(0)
    d = DCGANDiscriminator(channels=3, image_size=64, ndf=16, norm=norm)
    weights = {n: p for n, p in d.named_parameters() if p.dim() > 1}
    assert len(weights) == 5  # four convolutions and the linear head
    for name, w in weights.items():
        assert abs(float(w.mean())) < 0.005 and 0.017 < float(w.std()) < 0.023, f"{name}: std {float(w.std()):.4f}"


def test_dcgan_generator_init_is_the_papers():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=32, channels=3, image_size=64, ngf=8)
    for name, p in g.named_parameters():
        if p.dim() > 1:
            assert 0.017 < float(p.std()) < 0.023, f"{name}: std {float(p.std()):.4f}"
        elif name.endswith("weight"):  # batch-norm scales N(1, 0.02)
            assert abs(float(p.mean()) - 1.0) < 0.01, name


def _pairs() -> list[tuple[str, str]]:
    """Every generator/discriminator pair meant to work together: same sample shape, condition and classes."""
    torch.manual_seed(0)
    gens = {name: make() for name, make in GENERATORS.items()}
    dis = {name: make() for name, make in DISCRIMINATORS.items()}
    return [
        (gn, dn) for gn, g in gens.items() for dn, d in dis.items()
        if tuple(g.out_shape) == tuple(d.in_shape) and g.condition == d.condition and g.num_classes == d.num_classes
    ]


PAIRS = _pairs()


def test_every_architecture_and_conditioning_has_a_partner():
    assert {g for g, _ in PAIRS} == set(GENERATORS)
    assert {d for _, d in PAIRS} == set(DISCRIMINATORS)


@pytest.mark.slow
@pytest.mark.parametrize("g_name,d_name", PAIRS, ids=[f"{g}+{d}" for g, d in PAIRS])
def test_one_train_step_per_combination(g_name, d_name, make_trainer):
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning.objectives.regularizers import ClassLoss
    from gan_lightning.training.system import GAN

    torch.manual_seed(0)
    g, d = GENERATORS[g_name](), DISCRIMINATORS[d_name]()
    # A class head (AC-GAN) must be trained by a regularizer.
    model = GAN(g, d, loss="hinge", regularizers=[ClassLoss()] if d.conditioning.has_class_head else [])
    x = torch.rand(8, *g.out_shape) * 2 - 1
    y = torch.randint(0, max(K, 1), (8,))
    before_g = [p.detach().clone() for p in g.parameters()]
    before_d = [p.detach().clone() for p in d.parameters()]
    trainer = make_trainer(max_steps=1)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    assert trainer.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before_g, g.parameters())), "G did not train"
    assert any(not torch.equal(a, b) for a, b in zip(before_d, d.parameters())), "D did not train"
    assert all(torch.isfinite(p).all() for p in model.parameters())
