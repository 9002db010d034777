"""The packages install and import; the codec registry names every task."""

import importlib

import pytest

import tasks


@pytest.mark.parametrize("pkg", ["vision_banana", "tasks", "data_mix", "eval", "launch"])
def test_packages_import(pkg):
    importlib.import_module(pkg)


def test_registry_unknown_name_is_clear():
    with pytest.raises(KeyError, match="unknown task codec 'nope'"):
        tasks.get("nope")
