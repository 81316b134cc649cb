"""The examples in the main docstrings run as written."""
import doctest
import importlib

import pytest

MODULES = ["rlepose", "rlepose.losses", "rlepose.losses.rle", "rlepose.losses.baselines",
           "rlepose.losses.calibrated", "rlepose.inference.predictor", "rlepose.inference.loading",
           "rlepose.flows.spline"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name.startswith("rlepose.losses") or name == "rlepose":
        assert result.attempted > 0  # the loss modules and the package show code that runs
