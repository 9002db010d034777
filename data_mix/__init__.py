"""Datasets and mixtures: sources -> records -> examples -> per-process batches.

    from data_mix import Mixture, make_iterator, mixtures
    mix = Mixture(mixtures.get("synthetic_demo"))
    ex = mix.example(0)                     # {image?, prompt, target, task, meta}
    it = make_iterator(mix, global_batch_size=32, process_index=0, process_count=1,
                       tokenize=tok, task_names=[...])

Modules: `sources` and `synthetic` (records), `transforms` (geometry on all fields),
`builders` (record -> example per task), `degradations` (restoration inputs), `mixture`
(weighted grain mixtures), `iterator` (per-process batches), `mixtures` (named configs),
`preview` (CLI grid of examples).

The names below are imported lazily: `import data_mix.synthetic` (e.g. in a grain worker)
must not pay for grain and jax.
"""

import importlib

_EXPORTS = {
    "Mixture": "data_mix.mixture",
    "MixtureIterator": "data_mix.iterator",
    "BadRecordError": "data_mix.mixture",
    "make_iterator": "data_mix.iterator",
    "default_config": "data_mix.mixture",
    "source_config": "data_mix.mixture",
    "build": "data_mix.builders",
}
_MODULES = ("builders", "degradations", "iterator", "mixture", "mixtures", "transforms",
            "preview")

__all__ = sorted(_EXPORTS) + list(_MODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"data_mix.{name}")
    raise AttributeError(f"module 'data_mix' has no attribute {name!r}")
