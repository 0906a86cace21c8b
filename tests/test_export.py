"""A generator on its own: ``python -m gan_lightning export`` (``gan_lightning.commands.export``) and
``Generator.save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

Every generator class of ``gan_lightning.nets``, with each conditioning method that applies to it, is trained for
two steps in Python (with an EMA copy), checkpointed, exported and loaded back: the folder holds exactly the
safetensors weights, the config and the model card, and the reloaded generator draws the same samples bit for bit
as the GAN and as the checkpoint loaded the way ``sample`` loads it, for the same seed and conditions. Loading builds
no GAN, optimizer or discriminator. The Hub is never contacted: its two entry points used here are replaced by
functions that copy local folders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch import Tensor, nn

from gan_lightning import GAN
from gan_lightning.commands.checkpoints import load_gan
from gan_lightning.commands.export import export_generator, export_main
from gan_lightning.conditioning import (ConditionalBatchNorm, Conditioning, LabelConcat, SpatialCondition, build,
                                        describe)
from gan_lightning.data.base import GANDataModule, InMemory
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.nets import (BigGANConditionalBatchNorm, BigGANGenerator, ClassEmbedding, DCGANDiscriminator,
                                DCGANGenerator, Discriminator, Generator, LabelEmbedding, MLPDiscriminator, MLPGenerator,
                                R3GANGenerator, ResNetGenerator, StyleGAN2Generator)
from gan_lightning.sampling import draw

REPO = Path(__file__).resolve().parents[1]
IMAGE = {"channels": 1, "image_size": 28}

# One line per generator class and conditioning method that applies to it: (id, class, arguments, conditioning).
# A new generator class joins the test with one line here; its discriminator is made to match (``critic_for``).
GENERATORS: list[tuple[str, type, dict[str, Any], Optional[Callable[[], Conditioning]]]] = [
    ("mlp", MLPGenerator, {"out_shape": [2], "latent_dim": 3, "hidden": [16, 16]}, None),
    ("mlp-concat", MLPGenerator, {"out_shape": [2], "latent_dim": 3, "hidden": [16]}, LabelConcat),
    ("mlp-concat-learned", MLPGenerator, {"out_shape": [1, 8, 8], "latent_dim": 3, "hidden": [16],
                                          "out_activation_fn": "tanh"},
     lambda: LabelConcat(embedding="learned", embedding_dim=4)),
    ("mlp-cbn", MLPGenerator, {"out_shape": [2], "latent_dim": 3, "hidden": [16]}, ConditionalBatchNorm),
    ("dcgan", DCGANGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, None),
    ("dcgan-concat", DCGANGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, LabelConcat),
    ("dcgan-cbn", DCGANGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE},
     lambda: ConditionalBatchNorm(concat_latent="one_hot")),
    ("dcgan-spatial", DCGANGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, SpatialCondition),
    ("resnet", ResNetGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, None),
    ("resnet-concat", ResNetGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, lambda: LabelConcat(embedding="learned")),
    ("resnet-cbn", ResNetGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, ConditionalBatchNorm),
    ("resnet-spatial", ResNetGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE},
     lambda: SpatialCondition(kind="mask", threshold=0.2)),
    ("biggan", BigGANGenerator, {"latent_dim": 16, "ch": 4, **IMAGE}, None),
    ("biggan-cbn", BigGANGenerator, {"latent_dim": 16, "ch": 4, **IMAGE}, BigGANConditionalBatchNorm),
    ("r3gan", R3GANGenerator, {"latent_dim": 8, "widths": [8, 8, 8], "cardinalities": [2, 2, 2], "blocks": [1, 1, 1],
                               **IMAGE}, None),
    ("r3gan-embed", R3GANGenerator, {"latent_dim": 8, "widths": [8, 8, 8], "cardinalities": [2, 2, 2],
                                     "blocks": [1, 1, 1], **IMAGE}, ClassEmbedding),
    ("stylegan2", StyleGAN2Generator, {"latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64,
                                       "channel_max": 8, **IMAGE}, None),
    ("stylegan2-embed", StyleGAN2Generator, {"latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64,
                                             "channel_max": 8, **IMAGE}, LabelEmbedding),
]
CLASSES = 3


class TinyData(GANDataModule):
    """``size`` random samples of ``shape`` in [-1, 1] with labels in ``[0, num_classes)``, held in memory."""

    def __init__(self, shape: tuple[int, ...] = (2,), num_classes: int = 0, size: int = 64, batch_size: int = 8,
                 seed: int = 0, draws_per_step: int = 1) -> None:
        super().__init__(batch_size=batch_size, seed=seed, draws_per_step=draws_per_step)
        self.data_shape, self.num_classes, self.size = tuple(shape), int(num_classes), int(size)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is None:
            g = torch.Generator().manual_seed(self.seed)
            x = torch.rand(self.size, *self.data_shape, generator=g) * 2 - 1
            self.train_set = InMemory(x, torch.randint(0, max(self.num_classes, 1), (self.size,), generator=g))


def critic_for(shape: list[int], conditioning: Optional[Conditioning]) -> Discriminator:
    """A small discriminator for samples of ``shape`` and ``conditioning``'s kind of condition (its num_classes
    comes from G)."""
    kind = conditioning.kind if conditioning is not None else "none"
    if kind == "spatial":
        return DCGANDiscriminator(channels=shape[0], image_size=shape[1], ndf=4, norm="none",
                                  conditioning=build(describe(conditioning)))
    return MLPDiscriminator(in_shape=shape, hidden=[8], maxout_pieces=2,
                            conditioning=LabelConcat() if kind == "label" else None)


def trainer(root: Path, steps: int = 2) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                      default_root_dir=str(root))


def trained(cls: type, kwargs: dict[str, Any], conditioning: Optional[Callable[[], Conditioning]], run: Path,
            latent_prior: str = "normal") -> tuple[GAN, str]:
    """A GAN with ``cls`` as G built in Python (num_classes from the data), trained two steps with an EMA copy of
    G; and its checkpoint, ``run/checkpoints/last.ckpt``."""
    method = conditioning() if conditioning else None
    labelled = getattr(method, "needs_classes", False)
    shape = list(cls(**kwargs, num_classes=CLASSES if labelled else 0, conditioning=method).out_shape)
    torch.manual_seed(0)
    method = conditioning() if conditioning else None
    generator = cls(**kwargs, conditioning=method)
    assert generator.waits_for_classes == labelled  # then the data gives num_classes
    gan = GAN(generator, critic_for(shape, method), ema_decay=0.5, latent_prior=latent_prior)
    data = TinyData(shape=tuple(shape), num_classes=CLASSES if labelled else 0)
    fit = trainer(run)
    fit.fit(gan, data)
    ckpt = run / "checkpoints" / "last.ckpt"
    fit.save_checkpoint(ckpt)
    return gan, str(ckpt)


def draw_args(generator: Generator) -> dict[str, Any]:
    """Conditions for a comparison draw: given labels, or given condition images, or none."""
    if generator.conditioning.class_count:
        return {"labels": [2, 0, 1, 1]}
    if generator.conditioning.conditional:
        g = torch.Generator().manual_seed(1)
        return {"condition_images": torch.rand(3, *generator.out_shape, generator=g) * 2 - 1}
    return {}


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name,cls,kwargs,conditioning", GENERATORS, ids=[g[0] for g in GENERATORS])
def test_export_reloads_the_ema_generator_and_draws_the_same_samples(name, cls, kwargs, conditioning, tmp_path):
    gan, ckpt = trained(cls, kwargs, conditioning, tmp_path / "run")
    ema, live = gan.generator_ema, gan.generator
    assert any(not torch.equal(p, q) for p, q in zip(ema.parameters(), live.parameters()))  # exporting the live G shows

    out = export_generator(ckpt, str(tmp_path / "export"))
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config == {**describe(ema), "latent_prior": "normal"}
    assert config["class_path"] == f"{cls.__module__}.{cls.__qualname__}"
    assert config["init_args"]["num_classes"] == live.num_classes
    assert config["init_args"]["conditioning"] == (describe(live.conditioning) if conditioning else None)

    loaded = Generator.from_pretrained(out)
    assert type(loaded) is cls and not loaded.training
    assert_same_state(loaded, ema)
    args = draw_args(live)
    reference = gan.sample(7, seed=5, **args)
    from_ckpt = load_gan(ckpt).sample(7, seed=5, **args)
    for drawn in (loaded.sample(7, seed=5, **args), from_ckpt):
        assert torch.equal(drawn.samples, reference.samples)
        assert (drawn.conditions is None) == (reference.conditions is None)
        if reference.conditions is not None:
            assert torch.equal(drawn.conditions, reference.conditions)
    assert reference.samples.shape == (7, *live.out_shape)
    truncated = loaded.sample(7, seed=5, truncation=0.5, **args).samples
    assert torch.equal(truncated, gan.sample(7, seed=5, truncation=0.5, **args).samples)
    assert not torch.equal(truncated, reference.samples)


def test_export_of_the_live_generator_and_a_uniform_prior(tmp_path):
    gan, ckpt = trained(MLPGenerator, {"out_shape": [2], "latent_dim": 3, "hidden": [16]}, None, tmp_path / "run",
                        latent_prior="uniform")
    out = export_generator(ckpt, str(tmp_path / "live"), ema="live")
    loaded = Generator.from_pretrained(out)
    assert loaded.latent_prior == "uniform"
    assert_same_state(loaded, gan.generator)
    live = draw.sample(gan, 5, seed=2, ema=False).samples
    assert torch.equal(loaded.sample(5, seed=2).samples, live)
    assert not torch.equal(gan.sample(5, seed=2).samples, live)  # the EMA generator's differ
    z = draw.noise_for(torch.arange(5), 3, "uniform", 2)
    assert z.min() >= -1 and z.max() <= 1 and (z < 0).any()
    with torch.no_grad():
        assert torch.equal(loaded(z), live)


def test_the_model_card_holds_the_config_and_the_runs_final_metrics(tmp_path):
    gan, ckpt = trained(DCGANGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, LabelConcat, tmp_path / "run")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"step": 2, "fid_mnist": 12.25, "accuracy": 0.5}))
    card = (export_generator(ckpt, str(tmp_path / "export")) / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gan_lightning\n")
    assert "# DCGANGenerator" in card and "conditioned on 3 class labels" in card
    assert "| fid_mnist | 12.25 |" in card and "| accuracy | 0.5 |" in card and "| step | 2 |" in card
    config = card.split("```yaml\n", 1)[1].split("```", 1)[0]
    model = yaml.safe_load(config)["model"]
    assert model["ema_decay"] == 0.5
    assert model["recorded"]["generator"] == describe(gan.generator)
    assert "EMA generator (decay 0.5)" in card and "generator step 2" in card


def test_loading_builds_no_gan_optimizer_or_discriminator(tmp_path, monkeypatch):
    gan, ckpt = trained(ResNetGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, ConditionalBatchNorm, tmp_path / "run")
    out = export_generator(ckpt, str(tmp_path / "export"))
    expected = gan.sample(4, seed=9, labels=[1])

    def refuse(what: str) -> Callable[..., None]:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise AssertionError(f"from_pretrained built a {what}")
        return fail

    monkeypatch.setattr(GAN, "__init__", refuse("GAN"))
    monkeypatch.setattr(pl.LightningModule, "__init__", refuse("LightningModule"))
    monkeypatch.setattr(pl.Trainer, "__init__", refuse("Trainer"))
    monkeypatch.setattr(torch.optim.Optimizer, "__init__", refuse("optimizer"))
    monkeypatch.setattr(Discriminator, "__init__", refuse("discriminator"))
    loaded = Generator.from_pretrained(out)
    assert torch.equal(loaded.sample(4, seed=9, labels=[1]).samples, expected.samples)


NO_LIGHTNING = """
import importlib.abc, sys

class NoLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"):
            raise ImportError("no Lightning here: " + name)
        return None

sys.meta_path.insert(0, NoLightning())
import torch
from gan_lightning.nets import Generator

torch.set_num_threads(1)  # as the test process (conftest): the same kernels, so the same bits
generator = Generator.from_pretrained(sys.argv[1])
drawn = generator.sample(6, seed=3, labels=[2])
torch.save({"samples": drawn.samples, "conditions": drawn.conditions}, sys.argv[2])
"""


@pytest.mark.slow
def test_an_export_loads_and_samples_where_lightning_cannot_be_imported(tmp_path):
    gan, ckpt = trained(DCGANGenerator, {"latent_dim": 6, "ngf": 4, **IMAGE}, ConditionalBatchNorm, tmp_path / "run")
    out = export_generator(ckpt, str(tmp_path / "export"))
    done = subprocess.run([sys.executable, "-c", NO_LIGHTNING, str(out), str(tmp_path / "drawn.pt")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    drawn = torch.load(tmp_path / "drawn.pt")
    expected = gan.sample(6, seed=3, labels=[2])
    assert torch.equal(drawn["samples"], expected.samples) and torch.equal(drawn["conditions"], expected.conditions)


def test_save_pretrained_round_trip_without_training(tmp_path):
    torch.manual_seed(3)
    generator = DCGANGenerator(latent_dim=5, ngf=4, num_classes=4, conditioning=ConditionalBatchNorm())
    generator.train()(torch.randn(6, 5), torch.arange(6) % 4)  # batch-norm statistics move away from their init
    folder = generator.save_pretrained(tmp_path / "g", model_card="my card\n")
    assert (folder / "README.md").read_text() == "my card\n"
    generator.save_pretrained(folder)  # a second save keeps the card
    assert (folder / "README.md").read_text() == "my card\n"
    loaded = DCGANGenerator.from_pretrained(str(folder))
    assert_same_state(loaded, generator)
    assert torch.equal(loaded.sample(8, seed=0).samples, generator.sample(8, seed=0).samples)
    assert generator.training  # sampling leaves the mode as it was


def test_pretrained_mistakes_are_one_line(tmp_path):
    torch.manual_seed(0)
    MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4]).save_pretrained(tmp_path / "mlp")
    with pytest.raises(UserError, match=r"config\.json\.class_path: .*MLPGenerator' is not a DCGANGenerator"):
        DCGANGenerator.from_pretrained(tmp_path / "mlp")
    with pytest.raises(DataNotFound, match="no such folder"):
        Generator.from_pretrained(tmp_path / "missing")
    with pytest.raises(DataNotFound, match="no such folder"):
        Generator.from_pretrained("./runs/a/b")
    config = json.loads((tmp_path / "mlp" / "config.json").read_text())
    config["init_args"]["hidden"] = [5]
    (tmp_path / "mlp" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="model.safetensors does not fit the generator config.json describes"):
        Generator.from_pretrained(tmp_path / "mlp")
    os.remove(tmp_path / "mlp" / "model.safetensors")
    with pytest.raises(DataNotFound, match="no model.safetensors in this folder"):
        Generator.from_pretrained(tmp_path / "mlp")
    waiting = DCGANGenerator(ngf=4, conditioning=LabelConcat())
    with pytest.raises(UserError, match="waits for num_classes"):
        waiting.save_pretrained(tmp_path / "waiting")
    assert not (tmp_path / "waiting").exists()


class ShiftedGenerator(MLPGenerator):
    """An MLP generator whose output goes through a function: a function has no JSON form."""

    def __init__(self, shift: Callable[[Tensor], Tensor] = torch.tanh, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift = shift

    def forward(self, z: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return self.shift(super().forward(z, y))


def test_a_generator_that_cannot_be_described_trains_but_is_refused_naming_the_argument(tmp_path):
    torch.manual_seed(0)
    generator = ShiftedGenerator(shift=torch.sigmoid, out_shape=[2], latent_dim=2, hidden=[4])
    with pytest.raises(UserError, match="generator: ShiftedGenerator cannot be described: shift: a "):
        generator.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    gan = GAN(generator, MLPDiscriminator(in_shape=[2], hidden=[4], maxout_pieces=2))
    fit = trainer(tmp_path)
    fit.fit(gan, TinyData())
    fit.save_checkpoint(tmp_path / "last.ckpt")
    record = gan.hparams["recorded"]["generator"]
    assert record["class_path"].endswith("test_export.ShiftedGenerator") and "shift" in record["problem"]
    with pytest.raises(UserError, match=r"model\.generator: .*shift: a .* cannot be written to a config"):
        load_gan(str(tmp_path / "last.ckpt"))


def test_export_refuses_an_out_folder_with_other_files(tmp_path):
    _, ckpt = trained(MLPGenerator, {"out_shape": [2], "latent_dim": 3, "hidden": [16]}, None, tmp_path / "run")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files export did not write"):
        export_main(["--ckpt_path", ckpt, "--out", str(tmp_path / "busy")])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        export_main(["--ckpt_path", ckpt, "--out", str(tmp_path / "file")])
    assert export_main(["--ckpt_path", ckpt, "--out", str(tmp_path / "again")]) == 0
    first = (tmp_path / "again" / "model.safetensors").read_bytes()
    assert export_main(["--ckpt_path", ckpt, "--out", str(tmp_path / "again")]) == 0  # an earlier export: replaced
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == first
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_hub_round_trip_through_push_to_hub_and_from_pretrained(tmp_path, monkeypatch):
    """``push_to_hub`` creates the repository and uploads the saved folder; ``from_pretrained("user/name")``
    downloads config.json and model.safetensors: both through huggingface_hub, replaced here by local copies."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    hub = tmp_path / "hub"
    calls: list[tuple[str, Any]] = []

    class FakeApi:
        def __init__(self, token: Any = None) -> None:
            calls.append(("token", token))

        def create_repo(self, repo_id: str, private: Any = None, exist_ok: bool = False) -> Any:
            calls.append(("create_repo", (repo_id, private, exist_ok)))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id: str, repo_type: str, folder_path: str, **kwargs: Any) -> str:
            calls.append(("upload_folder", (repo_id, repo_type, sorted(os.listdir(folder_path)))))
            shutil.copytree(folder_path, hub / repo_id)
            return f"https://huggingface.co/{repo_id}/commit/1"

    def download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append(("download", (repo_id, filename, kwargs.get("revision"))))
        return str(hub / repo_id / filename)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    torch.manual_seed(0)
    generator = DCGANGenerator(latent_dim=4, ngf=4, num_classes=2, conditioning=LabelConcat())
    assert generator.push_to_hub("someone/tiny-gan", token="t0k", private=True).endswith("/commit/1")
    assert ("create_repo", ("someone/tiny-gan", True, True)) in calls and ("token", "t0k") in calls
    assert ("upload_folder", ("someone/tiny-gan", "model", ["README.md", "config.json", "model.safetensors"])) in calls
    loaded = Generator.from_pretrained("someone/tiny-gan", revision="main")
    assert ("download", ("someone/tiny-gan", "config.json", "main")) in calls
    assert torch.equal(loaded.sample(6, seed=1).samples, generator.sample(6, seed=1).samples)


