"""Pure cores import nothing of Django or the project's apps: they run anywhere numpy does."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["territories.rules", "territories.geodata"])
def test_pure_core_imports_no_django(module):
    code = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'rest_framework', 'accounts', 'quotas', 'analytics', 'config'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    # territories/__init__.py is empty, so importing the submodule loads no Django either.
    result = subprocess.run([sys.executable, "-c", code, module], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
