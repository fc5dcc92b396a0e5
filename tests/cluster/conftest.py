"""The Ray tests: one local Ray for the session (2 CPUs, a small object store), each test
bounded in time; all of them skip, saying why, where Ray is not installed."""

from __future__ import annotations

import os
import signal

import pytest

LIMIT_S = 120  # any one Ray test


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed (pip install 'speakerdb[ray]')")
    return ray


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray for the session; yields its address (for child processes to join)."""
    ray = _ray()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ctx = ray.init(num_cpus=2, object_store_memory=300 * 2**20, include_dashboard=False,
                   log_to_driver=False)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(autouse=True)
def _bounded():
    """A test that runs past ``LIMIT_S`` fails (``TimeoutError``) instead of hanging."""

    def expire(signum, frame):
        raise TimeoutError(f"a Ray test ran past {LIMIT_S} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
