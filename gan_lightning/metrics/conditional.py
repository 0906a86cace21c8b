"""Conditional-GAN metrics: does G draw the class it is asked for, and with how much variety?

- *Conditional accuracy*: a classifier trained on real data (``gan_lightning.metrics.classifier``) labels each
  sample; the score is the fraction labelled with the class that was requested.
- *Diversity ratio*: per class, the pixel spread of the samples relative to that of the real images of the
  class. A generator that collapses to one image per class scores ~0; one as varied as the data, ~1.

Images are ``(N, C, H, W)``, either uint8 0..255 (as ``sample`` writes them) or float in [-1, 1]; labels are
int64 ``(N,)``.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from gan_lightning.metrics.classifier import predict
from gan_lightning.errors import UserError
from gan_lightning.sampling.pixels import to_float


def _check_pair(images: Tensor, labels: Tensor, what: str) -> None:
    if labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise UserError(f"{what}: {images.shape[0]} images but labels of shape {tuple(labels.shape)}; "
                        "give one label per image")


def accuracy_by_class(predicted: Tensor, labels: Tensor) -> tuple[float, dict[int, float]]:
    """Overall and per-class agreement of predicted with requested labels, both ``(N,)``.

    overall = (1/N) sum_i [pred_i = y_i];  per_class[c] = sum_i [pred_i = y_i = c] / sum_i [y_i = c]
    for every class c that occurs in ``labels``.
    """
    if len(labels) == 0:
        raise UserError("conditional accuracy: no samples given")
    labels = labels.long().cpu()
    hit = predicted.long().cpu() == labels
    per_class = {int(c): float(hit[labels == c].double().mean()) for c in labels.unique().tolist()}
    return float(hit.double().mean()), per_class


def conditional_accuracy(classifier: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Fraction of ``images`` ``(N, C, H, W)`` that ``classifier`` assigns to the requested ``labels`` ``(N,)``.

    acc = (1/N) sum_i [argmax_k classifier(x_i)_k = y_i]. Batched, without gradients, in eval mode.
    """
    _check_pair(images, labels, "conditional accuracy")
    return accuracy_by_class(predict(classifier, images, batch_size), labels)[0]


def per_class_accuracy(classifier: nn.Module, images: Tensor, labels: Tensor,
                       batch_size: int = 500) -> dict[int, float]:
    """``{c: acc_c}``: conditional accuracy among the samples that asked for class c (classes in ``labels``)."""
    _check_pair(images, labels, "conditional accuracy")
    return accuracy_by_class(predict(classifier, images, batch_size), labels)[1]


def pixel_spread(images: Tensor) -> float:
    """Mean over pixels of the per-pixel standard deviation across images ``(N, ...)``, N >= 2, in float64.

    spread = (1/P) sum_p sqrt( (1/(N-1)) sum_i (x_ip - mean_i x_ip)^2 ), P = C * H * W.
    """
    x = to_float(images).double().flatten(1)
    return float(x.std(dim=0, correction=1).mean())


def diversity_ratio(samples: Tensor, labels: Tensor, real: Tensor, real_labels: Tensor,
                    classes: Optional[list[int]] = None) -> dict[int, float]:
    """Per class c: ``pixel_spread(samples of c) / pixel_spread(real images of c)``.

    ``samples`` ``(N, C, H, W)`` with ``labels`` ``(N,)``, ``real`` ``(M, C, H, W)`` with ``real_labels``
    ``(M,)``; uint8 images are mapped to [-1, 1] first, so the two sets may come in either form. Classes are
    those in ``labels`` unless ``classes`` is given; each needs at least two samples and two real images.
    1.0 when the samples vary per pixel as much as the data, 0.0 when a class always gets the same image.
    """
    _check_pair(samples, labels, "diversity ratio: samples")
    _check_pair(real, real_labels, "diversity ratio: real")
    if samples.shape[1:] != real.shape[1:]:
        raise UserError(f"diversity ratio: samples are {tuple(samples.shape[1:])} but real images "
                        f"{tuple(real.shape[1:])}; compare images of the same shape")
    labels, real_labels = labels.long().cpu(), real_labels.long().cpu()
    out = {}
    for c in (labels.unique().tolist() if classes is None else classes):
        fake_c, real_c = samples[labels == c], real[real_labels == c]
        if len(fake_c) < 2 or len(real_c) < 2:
            raise UserError(f"diversity ratio: class {c} has {len(fake_c)} samples and {len(real_c)} real images; "
                            "each needs at least 2")
        reference = pixel_spread(real_c)
        if reference == 0.0:
            raise UserError(f"diversity ratio: the real images of class {c} are all identical; the ratio is undefined")
        out[int(c)] = pixel_spread(fake_c) / reference
    return out
