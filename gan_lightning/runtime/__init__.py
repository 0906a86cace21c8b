"""Run plumbing: the one door to private Lightning and torch names (``compat``), atomic checkpoints and
preemption (``checkpointing``), atomic file writes (``files``), the run's loggers (``loggers``), console quieting
(``console``), random streams, provenance and resume checks (``resume``), pickling of parametrized networks
(``parametrized``) and the cache folder (``cache``)."""
