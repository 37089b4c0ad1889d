"""A real two-node Ray cluster on this machine (see multinode_checks.py for the checks).

The checks run in a subprocess: this session already holds its own local Ray, and one
process holds one Ray connection at a time.
"""
import os

import pytest

from tests.support import ROOT


@pytest.mark.timeout(900)
def test_two_node_cluster_with_token_authentication(python_process):
    env = {**os.environ, 'RAY_AUTH_MODE': 'token'}
    # --noconftest: not the session's Ray of conftest.py, the checks connect to their cluster
    result = python_process('-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--no-header', '--noconftest',
                            '--timeout', '840', str(ROOT / 'tests' / 'multinode_checks.py'), env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert ' passed' in result.stdout and 'skipped' not in result.stdout
