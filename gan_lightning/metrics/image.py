"""Image metrics computed exactly: FID, KID, Inception Score, precision/recall, conditional accuracy and
intra-class FID, through torchmetrics and torch-fidelity.

How the numbers are made, so that they do not depend on the number of processes:

- sample ``i`` (of ``num_samples``) gets its noise from ``(seed, i)`` and, for a class-conditional model, the
  label ``i mod K``; process ``r`` of ``W`` draws the indices ``i ≡ r (mod W)``, so no sample is drawn twice and
  no padding duplicates enter;
- samples are rounded to uint8 as ``sample`` writes them, features are gathered from all processes and sorted
  by sample index, and every metric is computed from that one ordered set on every process (torchmetrics' own
  cross-process sync is off: it would count the gathered set once per process); FID statistics are float64;
- reference features (real images) are computed once per (data set, split, extractor, count, seed) and cached
  on disk, written atomically.

What the keys say (``named_metrics``): ``compute`` returns the bare names (``fid``, ``kid``, ...); the callbacks
and ``evaluate`` report them through ``metric_key``, which appends the feature space's tag to every value that
depends on it (FID, KID, IS, precision/recall, intra-FID: ``fid_mnist`` for the MNIST classifier, plain ``fid``
only for Inception-v3) and ``_refined`` to values of samples refined by D (``model.refinement``); plain keys
always describe the generator's own samples. Conditional accuracy and the class histogram are decisions of the
classifier, not distances in its feature space, and keep their names.

Add a metric with ``@register_metric("name")`` on a function ``(generated, reference, options) -> dict``
(``feature_space=False`` when its values do not depend on the extractor's features).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gan_lightning.runtime.cache import cache_root
from gan_lightning.runtime.console import progress
from gan_lightning.runtime.files import atomic_write
from gan_lightning.errors import UserError
from gan_lightning.sampling.pixels import to_uint8
from gan_lightning.sampling.draw import draw_indices

METRICS: dict[str, Callable[..., dict[str, float]]] = {}
# The metrics whose values are distances or scores in the extractor's feature space: their keys carry its tag.
FEATURE_SPACE: set[str] = set()


def register_metric(name: str, feature_space: bool = True) -> Callable:
    """Register ``fn(generated, reference, **options) -> {key: value}`` under ``name``; ``feature_space``: its
    values depend on the extractor (and are tagged with it in reported keys)."""

    def add(fn: Callable) -> Callable:
        METRICS[name] = fn
        if feature_space:
            FEATURE_SPACE.add(name)
        else:
            FEATURE_SPACE.discard(name)
        return fn

    return add


def metric_key(key: str, tag: str = "", refined: bool = False) -> str:
    """The reported name of a value ``key`` of a feature-space metric: ``fid`` -> ``fid_<tag>`` (unchanged for
    Inception-v3, whose tag is empty), then ``_refined`` for D-refined samples. For a metric outside the feature
    space pass ``tag=""``."""
    return key + (f"_{tag}" if tag else "") + ("_refined" if refined else "")


def named_metrics(names: list[str], gen: "FeatureSet", ref: "FeatureSet", tag: str, refined: bool = False,
                  progress_desc: Optional[str] = None, leave: bool = True, **options: object) -> dict[str, float]:
    """``compute`` with the reported keys (``metric_key``): feature-space values tagged with ``tag``, every value
    suffixed ``_refined`` when ``refined``."""
    out: dict[str, float] = {}
    with progress(len(names), progress_desc or "", unit="metric", enabled=_shows(progress_desc), leave=leave) as bar:
        for name in names:
            values = METRICS[name](gen, ref, **options)
            out.update({metric_key(k, tag if name in FEATURE_SPACE else "", refined): v for k, v in values.items()})
            bar.update(1)
    return out


@dataclass
class FeatureSet:
    """Features ``(N, F)``, logits ``(N, K)`` or None, and labels ``(N,)`` or None of one ordered set of images."""

    features: Tensor
    logits: Optional[Tensor] = None
    labels: Optional[Tensor] = None

    def subset(self, mask: Tensor) -> "FeatureSet":
        pick = lambda t: None if t is None else t[mask]  # noqa: E731
        return FeatureSet(self.features[mask], pick(self.logits), pick(self.labels))


class _Given(nn.Module):
    """Lets a torchmetrics image metric take features computed beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def check_metrics(names: list[str], field: str = "metrics") -> None:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"{field}: unknown metric(s) {unknown}; choose from {sorted(METRICS)}")


