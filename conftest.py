import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.abspath(__file__))
os.chdir(ROOT)  # the configs' relative paths (pytest.ini puts ROOT on sys.path)

# the benchmarks' real list and annotation files (docs/data.md); AVGN_METADATA overrides
METADATA = os.environ.get("AVGN_METADATA", os.path.join(os.path.dirname(ROOT), "shared", "metadata"))
_SCRIPTS = {}


@pytest.fixture
def metadata_dir():
    if not os.path.isdir(METADATA):
        pytest.skip(f"real metadata not found at {METADATA}")
    return METADATA


def load_script(name):
    """A script of the repository root (test.py, demo.py) as a module, loaded by its path:
    `import test` may load Python's own test package."""
    if name not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"script_{name[:-3]}",
                                                      os.path.join(ROOT, name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[name] = module
    return _SCRIPTS[name]


@pytest.fixture
def script():
    """script("test.py").main([...]): the CLI, called in-process as users call it."""
    return load_script
