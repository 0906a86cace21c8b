"""The contracts every network keeps, and the discriminator template.

A GAN system (``gan_lightning.training.system.GAN``) only relies on these attributes and ``forward`` signatures, so any
subclass named in a YAML by ``class_path`` plugs in without touching the library. ``Discriminator`` also
implements ``forward`` around the conditioning hooks: an architecture supplies only its feature extractor
(``features``) and that extractor's size (``set_features``).

**The number of classes, given once.** A network built with a class-label conditioning method and no
``num_classes`` waits: it is an empty module until ``build(num_classes)`` runs its ``__init__`` with the count. A
``GAN`` builds a waiting network with the other network's count, or with the data's when training starts, so in
Python ``num_classes`` is given to one network or to none (the command line links it from the data to both).

**Networks outside training.** Every network remembers the arguments it was built with
(``gan_lightning.conditioning.Recorded``). A generator alone draws samples (``sample``), and is saved and loaded
without Lightning, an optimizer or a discriminator in the Hugging Face Hub's layout: ``save_pretrained(folder)``
writes ``config.json`` (class path, arguments, latent prior), ``model.safetensors`` and a model card ``README.md``;
``Generator.from_pretrained(folder or "user/name")`` rebuilds it; ``push_to_hub("user/name")`` uploads it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning, Recorded, build, describe, init_signature, remember
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.nets.layers import maybe_sn
from gan_lightning.sampling.draw import Drawn
from gan_lightning.sampling.draw import sample as draw_sample

CONFIG_NAME = "config.json"              # the file names of the Hugging Face Hub's PyTorch models
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
PRIORS = ("normal", "uniform")


def _bind(conditioning: Conditioning | None, num_classes: int, role: str) -> Conditioning:
    if num_classes < 0:
        raise UserError(f"{role}.num_classes must be >= 0 (0 = unconditional), got {num_classes}")
    if conditioning is None:
        if num_classes > 0:
            raise UserError(
                f"{role}.conditioning: the data has {num_classes} classes but the {role} has no conditioning "
                "method; add one (e.g. class_path: gan_lightning.conditioning.LabelConcat) or use data.labels: none"
            )
        conditioning = Conditioning()
    conditioning.bind(num_classes, role)
    return conditioning


class WaitsForClasses(Recorded):
    """Metaclass of the networks: a call without ``num_classes`` whose conditioning method needs class labels
    (``needs_classes``) makes an empty, waiting module instead of failing; ``Network.build(num_classes)`` later
    runs the class's ``__init__`` on that same object, so whatever holds it (a GAN) holds the built network."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        signature = init_signature(cls)
        if "num_classes" in signature.parameters and "conditioning" in signature.parameters:
            try:
                given = signature.bind(*args, **kwargs).arguments
            except TypeError:
                given = None  # the normal call raises Python's own message
            if given is not None and "num_classes" not in given:
                conditioning = given.get("conditioning", signature.parameters["conditioning"].default)
                if getattr(conditioning, "needs_classes", False):
                    net = cls.__new__(cls)
                    nn.Module.__init__(net)
                    net.__dict__["_waiting"] = (args, kwargs)
                    return net
        return super().__call__(*args, **kwargs)


class Network(nn.Module, metaclass=WaitsForClasses):
    """What generators and discriminators share: a network that may wait for its number of classes."""

    num_classes: int  # 0 = unconditional.

    @property
    def waits_for_classes(self) -> bool:
        """True while the network waits for ``num_classes`` (see ``build_with_classes``)."""
        return "_waiting" in self.__dict__

    def build_with_classes(self, num_classes: int, source: str = "num_classes") -> None:
        """Builds a waiting network with ``num_classes`` classes; for a built one, checks that it has that many
        (a one-line ``UserError`` naming ``source``, where the count came from, when not)."""
        waiting = self.__dict__.get("_waiting")
        if waiting is None:
            if int(num_classes) != self.num_classes:
                raise UserError(f"{source}={num_classes} but {role(self)}.num_classes={self.num_classes}; give the "
                                "number of classes once (to one network, or leave it to the data)")
            return
        args, kwargs = waiting
        kwargs = {**kwargs, "num_classes": int(num_classes)}
        type(self).__init__(self, *args, **kwargs)  # raises (and the network keeps waiting) on a bad count
        del self.__dict__["_waiting"]
        remember(self, args, kwargs)


def role(net: nn.Module) -> str:
    return "generator" if isinstance(net, Generator) else "discriminator"