def frechet_distance(gen: Tensor, ref: Tensor) -> float:
    """FID (Heusel et al. 2017): ``|mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` of the two feature sets,
    by torchmetrics' ``FrechetInceptionDistance`` in float64 on features computed beforehand (so torchmetrics'
    own resizing and Inception network are not used; the extractor's protocol applies). Unbiased covariances."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Given(gen.shape[1]), reset_real_features=False, sync_on_compute=False)
    # float64 in, so that the result is not rounded back to float32 (torchmetrics returns the input dtype).
    fid.update(ref.double(), real=True)
    fid.update(gen.double(), real=False)
    return float(fid.compute())


@register_metric("fid")
def _fid(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
    """``fid``: ``frechet_distance`` of all generated and all reference features."""
    return {"fid": frechet_distance(gen.features, ref.features)}


@register_metric("kid")
def _kid(gen: FeatureSet, ref: FeatureSet, kid_subsets: int = 100, kid_subset_size: int = 1000, **_: object) -> dict[str, float]:
    """``kid``, ``kid_std``: KID (Binkowski et al. 2018), the unbiased MMD^2 with the cubic polynomial kernel
    ``(x.y / d + 1)^3``, mean and standard deviation over ``kid_subsets`` random subsets of ``kid_subset_size``
    (capped at the smaller set), by torchmetrics' ``KernelInceptionDistance`` on the given features."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(kid_subset_size, len(gen.features), len(ref.features))
    # KID's subsets are drawn from the global RNG: seed it so the value is a function of the features only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        kid = KernelInceptionDistance(
            feature=_Given(gen.features.shape[1]), subsets=kid_subsets, subset_size=size, sync_on_compute=False
        )
        kid.update(ref.features, real=True)
        kid.update(gen.features, real=False)
        mean, std = kid.compute()
    return {"kid": float(mean), "kid_std": float(std)}


@register_metric("is")
def _inception_score(gen: FeatureSet, ref: FeatureSet, is_splits: int = 10, **_: object) -> dict[str, float]:
    """``is``, ``is_std``: Inception Score (Salimans et al. 2016), ``exp E_x KL(p(y|x) || p(y))`` over
    ``is_splits`` splits, by torchmetrics' ``InceptionScore`` on the extractor's logits (the 1008-way logits of
    torch-fidelity's Inception-v3, or a domain classifier's, which gives a different, domain score)."""
    from torchmetrics.image.inception import InceptionScore

    if gen.logits is None:
        raise UserError("metrics: 'is' needs an extractor with class logits")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # InceptionScore shuffles before splitting
        score = InceptionScore(feature=_Given(gen.logits.shape[1]), splits=is_splits, sync_on_compute=False)
        score.update(gen.logits)
        mean, std = score.compute()
    return {"is": float(mean), "is_std": float(std)}


