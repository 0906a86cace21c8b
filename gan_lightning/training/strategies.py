"""A GAN-correct DDP strategy: ``strategy: gan_ddp`` (or ``gan_ddp_spawn``).

Lightning's DDP wraps the whole LightningModule in one ``DistributedDataParallel``. A GAN step uses only part of
that module in each backward pass (D's parameters in the D phase, G's in the G phase), so DDP's reducer waits
for gradients that never come — "parameters that were not used in producing the loss" — unless
``find_unused_parameters=True`` makes it search the graph on every step.

Here G and D get a ``DistributedDataParallel`` each, and the LightningModule itself is not wrapped. The system
(``gan_lightning.training.system.GAN``) runs the *trained* network of each phase through its wrapper, so its gradients
are averaged across processes, and the *held-fixed* network unwrapped, so no gradient synchronisation is set up
for it. Every backward pass then produces a gradient for every parameter of exactly one wrapper, which is what
DDP expects without ``find_unused_parameters``. Works with ``n_critic > 1``, gradient penalty and R1 (their
input-gradients are taken with ``torch.autograd.grad`` and do not touch the reducer), the auxiliary classifier,
EMA and gradient clipping.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from gan_lightning.errors import UserError
from gan_lightning.runtime.compat import sync_module_states, wrap_ddp
from gan_lightning.runtime.console import quiet_console

_WRAPPERS = ("_g_wrapped", "_d_wrapped")


class GANDDPStrategy(DDPStrategy):
    """DDP with one ``DistributedDataParallel`` per network. Takes DDPStrategy's arguments."""

    strategy_name = "gan_ddp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("find_unused_parameters"):
            raise UserError("trainer.strategy: gan_ddp needs no find_unused_parameters; remove it")
        super().__init__(*args, **kwargs)

    def configure_ddp(self) -> None:
        module = self.model
        if not (hasattr(module, "generator") and hasattr(module, "discriminator")):
            raise UserError("trainer.strategy: gan_ddp trains gan_lightning.training.system.GAN models; use ddp for other modules")
        # Stored outside nn.Module's registry: the wrappers must not appear in state_dict or parameters().
        module.__dict__["_g_wrapped"] = wrap_ddp(self, module.generator)
        module.__dict__["_d_wrapped"] = wrap_ddp(self, module.discriminator)
        if getattr(module, "generator_ema", None) is not None:
            sync_module_states(module.generator_ema)

    def setup(self, trainer: pl.Trainer) -> None:
        quiet_console()  # processes started by spawn/fork do not inherit the CLI's warning filters
        super().setup(trainer)
        # The weights are synchronised by now. Give each process its own random stream, so that W processes
        # draw W different noise batches (seeding makes every rank start from the same state).
        torch.manual_seed(torch.initial_seed() + self.global_rank)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        out = super().training_step(*args, **kwargs)
        # DDP copies rank 0's buffers only at the start of the next wrapped forward, so the step's last forward
        # leaves each rank with its own batch-norm statistics. Rank 0's win, as in DDP, before anyone reads them.
        module = self.lightning_module
        buffers = [b for net in (module.generator, module.discriminator, module.generator_ema) if net is not None
                   for b in net.buffers()]
        for b in buffers:
            dist.broadcast(b, src=0)
        return out

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None:
            for name in _WRAPPERS:
                module.__dict__.pop(name, None)
        super().teardown()

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        for name, start_method in (("gan_ddp", "popen"), ("gan_ddp_spawn", "spawn"), ("gan_ddp_fork", "fork")):
            strategy_registry.register(
                name, cls, description=f"GAN DDP: G and D wrapped separately, start_method '{start_method}'",
                start_method=start_method,
            )


GANDDPStrategy.register_strategies(StrategyRegistry)


def module_checksums(modules: dict[str, torch.nn.Module]) -> torch.Tensor:
    """Per-tensor float64 sums and sums of squares of every parameter and buffer, in a fixed order."""
    values = []
    for module in modules.values():
        for t in list(module.parameters()) + list(module.buffers()):
            t = t.detach().double()
            values += [t.sum(), t.pow(2).sum()]
    return torch.stack(values) if values else torch.zeros(0, dtype=torch.float64)


class RankConsistency(pl.Callback):
    """Checks every ``every_n_steps`` generator steps (and at the end of fit) that all processes hold identical
    G, D and EMA weights and buffers; stops with a message naming the network that differs."""

    def __init__(self, every_n_steps: int = 1000) -> None:
        self.every_n_steps = every_n_steps
        self.checks = 0

    def check(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.checks += 1
        if trainer.world_size < 2 or not dist.is_available() or not dist.is_initialized():
            return
        nets = {"generator": pl_module.generator, "discriminator": pl_module.discriminator}
        if getattr(pl_module, "generator_ema", None) is not None:
            nets["generator_ema"] = pl_module.generator_ema
        for name, net in nets.items():
            local = module_checksums({name: net}).to(pl_module.device)
            gathered = [torch.empty_like(local) for _ in range(trainer.world_size)]
            dist.all_gather(gathered, local)
            if any(not torch.equal(gathered[0], g) for g in gathered[1:]):
                raise RuntimeError(
                    f"rank consistency: the {name} differs across processes at step {trainer.global_step}"
                )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.check(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.check(trainer, pl_module)
