"""The private Lightning names the project uses resolve, and a missing one fails with a message naming it and the
installed Lightning version; spectral-norm parametrizations are found by type, not by a private class name."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal, spectral_norm

from gan_lightning.runtime import compat
from gan_lightning.runtime.compat import CLASS_PATH_KEY, INSTANTIATOR_KEY, LightningIncompatible

REPO = Path(__file__).resolve().parents[1]


def test_every_private_name_resolves():
    assert compat.check() == []
    for use, (module, path) in compat.PRIVATE_NAMES.items():
        obj = importlib.import_module(module)
        for part in path.split("."):
            obj = getattr(obj, part)
        assert compat.private(use) is obj


@pytest.mark.parametrize("use", list(compat.PRIVATE_NAMES))
def test_a_missing_name_is_reported_with_the_lightning_version(use, monkeypatch):
    module, path = compat.PRIVATE_NAMES[use]
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    monkeypatch.delattr(owner, name)

    problems = compat.check()
    assert len(problems) == 1
    assert f"Lightning {pl.__version__}" in problems[0] and f"{module}.{path}" in problems[0]
    accessor = {
        "hyperparameters given by LightningCLI": lambda: compat.cli_hyperparameters_active(),
        "broadcast of a module's parameters and buffers": lambda: compat.sync_module_states(nn.Linear(1, 1)),
        "DistributedDataParallel wrapping of one module": lambda: compat.wrap_ddp(DDPStrategy(), nn.Linear(1, 1)),
    }[use]
    with pytest.raises(LightningIncompatible, match=rf"^Lightning {pl.__version__} has no .*{name}"):
        accessor()


def test_cli_hyperparameters_active_only_while_the_cli_instantiates(tmp_path, monkeypatch):
    from gan_lightning.commands.fit import GANCLI
    from gan_lightning.data import ToyDataModule

    assert compat.cli_hyperparameters_active() is False
    # Built in Python: the data module saves its own arguments (so evaluate can rebuild it), and no CLI keys.
    hp = ToyDataModule(batch_size=7).hparams
    assert hp["batch_size"] == 7 and CLASS_PATH_KEY not in hp and INSTANTIATOR_KEY not in hp
    monkeypatch.chdir(tmp_path)
    cli = GANCLI(args=["--config", str(REPO / "experiments" / "toy_ring.yaml"), "--wandb=disabled",
                       f"--run_dir={tmp_path / 'run'}", "--data.init_args.batch_size=7"], run=False)
    # Built by LightningCLI: the data module saved its config under the keys LightningCLI writes.
    hp = cli.datamodule.hparams
    assert hp["batch_size"] == 7 and hp[CLASS_PATH_KEY] == "gan_lightning.data.ToyDataModule"
    assert INSTANTIATOR_KEY in hp
    assert INSTANTIATOR_KEY in cli.model.hparams and cli.model.hparams["n_critic"] == 1
    assert compat.cli_hyperparameters_active() is False


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_wrap_ddp_and_sync_module_states(one_process_group):
    strategy = DDPStrategy(accelerator=CPUAccelerator(), parallel_devices=[torch.device("cpu")])
    net = nn.Linear(3, 2)
    wrapped = compat.wrap_ddp(strategy, net)
    assert isinstance(wrapped, DistributedDataParallel) and wrapped.module is net
    before = [t.clone() for t in net.state_dict().values()]
    compat.sync_module_states(net)  # one process: rank 0's values are its own
    assert all(torch.equal(a, b) for a, b in zip(before, net.state_dict().values()))


class _LookAlike(nn.Module):
    """Has spectral norm's attributes but is not spectral norm."""

    def __init__(self) -> None:
        super().__init__()
        self.n_power_iterations = 1
        self.register_buffer("_u", torch.ones(2))
        self.register_buffer("_v", torch.ones(2))


class _Double(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


def test_spectral_norm_modules_finds_exactly_torchs_spectral_norm():
    sn_linear, sn_conv = spectral_norm(nn.Linear(4, 4)), spectral_norm(nn.Conv2d(1, 2, 3))
    other = nn.Linear(4, 4)
    parametrize.register_parametrization(other, "weight", _Double())
    net = nn.Sequential(sn_linear, nn.ReLU(), sn_conv, nn.Linear(2, 2), other, orthogonal(nn.Linear(3, 3)), _LookAlike())
    found = compat.spectral_norm_modules(net)
    assert found == [sn_linear.parametrizations.weight[0], sn_conv.parametrizations.weight[0]]
    assert compat.spectral_norm_modules(nn.Linear(2, 2)) == []
    # What the system relies on: in eval mode the power iteration stands still, in training mode it advances.
    with torch.no_grad():
        sn_linear.parametrizations.weight.original.copy_(torch.randn(4, 4))
    u = found[0]._u.clone()
    found[0].eval()
    sn_linear(torch.randn(2, 4))
    assert torch.equal(found[0]._u, u)
    found[0].train()
    sn_linear(torch.randn(2, 4))
    assert not torch.equal(found[0]._u, u)


def test_finding_the_spectral_norm_type_leaves_the_global_random_stream_alone():
    compat._spectral_norm_type.cache_clear()
    net = nn.Linear(1, 1)
    torch.manual_seed(5)
    compat.spectral_norm_modules(net)  # makes the reference parametrization, drawing its vectors
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)



def test_batch_norm_modules_covers_every_torch_batch_norm():
    from torch.nn.modules.batchnorm import _BatchNorm  # only here, to check the public list is complete

    public = {getattr(nn, name) for name in dir(nn) if isinstance(getattr(nn, name), type)}
    assert {c for c in public if issubclass(c, _BatchNorm)} <= set(compat.BATCH_NORM_TYPES)

    class MyNorm(nn.BatchNorm2d):
        pass

    bn1, bn2, mine = nn.BatchNorm1d(3), nn.BatchNorm2d(3, affine=False), MyNorm(2)
    net = nn.Sequential(nn.Linear(3, 3), bn1, nn.Sequential(bn2, nn.InstanceNorm2d(3), nn.LayerNorm(3)), mine,
                        nn.GroupNorm(1, 3))
    assert compat.batch_norm_modules(net) == [bn1, bn2, mine]


def test_nvml_check_dropped_only_where_nvml_cannot_load(monkeypatch):
    """Lightning's NVML-based CUDA check stays where NVML's library loads, and is undone where it cannot (torch
    would try to load it on every optimizer step, then fall back to its default check anyway)."""
    if not torch.backends.cuda.is_built():
        pytest.skip("this torch has no CUDA support, so torch never reads the variable")

    def loads(name):
        return object()

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setenv(compat.NVML_CHECK_VARIABLE, "1")
    monkeypatch.setattr(compat.ctypes, "CDLL", loads)
    assert compat.drop_nvml_check_without_nvml() is False
    assert compat.os.environ[compat.NVML_CHECK_VARIABLE] == "1"

    monkeypatch.setattr(compat.ctypes, "CDLL", missing)
    assert compat.drop_nvml_check_without_nvml() is True
    assert compat.NVML_CHECK_VARIABLE not in compat.os.environ
    assert compat.drop_nvml_check_without_nvml() is False  # nothing left to undo