def describe_network(net: Network) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": {...}}``: how ``net`` was built (``gan_lightning.conditioning.describe``);
    ``gan_lightning.conditioning.build`` makes it again."""
    if getattr(net, "waits_for_classes", False):
        raise UserError(f"{role(net)}: {type(net).__name__} waits for num_classes; fit it on data, or give "
                        "num_classes to one network")
    return describe(net, role(net))


def pair_classes(generator: Network, discriminator: Network) -> Optional[int]:
    """Builds a waiting network with the other's number of classes. Returns the count once both are built, None
    while both wait (for the data)."""
    if discriminator.waits_for_classes and not generator.waits_for_classes:
        discriminator.build_with_classes(generator.num_classes, "generator.num_classes")
    elif generator.waits_for_classes and not discriminator.waits_for_classes:
        generator.build_with_classes(discriminator.num_classes, "discriminator.num_classes")
    return None if generator.waits_for_classes else generator.num_classes


def build_for_data(generator: Network, discriminator: Network, num_classes: Any) -> None:
    """Builds waiting networks with the data's number of classes (``data.num_classes``)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise UserError("model: the networks wait for num_classes but the data gives none; give num_classes to a "
                        "network, or fit on a GANDataModule (it knows its classes)")
    for net in (generator, discriminator):
        net.build_with_classes(num_classes, "data.num_classes")


class Generator(Network):
    """Maps noise ``z`` of shape ``(N, latent_dim)`` (and labels ``y`` of shape ``(N,)`` when conditional) to
    samples of shape ``(N, *out_shape)``: images ``(N, C, H, W)`` in [-1, 1] or vectors ``(N, D)`` in data space.
    """

    latent_dim: int
    out_shape: tuple[int, ...]
    num_classes: int  # 0 = unconditional.
    latent_prior: str = "normal"  # what z is drawn from: normal N(0, I) or uniform U(-1, 1); set by the GAN.

    def __init__(
        self,
        latent_dim: int,
        out_shape: tuple[int, ...],
        num_classes: int = 0,
        conditioning: Conditioning | None = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise UserError(f"generator.latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.num_classes = int(num_classes)
        self.conditioning = _bind(conditioning, num_classes, "generator")

    @property
    def condition(self) -> str:
        """What the generator is conditioned on, its conditioning's ``kind`` (none, label, spatial, ...)."""
        return self.conditioning.kind

    @property
    def is_image(self) -> bool:
        return len(self.out_shape) == 3

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ on its own
    def sample(self, n: int, labels: Optional[Union[Sequence[int], Tensor]] = None, seed: Optional[int] = None,
               truncation: Optional[float] = None, condition_images: Optional[Tensor] = None,
               batch_size: int = 500) -> Drawn:
        """``(samples, conditions)``: samples ``0..n-1`` of the seeded draw (``GAN.sample`` without refinement;
        see ``gan_lightning.sampling.draw.sample``)."""
        return draw_sample(self, n, labels=labels, seed=seed, truncation=truncation,
                           condition_images=condition_images, batch_size=batch_size)

    def pretrained_config(self) -> dict[str, Any]:
        """What ``config.json`` holds: the class path and arguments (``describe_network``) and the latent prior."""
        return {**describe_network(self), "latent_prior": self.latent_prior}

    def save_pretrained(self, save_directory: Union[str, os.PathLike], model_card: Optional[str] = None) -> Path:
        """Writes ``config.json``, ``model.safetensors`` (every parameter and buffer) and, unless the folder
        already has one, a model card ``README.md`` (``model_card``, or a short default) into ``save_directory``
        (created if missing); returns the folder. ``from_pretrained`` rebuilds the generator from it."""
        from safetensors.torch import save_model

        folder = Path(save_directory)
        config = self.pretrained_config()  # refuses an undescribable generator before anything is written
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_model(self, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        card = folder / MODEL_CARD_NAME
        if model_card is not None or not card.exists():
            card.write_text(model_card if model_card is not None else default_model_card(self))
        return folder

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload a gan_lightning generator",
                    private: Optional[bool] = None, token: Optional[str] = None, branch: Optional[str] = None,
                    create_pr: Optional[bool] = None, model_card: Optional[str] = None) -> Any:
        """Uploads what ``save_pretrained`` writes to the Hugging Face Hub model repository ``repo_id``
        (``"user/name"``, created if missing; needs ``huggingface_hub`` and a token, e.g. from ``hf auth login``).
        Returns the commit's information."""
        HfApi = _hub("push_to_hub").HfApi
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=model_card)
            return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=tmp,
                                     commit_message=commit_message, revision=branch, create_pr=create_pr)

    @classmethod
    def from_pretrained(cls, pretrained: Union[str, os.PathLike], *, revision: Optional[str] = None,
                        cache_dir: Optional[Union[str, os.PathLike]] = None, force_download: bool = False,
                        token: Optional[Union[str, bool]] = None, local_files_only: bool = False,
                        map_location: Union[str, torch.device] = "cpu") -> "Generator":
        """The generator saved by ``save_pretrained`` (or ``python -m gan_lightning export``) in a local folder,
        or in the Hub repository ``"user/name"`` (downloaded through ``huggingface_hub``; ``revision``,
        ``cache_dir``, ``force_download``, ``token``, ``local_files_only`` as there). Its class comes from
        ``config.json`` and must be ``cls`` or a subclass: ``Generator.from_pretrained`` loads any generator. In
        eval mode, on ``map_location``; every weight and buffer must match."""
        from safetensors.torch import load_model

        config_file, weights_file = _pretrained_files(pretrained, revision=revision, cache_dir=cache_dir,
                                                      force_download=force_download, token=token,
                                                      local_files_only=local_files_only)
        where = str(pretrained)
        try:
            config = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{where}: {CONFIG_NAME} is not readable JSON ({type(err).__name__})") from None
        if not isinstance(config, dict):
            raise UserError(f"{where}: {CONFIG_NAME} holds no generator description")
        prior = config.get("latent_prior", "normal")
        if prior not in PRIORS:
            raise UserError(f"{where}: {CONFIG_NAME} latent_prior must be one of {PRIORS}, got {prior!r}")
        net = build({k: config[k] for k in ("class_path", "init_args") if k in config}, cls, f"{where}/{CONFIG_NAME}")
        if net.waits_for_classes:
            raise UserError(f"{where}: {CONFIG_NAME} gives no num_classes for the generator's conditioning method")
        try:
            load_model(net, str(weights_file), strict=True, device=str(map_location))
        except (RuntimeError, OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{where}: {WEIGHTS_NAME} does not fit the generator {CONFIG_NAME} describes "
                            f"({first})") from None
        net.latent_prior = prior
        return net.eval()


