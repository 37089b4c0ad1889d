"""The README's demo runs as a user runs it: a fresh process with its own embedded Ray."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_on_an_embedded_local_ray():
    result = subprocess.run([sys.executable, str(ROOT / 'examples' / 'quickstart.py')],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'set_parallel(backend="ray"): 1000 elements, first five [2, 4, 6, 8, 10]'
    assert 'the maps ran in Ray worker processes' in lines[1]
    assert 'passages' in lines[2] and 'on Ray actors' in lines[2]
    assert 'failed on element #3 (3): ZeroDivisionError' in result.stdout
    assert 'Empty(value=3' in result.stdout
    # quiet: no Ray start-up banner or warnings in the user's terminal
    assert 'Started a local Ray instance' not in result.stdout + result.stderr
    assert 'WARNING' not in result.stderr, result.stderr
