"""Fixtures shared by the whole test-suite.

``check_policy`` is the common policy battery (``tests/policies/battery.py``), offered as a fixture
so that tests anywhere in the tree can run it on their own policies without caring how pytest
names the test packages::

    def test_my_policy(check_policy):
        check_policy(lambda seed: MyPolicy(hidden=8, seed=seed))
"""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture(scope="session")
def check_policy():
    """The policy battery ``check_policy(factory, ...)``; see tests/policies/battery.py."""
    for name in ("tests.policies.battery", "policies.battery"):
        try:
            return importlib.import_module(name).check_policy
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rpartition(".")[0], name.partition(".")[0]):
                raise  # the battery exists but one of its imports is missing
            continue
    raise RuntimeError("cannot import tests/policies/battery.py")
