"""`import tokenloom.metrics` must stay light: no torch, no model code."""

import subprocess
import sys


def test_importing_metrics_loads_neither_torch_nor_other_tokenloom_packages():
    code = (
        "import sys, tokenloom.metrics\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "ours = sorted(m for m in sys.modules if m.startswith('tokenloom'))\n"
        "others = [m for m in ours if m not in ('tokenloom', 'tokenloom.errors', 'tokenloom.private_apis') "
        "and not m.startswith('tokenloom.metrics')]\n"
        "print(bad, others)\n"
        "sys.exit(1 if bad or others else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