def default_model_card(generator: "Generator", details: str = "") -> str:
    """A short model card: Hub metadata, what the generator is, and how to load and sample it."""
    config = describe_network(generator)
    conditioning = generator.conditioning
    what = "unconditional" if not conditioning.conditional else (
        f"conditioned on {conditioning.class_count} class labels" if conditioning.class_count
        else f"conditioned on {type(conditioning).__name__} ({conditioning.kind})")
    labels = ", labels=[0, 1, 2, 3]" if conditioning.class_count else ""
    return (
        "---\nlibrary_name: gan_lightning\ntags:\n- gan\n- gan_lightning\n- pytorch\n- safetensors\n---\n\n"
        f"# {type(generator).__name__}\n\n"
        f"A GAN generator ({config['class_path']}), {what}: noise of size {generator.latent_dim} from a "
        f"{generator.latent_prior} prior to samples of shape {tuple(generator.out_shape)}"
        f"{' (images in [-1, 1])' if generator.is_image else ''}.\n\n"
        "```python\nfrom gan_lightning.nets import Generator\n\n"
        "generator = Generator.from_pretrained(\"<this folder or user/name>\")\n"
        f"samples, conditions = generator.sample(16, seed=0{labels})\n```\n"
        + (f"\n{details.rstrip()}\n" if details else "")
    )


def _hub(what: str) -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise UserError(f"{what}: the Hugging Face Hub needs the huggingface_hub package; pip install "
                        "huggingface_hub") from None
    return huggingface_hub


