"""The worked examples in the metrics docstrings are true."""

import doctest
import importlib

import pytest

MODULES = ["base", "bleu", "chrf", "diversity", "lcs", "text", "rouge", "bootstrap", "porter"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    module = importlib.import_module(f"tokenloom.metrics.{name}")
    failures, _ = doctest.testmod(module)
    assert failures == 0
