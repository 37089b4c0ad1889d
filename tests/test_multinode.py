"""A real two-node Ray cluster on this machine (see multinode_checks.py for the checks).

The checks run in a subprocess: this session already holds its own local Ray, and one
process holds one Ray connection at a time.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_two_node_cluster_with_token_authentication():
    env = {**os.environ, 'RAY_AUTH_MODE': 'token'}
    env.pop('RAY_ADDRESS', None)
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--no-header',
         str(ROOT / 'tests' / 'multinode_checks.py')],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert ' passed' in result.stdout and 'skipped' not in result.stdout
