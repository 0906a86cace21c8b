"""Checks of a model's configuration, run once when a GAN is built: each failure is one line naming the field
and the fix."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from gan_lightning.errors import UserError


def check_range(name: str, value: float, low: float = 0.0, high: Optional[float] = None, hint: str = "") -> None:
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high})"
        raise UserError(f"model.{name}: must be {bound}{hint}, got {value}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise UserError(f"model.{name}: must be one of {tuple(choices)}, got {value!r}")


def check_networks(generator: Any, discriminator: Any) -> None:
    """G and D must agree on the sample shape, the classes and the kind of condition."""
    if tuple(generator.out_shape) != tuple(discriminator.in_shape):
        raise UserError(
            f"model: generator.out_shape {tuple(generator.out_shape)} does not match discriminator.in_shape "
            f"{tuple(discriminator.in_shape)}; give both networks the same image size and channels"
        )
    if generator.num_classes != discriminator.num_classes:
        raise UserError(
            f"model: generator.num_classes={generator.num_classes} but discriminator.num_classes="
            f"{discriminator.num_classes}; set both to the number of classes in the data (0 = unconditional)"
        )
    g_kind, d_kind = generator.conditioning.kind, discriminator.conditioning.kind
    if g_kind != d_kind:
        raise UserError(
            f"model: the generator is conditioned on {g_kind!r} but the discriminator on {d_kind!r}; give both "
            "networks a conditioning method of the same kind"
        )


def check_objective(loss: Any, regularizers: Sequence[Any], discriminator: Any, d_step: str) -> None:
    """The loss, the regularizers and D's outputs fit together."""
    if d_step == "split" and not loss.separable:
        raise UserError(f"model.d_step: {type(loss).__name__} pairs real and fake scores and cannot be split into "
                        "a real step and a fake step; use d_step: joint")
    has_head = discriminator.conditioning.has_class_head
    wants_head = [type(r).__name__ for r in regularizers if r.needs_class_head]
    if wants_head and not has_head:
        raise UserError(f"model.regularizers: {wants_head[0]} trains D's class head, but the discriminator has none; "
                        "use conditioning AuxiliaryClassifier or Projection(classifier: true)")
    if has_head and not wants_head:
        raise UserError("model.regularizers: the discriminator has a class head but nothing trains it; add "
                        "{class_path: gan_lightning.objectives.ClassLoss}")
    if wants_head and discriminator.conditioning.class_count < 1:
        raise UserError(f"model.regularizers: {wants_head[0]} needs class-label conditions")
