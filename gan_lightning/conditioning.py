"""How a network receives the condition, and the condition's whole life: pluggable modules, not forks of the
networks.

**Network hooks.** Every network in ``gan_lightning.nets`` takes ``conditioning: Conditioning | None`` and calls
the same hooks at the same places; a method overrides only the hooks it needs:

===============================  ======================================  ==================================
hook                             where the network calls it              default (no condition)
===============================  ======================================  ==================================
``latent_dim(d)``                size of G's input vector                ``d``
``condition_latent(z, c)``       G's input                               ``z``
``norm(c, dims)``                every normalization layer of G          batch norm that ignores ``c``
``map_channels()``               extra channels of G's first feature map ``0``
``condition_map(h, c)``          G's first feature map                   ``h``
``input_channels(c)``            channels of D's input                   ``c``
``condition_input(x, c)``        D's input                               ``x``
``bind_features(f)``             once, by ``set_features(f)``            nothing
``condition_output(f, o, c)``    D's score ``o`` ``(N, 1)`` from ``f``   ``o``
===============================  ======================================  ==================================

The owning network calls ``bind(num_classes, role)`` once in its ``__init__``, so a YAML names only the method
and its own options; ``num_classes`` comes from the data.

**The condition's life.** The generator's conditioning module speaks for the model everywhere else; nothing
outside this module asks what kind of condition a model has:

===================================  ===============================================================
method                               used by
===================================  ===============================================================
``from_batch(x, y)``                 training: the condition of a real batch
``for_fakes(c_real, n)``             training: the conditions G's fakes are drawn with
``conditions(n, real)``              ``sample``, metrics: conditions of samples ``0..n-1`` of a seeded draw
``check(c, n, where)``               every user-given condition (one-line errors)
``sample_conditions(n, ...)``        the ``sample`` command's options (``--labels``, ``--condition_images``)
``grid(draw, real, per_row, rows)``  sample grids
``arrays(c)``                        what ``sample`` saves beside the samples
``check_data(datamodule)``           once before training
===================================  ===============================================================

Three families implement them: ``Conditioning`` (no condition), ``LabelConditioning`` (int64 class labels
``(N,)``: ``LabelConcat``, ``ConditionalBatchNorm``, ``Projection``, ``AuxiliaryClassifier``) and
``ImageCondition`` (a condition computed from the real image, e.g. ``SpatialCondition``'s sketch; fakes are
drawn from the conditions of the real batch, and D learns whether image and condition belong together). A new
kind of condition subclasses one of them, or ``Conditioning`` itself, in the user's own module.

A method may also give D an auxiliary classifier (``has_class_head``): then ``condition_output`` returns
``(score, class_logits)``, and the ``ClassLoss`` regularizer trains it.

**Recorded arguments.** The conditioning methods and the networks (``gan_lightning.nets``) are built by classes
whose metaclass is ``Recorded``: every instance remembers the arguments it was called with, defaults included.
``describe(obj)`` gives them in the form a YAML names a class by, ``{"class_path": ..., "init_args": {...}}``
(nested methods included), and ``build(description)`` makes the same object again. This is how a model trained
from Python, or a generator exported on its own, is rebuilt from a checkpoint or a ``config.json`` without the code
that first built it.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import numbers
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_lightning.errors import UserError

ROLES = ("generator", "discriminator")


# ---------------------------------------------------------------------------------------------- recorded arguments
@functools.lru_cache(maxsize=None)
def init_signature(cls: type) -> inspect.Signature:
    """The signature a class is called with: its ``__init__``'s, without ``self``."""
    sig = inspect.signature(cls.__init__)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Recorded(type):
    """Metaclass: an instance remembers the arguments its class was called with (see ``describe``).

    Only the outermost call is recorded (a subclass's ``super().__init__(...)`` is part of building it), and a
    value that cannot be written as JSON (a function, a tensor, a module of another kind) is recorded as a
    refusal that ``describe`` reports, naming the argument: the object itself is built as usual."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        remember(obj, args, kwargs)
        return obj

    @property
    def __signature__(cls) -> inspect.Signature:
        # What inspect.signature(cls) shows: the arguments of __init__, not this metaclass's (*args, **kwargs).
        return init_signature(cls)


def remember(obj: Any, args: tuple, kwargs: dict[str, Any]) -> None:
    """Record that ``obj`` was built by ``type(obj)(*args, **kwargs)``: its description, or why there is none."""
    cls = type(obj)
    bound = init_signature(cls).bind(*args, **kwargs)
    bound.apply_defaults()
    init_args: dict[str, Any] = {}
    problem = None
    if "<locals>" in cls.__qualname__:
        problem = (f"{cls.__qualname__} is defined inside a function and cannot be imported again; define it at "
                   "module level")
    for name, value in bound.arguments.items():
        kind = init_signature(cls).parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value and problem is None:
                problem = f"{name}: positional arguments beyond the named ones cannot be recorded; pass them by name"
            continue
        items = value.items() if kind is inspect.Parameter.VAR_KEYWORD else [(name, value)]
        for key, item in items:
            try:
                init_args[key] = _encode(item, key)
            except _NotRecordable as err:
                problem = problem or str(err)
    description = None if problem else {"class_path": class_path(cls), "init_args": init_args}
    obj.__dict__["_recorded"] = (description, problem)


class _NotRecordable(Exception):
    pass


def _encode(value: Any, where: str) -> Any:
    """A JSON value for an argument: plain values as they are (tuples as lists), recorded objects as their
    descriptions."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and "class_path" not in value:
        return {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(type(value), Recorded):
        description, problem = value.__dict__.get("_recorded", (None, "it was never built"))
        if problem:
            raise _NotRecordable(f"{where}: {problem}")
        return copy.deepcopy(description)
    raise _NotRecordable(f"{where}: a {type(value).__name__} cannot be written to a config (plain values, lists, "
                         "dicts and gan_lightning networks and conditioning methods can)")


def describe(obj: Any, field: str = "model") -> dict[str, Any]:
    """``{"class_path": ..., "init_args": {...}}``: how ``obj`` was built, nested conditioning methods included,
    as JSON values; ``build`` makes the same object from it. A one-line ``UserError`` naming ``field`` when ``obj``
    cannot be described (built with a value that has no JSON form, or a class defined inside a function)."""
    if not isinstance(type(obj), Recorded):
        raise UserError(f"{field}: {type(obj).__name__} does not record the arguments it is built with; give it "
                        "metaclass gan_lightning.conditioning.Recorded (every network and conditioning method has it)")
    description, problem = obj.__dict__.get("_recorded", (None, "it is not built yet"))
    if problem:
        raise UserError(f"{field}: {type(obj).__name__} cannot be described: {problem}")
    return copy.deepcopy(description)


def record_of(obj: Any) -> Any:
    """What a checkpoint keeps of a part of a model built in Python, for ``build`` to make it again: a plain value
    (a loss name, None) as it is, lists item by item, an object its ``describe`` description, and an object that
    cannot be described ``{"class_path": ..., "problem": why}`` (its class, without arguments)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple, nn.ModuleList)):
        return [record_of(item) for item in obj]
    try:
        return describe(obj, type(obj).__name__)
    except UserError as err:
        return {"class_path": class_path(type(obj)), "problem": str(err)}


def import_class(path: Any, field: str) -> type:
    """The class named by a dotted ``path`` (a module, then attributes: ``pkg.module.Outer.Inner``)."""
    if not isinstance(path, str) or "." not in path:
        raise UserError(f"{field}.class_path: expected a dotted class path such as "
                        f"gan_lightning.nets.DCGANGenerator, got {path!r}")
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            break
        if isinstance(obj, type):
            return obj
        break
    raise UserError(f"{field}.class_path: cannot import the class {path!r}; install or put on PYTHONPATH the "
                    "module that defines it")


def build(description: Any, base: Optional[type] = None, field: str = "model") -> Any:
    """The object ``describe`` described: its class imported and called with its ``init_args`` (nested
    descriptions built first). Only classes with the ``Recorded`` metaclass are called, and with ``base`` only
    its subclasses, so a description names networks and conditioning methods and nothing else."""
    if not isinstance(description, dict) or "class_path" not in description:
        raise UserError(f"{field}: expected {{'class_path': ..., 'init_args': {{...}}}}, got {type(description).__name__}")
    cls = import_class(description["class_path"], field)
    if not isinstance(cls, Recorded):
        raise UserError(f"{field}.class_path: {description['class_path']!r} is not a gan_lightning network or "
                        "conditioning method")
    if base is not None and not issubclass(cls, base):
        raise UserError(f"{field}.class_path: {description['class_path']!r} is not a {base.__name__}")
    init_args = description.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise UserError(f"{field}.init_args: expected a mapping of argument names to values")
    return cls(**{k: _decode(v, f"{field}.init_args.{k}") for k, v in init_args.items()})


def _decode(value: Any, field: str) -> Any:
    if isinstance(value, dict) and "class_path" in value:
        return build(value, None, field)
    if isinstance(value, list):
        return [_decode(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _decode(v, f"{field}.{k}") for k, v in value.items()}
    return value

#: ``draw(n, c)``: samples ``0..n-1`` of a seeded draw with conditions ``c``, in data space.
DrawFn = Callable[[int, Optional[Tensor]], Tensor]
#: ``real(n)``: ``n`` real samples in data space (a fixed, seeded subset of the training data).
RealFn = Optional[Callable[[int], Tensor]]


class CondNorm(nn.Module):
    """A normalization layer called as ``norm(h, c)``."""

    def forward(self, h: Tensor, c: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PlainNorm(CondNorm):
    """Batch norm with learned affine parameters; ignores the condition."""

    def __init__(self, num_features: int, dims: int = 2) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features) if dims == 2 else nn.BatchNorm1d(num_features)

    def forward(self, h: Tensor, c: Tensor | None = None) -> Tensor:
        return self.bn(h)




class Conditioning(nn.Module, metaclass=Recorded):
    """No condition: the hooks leave everything as it is and the model draws unconditional samples. Subclass
    to add a method."""

    kind: str = "none"                  # a name for messages; models pair G and D of the same kind
    roles: tuple[str, ...] = ROLES      # the networks this method can condition
    num_classes: int = 0
    needs_classes: bool = False         # a network built with it and no num_classes waits for the data's
    needs_feature_maps: bool = False    # networks without feature maps (MLP) refuse it
    has_class_head: bool = False        # D returns (scores, class logits): train it with regularizers.ClassLoss

    def bind(self, num_classes: int, role: str) -> None:
        """Called once by the owning network with the number of classes (0 = unconditional) and its role."""
        if role not in self.roles:
            raise UserError(
                f"{role}.conditioning: {type(self).__name__} conditions only the {' and '.join(self.roles)}; "
                f"pick another method for the {role}"
            )
        self.num_classes, self.role = int(num_classes), role

    # ------------------------------------------------------------------ generator side
    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim

    def condition_latent(self, z: Tensor, c: Tensor | None) -> Tensor:
        return z

    def norm(self, num_features: int, dims: int = 2) -> CondNorm:
        return PlainNorm(num_features, dims)

    def map_channels(self) -> int:
        return 0

    def condition_map(self, h: Tensor, c: Tensor | None) -> Tensor:
        return h

    # ------------------------------------------------------------------ discriminator side
    def input_channels(self, channels: int) -> int:
        return channels

    def condition_input(self, x: Tensor, c: Tensor | None) -> Tensor:
        return x

    def bind_features(self, features_dim: int) -> None:
        pass

    def condition_output(self, features: Tensor, out: Tensor, c: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
        return out

    # ------------------------------------------------------------------ the condition's life
    @property
    def conditional(self) -> bool:
        return False

    @property
    def class_count(self) -> int:
        """How many class labels the condition names (0 when it is not a class label): class metrics use it."""
        return 0

    def class_labels(self, c: Optional[Tensor]) -> Optional[Tensor]:
        """The class labels ``(N,)`` a condition names, for class metrics; None when it names none."""
        return None

    def check_data(self, datamodule: object) -> None:
        """Refuse data that cannot feed this condition (called once before training)."""

    def from_batch(self, x: Tensor, y: Optional[Tensor]) -> Optional[Tensor]:
        """The condition of a real batch ``x`` with its labels ``y`` (None when the data has none)."""
        return None

    def for_fakes(self, c_real: Optional[Tensor], n: int, device: torch.device | str = "cpu") -> Optional[Tensor]:
        """Conditions for ``n`` fakes of a training step, given the real batch's conditions."""
        return None

    def conditions(self, n: int, real: RealFn = None) -> Optional[Tensor]:
        """Conditions of samples ``0..n-1`` of a seeded draw (sample ``i`` always gets the same one)."""
        return None

    def check(self, c: Optional[Tensor], n: int, where: str = "conditions") -> None:
        """Refuse conditions that do not fit this model, with one line naming ``where``."""
        if c is not None:
            raise UserError(f"{where}: this model is unconditional; give no condition")

    def sample_conditions(self, n: int, labels: Optional[Sequence[int]] = None, images: Optional[Tensor] = None,
                          real: RealFn = None) -> Optional[Tensor]:
        """Conditions for the ``sample`` command: from ``--labels``, from ``--condition_images`` (uint8 images,
        here already in data space), or the default draw."""
        if labels:
            raise UserError("--labels: this model is not conditioned on class labels; drop --labels")
        if images is not None:
            raise UserError("--condition_images: this model does not take its condition from images; drop it")
        return self.conditions(n, real)

    def grid(self, draw: DrawFn, real: RealFn, per_row: int, rows: int) -> tuple[Tensor, int]:
        """A sample grid's images and images per row: ``rows`` rows of ``per_row`` samples."""
        return draw(per_row * rows, None), per_row

    def arrays(self, c: Optional[Tensor]) -> dict[str, np.ndarray]:
        """What ``sample`` saves beside the samples for these conditions."""
        return {}


class LabelConditioning(Conditioning):
    """Conditions that are int64 class labels ``(N,)`` in ``[0, num_classes)`` from the data's ``y``: fakes get
    uniformly drawn labels, seeded draws cycle through the classes, grids show one row per class."""

    kind = "label"
    needs_classes = True

    def bind(self, num_classes: int, role: str) -> None:
        super().bind(num_classes, role)
        if num_classes < 1:
            raise UserError(
                f"{role}.conditioning: {type(self).__name__} needs class labels; use data with labels: class"
            )

    @property
    def conditional(self) -> bool:
        return True

    @property
    def class_count(self) -> int:
        return self.num_classes

    def class_labels(self, c: Optional[Tensor]) -> Optional[Tensor]:
        return c

    def check_data(self, datamodule: object) -> None:
        classes = getattr(datamodule, "num_classes", None)
        if classes is not None and classes != self.num_classes:
            raise UserError(
                f"model.generator.num_classes={self.num_classes} but the data has {classes} classes; set the "
                "networks' num_classes to the data's"
            )

    def from_batch(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        if y is None:
            raise UserError("data: this model is class-conditional but the batches carry no labels; use data.labels: class")
        return y

    def for_fakes(self, c_real: Optional[Tensor], n: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.randint(0, self.num_classes, (n,), device=device)

    def conditions(self, n: int, real: RealFn = None) -> Tensor:
        from gan_lightning.sampling.draw import labels_for  # here: sampling's modules may import this one

        return labels_for(n, self.num_classes)

    def check(self, c: Optional[Tensor], n: int, where: str = "labels") -> None:
        if c is None:
            raise UserError(f"{where}: this model is conditioned on class labels; give one per sample")
        if c.dtype != torch.long or c.dim() != 1 or c.shape[0] != n:
            raise UserError(f"{where}: expected {n} int64 class labels, got {c.dtype} of shape {tuple(c.shape)}")
        check_labels(c, self.num_classes, where)

    def sample_conditions(self, n: int, labels: Optional[Sequence[int]] = None, images: Optional[Tensor] = None,
                          real: RealFn = None) -> Tensor:
        if images is not None:
            raise UserError("--condition_images: this model is conditioned on class labels; give --labels instead")
        from gan_lightning.sampling.draw import labels_for

        return labels_for(n, self.num_classes, labels)

    def grid(self, draw: DrawFn, real: RealFn, per_row: int, rows: int) -> tuple[Tensor, int]:
        labels = torch.arange(self.num_classes).repeat_interleave(per_row)
        return draw(len(labels), labels), per_row

    def arrays(self, c: Optional[Tensor]) -> dict[str, np.ndarray]:
        return {"labels": c.cpu().numpy().astype(np.int64)}


class ImageCondition(Conditioning):
    """Conditions computed from the real image by ``from_images(x)``: a real batch is paired with its own
    conditions, fakes are generated from the conditions of the real batch, seeded draws take the conditions of
    a fixed subset of the training images, and a grid shows real images, their conditions (``show``) and
    samples drawn from each. Subclass and implement ``from_images`` (and the network hooks)."""

    kind = "image"

    def from_images(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The conditions ``(N, ...)`` of images ``x`` ``(N, C, H, W)`` in [-1, 1]."""
        raise NotImplementedError

    def show(self, c: Tensor, like: Tensor) -> Optional[Tensor]:
        """Conditions drawn as images shaped like ``like`` for a grid row, or None for no such row."""
        return None

    @property
    def conditional(self) -> bool:
        return True

    def from_batch(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        return self.from_images(x)

    def for_fakes(self, c_real: Optional[Tensor], n: int, device: torch.device | str = "cpu") -> Tensor:
        return c_real

    def conditions(self, n: int, real: RealFn = None) -> Tensor:
        if real is None:
            raise UserError("--condition_images: this model takes its condition from images; give an .npz of uint8 "
                            "images (N, C, H, W)")
        return self.from_images(real(n))

    def check(self, c: Optional[Tensor], n: int, where: str = "conditions") -> None:
        if c is None:
            raise UserError(f"{where}: this model is conditioned on {type(self).__name__}; give one condition per sample")
        if not c.is_floating_point() or c.shape[0] != n:
            raise UserError(f"{where}: expected {n} float conditions, got {c.dtype} of shape {tuple(c.shape)}")

    def sample_conditions(self, n: int, labels: Optional[Sequence[int]] = None, images: Optional[Tensor] = None,
                          real: RealFn = None) -> Tensor:
        if labels:
            raise UserError("--labels: this model takes its condition from images; give --condition_images instead")
        if images is not None:
            return self.from_images(images[torch.arange(n) % len(images)])
        return self.conditions(n, real)

    def grid(self, draw: DrawFn, real: RealFn, per_row: int, rows: int) -> tuple[Tensor, int]:
        # First row: real images; then (if ``show`` draws them) their conditions; then samples drawn from each.
        x = real(per_row)
        c = self.from_images(x)
        shown = self.show(c, x)
        samples = draw(per_row * rows, c.repeat((rows,) + (1,) * (c.dim() - 1)))
        head = [x] if shown is None else [x, shown]
        return torch.cat(head + [samples]), per_row

    def arrays(self, c: Optional[Tensor]) -> dict[str, np.ndarray]:
        return {"conditions": c.float().cpu().numpy()}


def check_labels(y: Tensor, num_classes: int, where: str) -> None:
    """Refuse labels outside ``[0, num_classes)`` with a clear message (one host sync; not for the hot loop)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(f"{where}: labels must be in [0, {num_classes}), got values from {int(y.min())} to {int(y.max())}")


class _LabelCode(LabelConditioning):
    """Shared by the label methods: a fixed one-hot code or a learned embedding of the label."""

    def __init__(self, embedding: Literal["one_hot", "learned"] = "one_hot", embedding_dim: int = 0) -> None:
        super().__init__()
        if embedding not in ("one_hot", "learned"):
            raise UserError(f"conditioning.embedding: must be 'one_hot' or 'learned', got {embedding!r}")
        self.embedding_kind, self.embedding_dim = embedding, int(embedding_dim)
        self.embed: nn.Module | None = None
        self.dim = 0

    def bind(self, num_classes: int, role: str) -> None:
        super().bind(num_classes, role)
        self.dim = num_classes if self.embedding_kind == "one_hot" else (self.embedding_dim or num_classes)
        if self.embedding_kind == "learned":
            self.embed = nn.Embedding(num_classes, self.dim)

    def code(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        if self.embed is None:
            return F.one_hot(y, self.num_classes).to(dtype)
        return self.embed(y).to(dtype)


class LabelConcat(_LabelCode):
    """Mirza & Osindero 2014: the label, one-hot or as a learned embedding, is concatenated to G's noise and to
    D's input (as constant feature maps for images)."""

    def __init__(
        self,
        embedding: Literal["one_hot", "learned"] = "one_hot",  # one_hot: fixed one-hot vector; learned: a trained nn.Embedding.
        embedding_dim: int = 0,      # Size of a learned embedding, 0 = num_classes.
    ) -> None:
        super().__init__(embedding, embedding_dim)

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + self.dim

    def condition_latent(self, z: Tensor, c: Tensor | None) -> Tensor:
        return torch.cat([z, self.code(c, z.dtype)], dim=1)

    def input_channels(self, channels: int) -> int:
        return channels + self.dim

    def condition_input(self, x: Tensor, c: Tensor | None) -> Tensor:
        code = self.code(c, x.dtype)
        if x.dim() > 2:
            code = code[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return torch.cat([x, code], dim=1)


class CBN(CondNorm):
    """Batch norm without its own affine parameters, then a class-dependent scale and shift."""

    def __init__(self, num_features: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, h: Tensor, c: Tensor | None = None) -> Tensor:
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.dim() - 2)
        return self.gamma(c).view(shape) * self.bn(h) + self.beta(c).view(shape)


class ConditionalBatchNorm(LabelConditioning):
    """Conditional batch norm in G (de Vries et al. 2017; Miyato & Koyama 2018): every normalization layer of
    G gets a class-dependent scale and shift. Optionally the label is also concatenated to the noise."""

    roles = ("generator",)

    def __init__(
        self,
        concat_latent: Literal["none", "one_hot"] = "none",  # one_hot: also concatenate a one-hot label to z.
    ) -> None:
        super().__init__()
        if concat_latent not in ("none", "one_hot"):
            raise UserError(f"conditioning.concat_latent: must be 'none' or 'one_hot', got {concat_latent!r}")
        self.concat_latent = concat_latent

    def norm(self, num_features: int, dims: int = 2) -> CondNorm:
        return CBN(num_features, self.num_classes, dims)

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + (self.num_classes if self.concat_latent == "one_hot" else 0)

    def condition_latent(self, z: Tensor, c: Tensor | None) -> Tensor:
        if self.concat_latent == "none":
            return z
        return torch.cat([z, F.one_hot(c, self.num_classes).to(z.dtype)], dim=1)


class Projection(LabelConditioning):
    """Projection discriminator (Miyato & Koyama 2018): ``D(x, y) = psi(f(x)) + <embed(y), f(x)>`` on D's
    pooled features ``f(x)``. With ``classifier: true`` D also gets an AC-GAN class head on ``f(x)``, trained by
    the ``ClassLoss`` regularizer, which sharpens the class of the samples."""

    roles = ("discriminator",)

    def __init__(
        self,
        norm: Literal["spectral", "none"] = "spectral",  # spectral: spectral norm on the class embedding (as in SNGAN).
        classifier: bool = False,  # Also an auxiliary class head on D's features (add regularizers.ClassLoss).
    ) -> None:
        super().__init__()
        if norm not in ("spectral", "none"):
            raise UserError(f"conditioning.norm: must be 'spectral' or 'none', got {norm!r}")
        self.norm_kind = norm
        self.has_class_head = bool(classifier)
        self.embed: nn.Module | None = None
        self.classifier: nn.Module | None = None

    def bind_features(self, features_dim: int) -> None:
        embed = nn.Embedding(self.num_classes, features_dim)
        nn.init.xavier_uniform_(embed.weight)
        self.embed = spectral_norm(embed) if self.norm_kind == "spectral" else embed
        if self.has_class_head:
            self.classifier = nn.Linear(features_dim, self.num_classes)

    def condition_output(self, features: Tensor, out: Tensor, c: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
        out = out + (self.embed(c) * features).sum(dim=1, keepdim=True)
        return out if self.classifier is None else (out, self.classifier(features))


class AuxiliaryClassifier(LabelConditioning):
    """AC-GAN (Odena et al. 2017): D also predicts the class from its features; D's real/fake score does not
    see the label. Pair it with the ``ClassLoss`` regularizer, which trains the class head on real and fake
    samples and G to draw the class it is asked for."""

    roles = ("discriminator",)
    has_class_head = True

    def __init__(self) -> None:
        super().__init__()
        self.classifier: nn.Module | None = None

    def bind_features(self, features_dim: int) -> None:
        self.classifier = nn.Linear(features_dim, self.num_classes)

    def condition_output(self, features: Tensor, out: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        return out, self.classifier(features)


SPATIAL_KINDS = ("downsample", "mask")


class SpatialCondition(ImageCondition):
    """Spatial conditioning: a map derived from the real image is the condition, concatenated as channels to
    G's first feature map and to D's input (pix2pix-style pairing; Isola et al. 2017).

    ``kind: downsample`` — the image average-pooled to ``size x size`` (G must draw a digit that matches a
    low-resolution sketch); ``kind: mask`` — the binary mask ``image > threshold`` at full resolution. The map is
    ``(N, 1, s, s)`` in [-1, 1].
    """

    kind = "spatial"
    needs_feature_maps = True

    def __init__(
        self,
        kind: Literal["downsample", "mask"] = "downsample",  # downsample | mask.
        size: int = 7,             # Side of the downsampled map (kind: downsample).
        threshold: float = 0.0,    # Mask threshold on images in [-1, 1] (kind: mask).
    ) -> None:
        super().__init__()
        if kind not in SPATIAL_KINDS:
            raise UserError(f"conditioning.kind: must be one of {SPATIAL_KINDS}, got {kind!r}")
        if size < 1:
            raise UserError(f"conditioning.size: must be >= 1, got {size}")
        self.map_kind, self.size, self.threshold = kind, int(size), float(threshold)

    def from_images(self, x: Tensor) -> Tensor:
        """The condition map of images ``x`` ``(N, C, H, W)`` in [-1, 1]: ``(N, 1, s, s)`` in [-1, 1]."""
        gray = x.mean(dim=1, keepdim=True)
        if self.map_kind == "mask":
            return torch.where(gray > self.threshold, 1.0, -1.0).to(x.dtype)
        return F.adaptive_avg_pool2d(gray, self.size)

    def show(self, c: Tensor, like: Tensor) -> Tensor:
        return self._fit(c, like.shape[-2:]).expand_as(like)

    def check(self, c: Optional[Tensor], n: int, where: str = "conditions") -> None:
        super().check(c, n, where)
        if c.dim() != 4 or c.shape[1] != 1:
            raise UserError(f"{where}: expected condition maps (N, 1, H, W), got shape {tuple(c.shape)}")

    @staticmethod
    def _fit(c: Tensor, size: tuple[int, int]) -> Tensor:
        return c if tuple(c.shape[-2:]) == tuple(size) else F.interpolate(c, size=size, mode="nearest")

    def map_channels(self) -> int:
        return 1

    def condition_map(self, h: Tensor, c: Tensor | None) -> Tensor:
        return torch.cat([h, self._fit(c, h.shape[-2:]).to(h.dtype)], dim=1)

    def input_channels(self, channels: int) -> int:
        return channels + 1

    def condition_input(self, x: Tensor, c: Tensor | None) -> Tensor:
        return torch.cat([x, self._fit(c, x.shape[-2:]).to(x.dtype)], dim=1)