@register_metric("pr")
def _precision_recall(gen: FeatureSet, ref: FeatureSet, pr_neighborhood: int = 3, **_: object) -> dict[str, float]:
    """``precision``, ``recall``: improved precision and recall (Kynkaanniemi et al. 2019), k-NN manifolds with
    ``k = pr_neighborhood``, by torch-fidelity's ``prc_features_to_metric`` on the given features."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    out = prc_features_to_metric(
        gen.features.float(), ref.features.float(), prc_neighborhood=pr_neighborhood, prc_batch_size=10000,
        save_cpu_ram=False, verbose=False,
    )
    return {"precision": float(out["precision"]), "recall": float(out["recall"])}


@register_metric("accuracy", feature_space=False)
def _accuracy(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
    """``accuracy``: the fraction of samples whose argmax class logit is the class they were drawn for."""
    if gen.labels is None or gen.logits is None:
        raise UserError("metrics: 'accuracy' needs a class-conditional model and an extractor with class logits")
    return {"accuracy": float((gen.logits.argmax(1) == gen.labels).double().mean())}


@register_metric("intra_fid")
def _intra_fid(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
    """Mean over classes of the FID between the samples of a class and the real images of that class."""
    if gen.labels is None or ref.labels is None:
        raise UserError("metrics: 'intra_fid' needs a class-conditional model and labelled reference data")
    values = [
        frechet_distance(gen.features[gen.labels == c], ref.features[ref.labels == c])
        for c in gen.labels.unique().tolist()
        if (gen.labels == c).sum() > 1 and (ref.labels == c).sum() > 1
    ]
    return {"intra_fid": float(sum(values) / len(values))} if values else {}


@register_metric("class_histogram", feature_space=False)
def _class_histogram(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
    """Collapse monitor for unconditional models: how evenly the classifier spreads the samples over classes.
    ``class_entropy`` is the entropy of the predicted-class histogram divided by log K (1 = uniform)."""
    if gen.logits is None:
        raise UserError("metrics: 'class_histogram' needs an extractor with class logits")
    k = gen.logits.shape[1]
    p = torch.bincount(gen.logits.argmax(1), minlength=k).double() / len(gen.logits)
    nz = p[p > 0]
    return {"classes_covered": float((p > 0).sum()), "class_entropy": float(-(nz * nz.log()).sum()) / math.log(k)}


def compute(names: list[str], gen: FeatureSet, ref: FeatureSet, progress_desc: Optional[str] = None,
            leave: bool = True, **options: object) -> dict[str, float]:
    """The metrics ``names`` of ``gen`` against ``ref``, under their bare keys (``fid``, ``kid``, ...; see
    ``named_metrics`` for the reported ones); a bar over the metrics when ``progress_desc`` is given."""
    out: dict[str, float] = {}
    with progress(len(names), progress_desc or "", unit="metric", enabled=_shows(progress_desc), leave=leave) as bar:
        for name in names:
            out.update(METRICS[name](gen, ref, **options))
            bar.update(1)
    return out


def _shows(progress_desc: Optional[str]) -> bool:
    """A bar is drawn for a described step, by process 0 only."""
    return progress_desc is not None and _world()[0] == 0


# ---------------------------------------------------------------------------------------------- distribution
def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_sorted(index: Tensor, *tensors: Optional[Tensor]) -> list[Optional[Tensor]]:
    """All processes' rows, ordered by ``index``; exact (uneven shares are padded for transport and trimmed)."""
    _, world = _world()
    if world == 1:
        order = index.argsort()
        return [None if t is None else t[order] for t in tensors]
    device = index.device
    count = torch.tensor([len(index)], device=device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    most = int(max(c.item() for c in counts))

    def gather(t: Tensor) -> Tensor:
        padded = torch.zeros((most,) + tuple(t.shape[1:]), dtype=t.dtype, device=device)
        padded[: len(t)] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts)])

    order = gather(index).argsort()
    return [None if t is None else gather(t)[order] for t in tensors]


@torch.no_grad()
def extract(extractor: nn.Module, images: Tensor, batch_size: int = 500, progress_desc: Optional[str] = None,
            leave: bool = True) -> tuple[Tensor, Optional[Tensor]]:
    """Features and logits (or None) of uint8 ``images``, ``batch_size`` at a time; a bar when ``progress_desc``."""
    feats, logits = [], []
    device = next(iter(extractor.buffers()), next(iter(extractor.parameters()), torch.empty(0))).device
    with progress(len(images), progress_desc or "", enabled=_shows(progress_desc), leave=leave) as bar:
        for lo in range(0, len(images), batch_size):
            batch = images[lo : lo + batch_size].to(device)
            feats.append(extractor(batch).float().cpu())
            lg = extractor.logits(batch)
            if lg is not None:
                logits.append(lg.float().cpu())
            bar.update(len(batch))
    return torch.cat(feats), (torch.cat(logits) if logits else None)


