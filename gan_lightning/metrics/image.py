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

Add a metric with ``@register_metric("name")`` on a function ``(generated, reference, options) -> dict``.
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
from gan_lightning.runtime.files import atomic_write
from gan_lightning.errors import UserError
from gan_lightning.sampling.pixels import to_uint8
from gan_lightning.sampling.draw import draw_indices

METRICS: dict[str, Callable[..., dict[str, float]]] = {}


def register_metric(name: str) -> Callable:
    def add(fn: Callable) -> Callable:
        METRICS[name] = fn
        return fn

    return add


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
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Given(gen.shape[1]), reset_real_features=False, sync_on_compute=False)
    # float64 in, so that the result is not rounded back to float32 (torchmetrics returns the input dtype).
    fid.update(ref.double(), real=True)
    fid.update(gen.double(), real=False)
    return float(fid.compute())


@register_metric("fid")
def _fid(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
    return {"fid": frechet_distance(gen.features, ref.features)}


@register_metric("kid")
def _kid(gen: FeatureSet, ref: FeatureSet, kid_subsets: int = 100, kid_subset_size: int = 1000, **_: object) -> dict[str, float]:
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
    from torch_fidelity.metric_prc import prc_features_to_metric

    out = prc_features_to_metric(
        gen.features.float(), ref.features.float(), prc_neighborhood=pr_neighborhood, prc_batch_size=10000,
        save_cpu_ram=False, verbose=False,
    )
    return {"precision": float(out["precision"]), "recall": float(out["recall"])}


@register_metric("accuracy")
def _accuracy(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
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


@register_metric("class_histogram")
def _class_histogram(gen: FeatureSet, ref: FeatureSet, **_: object) -> dict[str, float]:
    """Collapse monitor for unconditional models: how evenly the classifier spreads the samples over classes.
    ``class_entropy`` is the entropy of the predicted-class histogram divided by log K (1 = uniform)."""
    if gen.logits is None:
        raise UserError("metrics: 'class_histogram' needs an extractor with class logits")
    k = gen.logits.shape[1]
    p = torch.bincount(gen.logits.argmax(1), minlength=k).double() / len(gen.logits)
    nz = p[p > 0]
    return {"classes_covered": float((p > 0).sum()), "class_entropy": float(-(nz * nz.log()).sum()) / math.log(k)}


def compute(names: list[str], gen: FeatureSet, ref: FeatureSet, **options: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        out.update(METRICS[name](gen, ref, **options))
    return out


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
def extract(extractor: nn.Module, images: Tensor, batch_size: int = 500) -> tuple[Tensor, Optional[Tensor]]:
    feats, logits = [], []
    device = next(iter(extractor.buffers()), next(iter(extractor.parameters()), torch.empty(0))).device
    for lo in range(0, len(images), batch_size):
        batch = images[lo : lo + batch_size].to(device)
        feats.append(extractor(batch).float().cpu())
        lg = extractor.logits(batch)
        if lg is not None:
            logits.append(lg.float().cpu())
    return torch.cat(feats), (torch.cat(logits) if logits else None)


@torch.no_grad()
def generated_features(model, extractor: nn.Module, num_samples: int, seed: int = 0, batch_size: int = 500,
                       real: Optional[Callable[[int], Tensor]] = None) -> FeatureSet:
    """Features of samples ``0 .. num_samples-1`` of the seeded draw, this process drawing its share. The
    conditions are the model's seeded conditions (``conditioning.conditions``; ``real(n)`` gives real samples
    for conditions made from images); class labels, where the condition names them, come along."""
    rank, world = _world()
    index = torch.arange(rank, num_samples, world)
    conditioning = model.conditioning
    all_conditions = conditioning.conditions(num_samples, real)
    feats, logits, labels = [], [], []
    for lo in range(0, len(index), batch_size):
        idx = index[lo : lo + batch_size]
        c = all_conditions[idx] if all_conditions is not None else None
        images = to_uint8(draw_indices(model, idx, seed, c))
        f, lg = extract(extractor, images, batch_size)
        feats.append(f)
        logits.append(lg)
        y = conditioning.class_labels(c)
        if y is not None:
            labels.append(y)
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
                       cache_dir: Optional[str] = None) -> tuple[FeatureSet, bool]:
    """Reference features from the cache, or computed from ``images_fn()`` (uint8 images, labels) and cached.
    Returns the set and whether it came from the cache."""
    path = reference_cache_path(cache_dir=cache_dir, **key)
    if path.is_file():
        data = torch.load(path, map_location="cpu", weights_only=True)
        return FeatureSet(data["features"], data.get("logits"), data.get("labels")), True
    images, labels = images_fn()
    feats, logits = extract(extractor, images)
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