def _looks_local(name: str) -> bool:
    """A name that can only be a path: a Hub repository id is ``name`` or ``namespace/name``."""
    return (os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def _pretrained_files(pretrained: Union[str, os.PathLike], **hub: Any) -> tuple[str, str]:
    """The paths of ``config.json`` and ``model.safetensors``: in a local folder, or downloaded from the Hub."""
    name = os.fspath(pretrained)
    if os.path.isdir(name):
        files = [os.path.join(name, f) for f in (CONFIG_NAME, WEIGHTS_NAME)]
        for f in files:
            if not os.path.isfile(f):
                raise DataNotFound(f"{name}: no {os.path.basename(f)} in this folder; write it with "
                                   "save_pretrained or `python -m gan_lightning export`")
        return files[0], files[1]
    if isinstance(pretrained, os.PathLike) or _looks_local(name):
        raise DataNotFound(f"{name}: no such folder; give the folder save_pretrained or export wrote, or a Hub "
                           "repository id user/name")
    huggingface_hub = _hub(f"from_pretrained({name!r})")
    errors = getattr(huggingface_hub, "errors", None)
    failures = (OSError, ValueError) + tuple(getattr(errors, n) for n in ("HfHubHTTPError", "LocalEntryNotFoundError")
                                             if hasattr(errors, n))
    try:
        config, weights = (huggingface_hub.hf_hub_download(repo_id=name, filename=f, library_name="gan_lightning",
                                                           **hub) for f in (CONFIG_NAME, WEIGHTS_NAME))
        return config, weights
    except failures as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataNotFound(f"{name}: not a local folder, and the Hub gives no generator there ({first})") from None


class Discriminator(Network):
    """Maps samples ``x`` of shape ``(N, *in_shape)`` (and labels ``y`` when conditional) to one real-valued score
    per sample, shape ``(N,)``: a logit for the cross-entropy losses, a critic value for hinge/Wasserstein.

    A template: an architecture implements ``features`` (its conditioned input ``(N, *input_shape)`` to features
    ``(N, F)``) and calls ``self.set_features(F, norm)`` in its ``__init__``, once its layers exist. ``forward``
    then conditions the input, scores the features with a linear head and hands both to the conditioning module
    (a projection term, a class head). A subclass may override ``forward`` instead and use none of this.
    """

    in_shape: tuple[int, ...]
    num_classes: int  # 0 = unconditional.
    features_dim: int | None  # F, the size of ``features``' output; None until ``set_features``.

    def __init__(
        self, in_shape: tuple[int, ...], num_classes: int = 0, conditioning: Conditioning | None = None
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.conditioning = _bind(conditioning, num_classes, "discriminator")
        self.features_dim = None

    @property
    def condition(self) -> str:
        """What the discriminator is conditioned on, its conditioning's ``kind`` (none, label, spatial, ...)."""
        return self.conditioning.kind

    @property
    def input_channels(self) -> int:
        """Channels of the conditioned input (for vectors its length): ``in_shape[0]`` plus the condition's."""
        return self.conditioning.input_channels(self.in_shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one conditioned input, as ``features`` receives it."""
        return (self.input_channels, *self.in_shape[1:])

    def set_features(
        self, features_dim: int, norm: str = "none", init: Callable[[nn.Module], None] | None = None
    ) -> None:
        """Declares the size ``features_dim`` of ``features``' output: makes the linear score head
        ``features_dim -> 1`` (spectral norm when ``norm == 'spectral'``), applies ``init`` to the network, head
        included, and then binds the conditioning module to ``features_dim``; the layers the conditioning adds
        there (a projection embedding, a class head) keep their own initialisation."""
        if self.features_dim is not None:
            raise RuntimeError(f"{type(self).__name__}.set_features: called twice; call it once in __init__")
        self.features_dim = int(features_dim)
        self.head = maybe_sn(nn.Linear(self.features_dim, 1), norm)
        if init is not None:
            init(self)
        self.conditioning.bind_features(self.features_dim)

    def features(self, x: Tensor) -> Tensor:
        """The conditioned input ``(N, *input_shape)`` to features ``(N, features_dim)``."""
        if "features" in self._modules:  # `self.features = nn.Sequential(...)` is hidden behind this method
            raise TypeError(f"{type(self).__name__}: a submodule named 'features' is hidden by Discriminator.features; "
                            "rename it")
        raise NotImplementedError(f"{type(self).__name__}: implement features(x), or override forward")

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Scores ``(N,)``; with an auxiliary classifier (AC-GAN) also class logits ``(N, K)``."""
        if self.features_dim is None:
            raise TypeError(
                f"{type(self).__name__}: call self.set_features(features_dim) in __init__ to declare the size of "
                "features(x) and make the score head, or override forward"
            )
        features = self.features(self.conditioning.condition_input(x, y))
        return squeeze_score(self.conditioning.condition_output(features, self.head(features), y))


def squeeze_score(out: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
    """``(N, 1)`` scores to ``(N,)``, keeping an auxiliary classifier's ``(N, K)`` logits beside them."""
    if isinstance(out, tuple):
        return out[0].squeeze(1), out[1]
    return out.squeeze(1)


def image_shape(channels: int, image_size: int) -> tuple[int, int, int]:
    return (int(channels), int(image_size), int(image_size))


def numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))