@pytest.mark.slow
def test_export_command_in_a_subprocess_on_a_checkpoint_from_fit(tmp_path):
    """``python -m gan_lightning export`` on a run of ``fit`` (toy ring, with its metrics.json): exit code 0, the
    folder, the run's config in the card, and a generator that draws what the checkpoint draws unrefined."""
    from gan_lightning.commands import main

    config = {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.MLPGenerator",
                          "init_args": {"out_shape": [2], "latent_dim": 2, "hidden": [16, 16]}},
            "discriminator": {"class_path": "gan_lightning.nets.MLPDiscriminator",
                              "init_args": {"in_shape": [2], "hidden": [16], "maxout_pieces": 2}},
            "ema_decay": 0.9,
            "refinement": {"class_path": "gan_lightning.sampling.LatentRefinement", "init_args": {"steps": 2}},
        },
        "data": {"class_path": "gan_lightning.data.ToyDataModule",
                 "init_args": {"name": "ring", "num_samples": 2000, "batch_size": 32}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 10, "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "callbacks": [{"class_path": "gan_lightning.metrics.ToyMetrics",
                                   "init_args": {"every_n_steps": 0, "num_samples": 200}}]},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["fit", "--config", str(tmp_path / "toy.yaml"), "--wandb=disabled", f"--run_dir={run}"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "gan_lightning", "export", "--ckpt_path", str(ckpt),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote the generator to" in done.stdout
    card = (out / "README.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"| modes | {metrics['modes']:.6g} |" in card
    assert "hidden:" in card.split("```yaml", 1)[1] and "samples are the unrefined ones" in card
    loaded = Generator.from_pretrained(out)
    model = load_gan(str(ckpt))
    assert torch.equal(loaded.sample(50, seed=4).samples, draw.sample(model, 50, seed=4, refine=False).samples)
    bad = subprocess.run([sys.executable, "-m", "gan_lightning", "export", "--ckpt_path", str(tmp_path / "none.ckpt"),
                          "--out", str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --ckpt_path: no checkpoint at")
    assert len(bad.stderr.strip().splitlines()) == 1
