"""What every test shares.

* Tiers: tests marked ``slow`` (a training run or a command-line tool in a subprocess, or more
  than a few seconds) or ``ddp`` (several processes) are left out of the quick tier,
  ``pytest -m "not slow and not ddp"``; a plain ``pytest`` (CI) runs them all.
* ``RTINST_CACHE`` points at a temporary folder for the whole session, so that generated data
  (the shapes dataset) of this process and of every subprocess stays out of the user's
  ``~/.cache/rtinst``; it is removed at the end.
* ``coco_mini``: the real COCO images beside the repository (``shared_files``); a test using it
  is skipped, saying so, where the folder is absent.
"""
import os
import shutil
import tempfile

import pytest
from shared_files import COCO_MINI, require_shared


def pytest_configure(config):
    config.rtinst_cache = tempfile.mkdtemp(prefix="rtinst-test-cache-")
    os.environ["RTINST_CACHE"] = config.rtinst_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "rtinst_cache", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def coco_mini():
    """The COCO train2017 mini set: ``annotations/instances_train2017.json``, ``train2017/``."""
    return require_shared(COCO_MINI)