@torch.no_grad()
def generated_features(model, extractor: nn.Module, num_samples: int, seed: int = 0, batch_size: int = 500,
                       real: Optional[Callable[[int], Tensor]] = None, refine: bool = False,
                       progress_desc: Optional[str] = None, leave: bool = True) -> FeatureSet:
    """Features of samples ``0 .. num_samples-1`` of the seeded draw, this process drawing its share. The
    conditions are the model's seeded conditions (``conditioning.conditions``; ``real(n)`` gives real samples
    for conditions made from images); class labels, where the condition names them, come along. The generator's
    own samples, or with ``refine=True`` those refined by ``model.refinement``. A bar over this process's share
    (process 0's) when ``progress_desc`` is given."""
    rank, world = _world()
    index = torch.arange(rank, num_samples, world)
    conditioning = model.conditioning
    all_conditions = conditioning.conditions(num_samples, real)
    feats, logits, labels = [], [], []
    with progress(len(index), progress_desc or "", enabled=_shows(progress_desc), leave=leave) as bar:
        for lo in range(0, len(index), batch_size):
            idx = index[lo : lo + batch_size]
            c = all_conditions[idx] if all_conditions is not None else None
            images = to_uint8(draw_indices(model, idx, seed, c, refine=refine))
            f, lg = extract(extractor, images, batch_size)
            feats.append(f)
            logits.append(lg)
            y = conditioning.class_labels(c)
            if y is not None:
                labels.append(y)
            bar.update(len(idx))
    f = torch.cat(feats) if feats else torch.empty(0, extractor.num_features)
    lg = torch.cat(logits) if logits and logits[0] is not None else None
    y = torch.cat(labels) if labels else None
    f, lg, y = gather_sorted(index.to(_comm_device()), f.to(_comm_device()), _to(lg), _to(y))
    return FeatureSet(f.cpu(), None if lg is None else lg.cpu(), None if y is None else y.cpu())


def _comm_device() -> torch.device:
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _to(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.to(_comm_device())


# ---------------------------------------------------------------------------------------------- reference cache
def reference_cache_path(dataset: str, split: str, extractor: str, count: int, seed: int,
                         cache_dir: Optional[str] = None) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{dataset}-{split}-{extractor}-n{count}-s{seed}")
    base = Path(cache_dir) if cache_dir else cache_root() / "reference"
    return base / f"{safe}.pt"


def reference_features(images_fn: Callable[[], tuple[Tensor, Tensor]], extractor: nn.Module, key: dict,
                       cache_dir: Optional[str] = None, progress_desc: Optional[str] = None,
                       leave: bool = True) -> tuple[FeatureSet, bool]:
    """Reference features from the cache, or computed from ``images_fn()`` (uint8 images, labels) and cached
    (with a bar over the images when ``progress_desc`` is given). Returns the set and whether it came from the
    cache. The set may hold fewer images than ``key["count"]`` when the data has fewer."""
    path = reference_cache_path(cache_dir=cache_dir, **key)
    if path.is_file():
        data = torch.load(path, map_location="cpu", weights_only=True)
        return FeatureSet(data["features"], data.get("logits"), data.get("labels")), True
    images, labels = images_fn()
    feats, logits = extract(extractor, images, progress_desc=progress_desc, leave=leave)
    rank, _ = _world()
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            torch.save({"features": feats, "logits": logits, "labels": labels, "key": key}, f)
    return FeatureSet(feats, logits, labels), False


def data_key(datamodule, split: str = "train") -> str:
    """A cache key naming the data a reference set comes from (name, shape and a digest of its options)."""
    name = getattr(datamodule, "name", type(datamodule).__name__)
    shape = "x".join(map(str, getattr(datamodule, "data_shape", ())))
    opts = repr(sorted((k, v) for k, v in vars(datamodule).items() if isinstance(v, (int, float, str)) and k not in
                       ("batch_size", "num_workers", "draws_per_step")))
    return f"{name}-{shape}-{hashlib.sha1(opts.encode()).hexdigest()[:8]}"


def real_uint8(datamodule, count: int, seed: int) -> tuple[Tensor, Tensor]:
    x, y = datamodule.real_samples(count, seed=seed)
    return to_uint8(x), y.long()
