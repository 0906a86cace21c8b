"""A domain classifier: a small CNN trained on the real data, used offline where Inception-v3 is unavailable.

It serves two metrics: conditional accuracy (does G draw the class it was asked for?) and, through
``DomainClassifier.features``, FID/KID in a feature space that knows the domain. It trains in a few minutes on
a 2-core CPU and is cached on disk, one checkpoint per data set:

    python -m gan_lightning classifier --data MNIST --root data      # ~99% test accuracy (data/MNIST/raw/...)

writes ``~/.cache/gan_lightning/classifiers/MNIST.pt`` (``$GAN_LIGHTNING_CACHE/classifiers/MNIST.pt`` when that
variable is set), which ``get_classifier("MNIST", root)`` then loads instead of training again.

- ``network``: ``DomainClassifier`` and ``predict``;
- ``datasets``: the data sets it knows (``DATASETS``, ``check_dataset``) and their real splits (``load_split``);
- ``storage``: ``save_classifier`` / ``load_classifier`` and where the cache keeps them (``classifier_path``);
- ``training``: augmentation, ``train_classifier`` and the cache's ``get_classifier`` (trains on a miss).

Each imports only those above it.
"""

from gan_lightning.metrics.classifier.datasets import DATASETS, as_root_flag, check_dataset, load_split
from gan_lightning.metrics.classifier.network import DomainClassifier, predict
from gan_lightning.metrics.classifier.storage import classifier_path, load_classifier, save_classifier
from gan_lightning.metrics.classifier.training import get_classifier, train_classifier

__all__ = [
    "DATASETS",
    "DomainClassifier",
    "as_root_flag",
    "check_dataset",
    "classifier_path",
    "get_classifier",
    "load_classifier",
    "load_split",
    "predict",
    "save_classifier",
    "train_classifier",
]
