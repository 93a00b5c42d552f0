"""The product stands alone: nothing outside study/ imports study, nothing outside benchmarks/
imports benchmarks, and no product module imports the tests. (.ci/run also deletes study/ and
benchmarks/ from a copy and runs the product's tests there.)"""
import ast
import os

from conftest import ROOT

PRODUCT_DIRS = ("configs", "datasets", "docs", "models", "tests", "tools", "utils")


def imported_modules(path):
    """Top-level package of every module `path` imports (import x.y, from x.y import z)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            yield str(node.args[0].value).split(".")[0]


def python_files(folders):
    for top in folders:
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            yield from (os.path.join(dirpath, n) for n in sorted(names) if n.endswith(".py"))


def product_files():
    yield from (os.path.join(ROOT, n) for n in sorted(os.listdir(ROOT)) if n.endswith(".py"))
    yield from python_files(PRODUCT_DIRS)


def test_the_product_imports_neither_the_study_nor_the_benchmarks():
    bad = [f"{os.path.relpath(path, ROOT)} imports {m}" for path in product_files()
           for m in imported_modules(path) if m in ("study", "benchmarks")]
    assert not bad, bad


def test_only_tests_and_benchmarks_import_the_tests():
    bad = [f"{os.path.relpath(path, ROOT)} imports tests" for path in product_files()
           if not os.path.relpath(path, ROOT).startswith("tests" + os.sep)
           and os.path.basename(path) != "conftest.py" and "tests" in imported_modules(path)]
    assert not bad, bad


def test_the_import_check_sees_an_import(tmp_path):
    """The check reads every form of import a module may use."""
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom study.report import x\ndef g():\n    import benchmarks.bench_train\n"
                 "    importlib.import_module('study.leak')\nfrom . import sibling\n")
    assert list(imported_modules(str(f))) == ["os", "study", "benchmarks", "study"]
    assert os.path.join(ROOT, "train.py") in set(product_files())
    assert os.path.join(ROOT, "tools", "check_data.py") in set(product_files())
