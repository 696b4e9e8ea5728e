"""Installs :mod:`support.scaleout_hook` in ``runyard`` subprocesses of a scale-out test run."""

import os

if os.environ.get("RUNYARD_TEST_POSTGRES_URL") and os.environ.get("RUNYARD_TEST_SCALEOUT_SESSION"):
    from support.scaleout_hook import install

    install()
