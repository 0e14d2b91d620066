"""Dependencies inside ``helpers`` point one way: no module imports itself through others.

Every ``import``/``from ... import`` of a ``helpers`` module anywhere in a module (at the top
or inside a function) is an edge; a cycle in that graph fails the test, with its path.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "helpers"


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(src: Path = SRC) -> dict:
    """``{module: set of helpers modules it imports}`` over every .py file below ``src``."""
    modules = {_module_name(p, src): p for p in src.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import: resolve against the package
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_a_function_level_cycle(tmp_path):
    pkg = tmp_path / "helpers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from helpers.b import X\n")
    (pkg / "b.py").write_text("def f():\n    from helpers import a\n")
    assert find_cycle(import_graph(pkg)) == ["helpers.a", "helpers.b", "helpers.a"]


def test_helpers_has_no_import_cycle():
    graph = import_graph()
    assert "helpers.power_summary" in graph and len(graph) > 20
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# Modules the notebooks import at the top load no heavy statistics library: scipy.stats
# (0.5 s), statsmodels and pingouin are imported where they are used, so a notebook pays for
# them only if it calls them. Their quantiles come from scipy.special, to the bit.
# (helpers.report loads scipy.stats -- the noncentral chi-square of its prediction interval of
# Cramér's V, in helpers.consistency -- only when it builds the replication table, so notebook 02
# can format its tables with it.)
LIGHT_MODULES = ["helpers.describe", "helpers.agreement", "helpers.figures", "helpers.figures_patterns", "helpers.report",
                 "helpers.multiverse", "helpers.available", "helpers.models", "helpers.episodes",
                 "helpers.sudden", "helpers.notebook"]
HEAVY = ["scipy.stats", "statsmodels", "pingouin", "nbconvert"]


def test_notebook_modules_do_not_import_heavy_libraries():
    import subprocess
    import sys

    code = (f"import sys\nimport {', '.join(LIGHT_MODULES)}\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_notebook_03_models_are_fitted_by_statsmodels_and_pingouin():
    # issue 17: the paper's regression (classic and HC3) is statsmodels' formula API, the
    # chi-square tests and the mixed ANOVA are pingouin's -- loaded when the models are fitted
    import subprocess
    import sys

    code = f"""import sys
import numpy as np, pandas as pd
from helpers import available, models
ids = [f"p{{i}}" for i in range(12)]
patterns = pd.DataFrame({{"participant_id": ids, "pattern": ["no_rupture", "repaired", "unrepaired"] * 4}})
rng = np.random.default_rng(0)
pre = rng.normal(30, 5, 12)
participants = pd.DataFrame({{"participant_id": ids, "pss_i_pre": pre, "pss_i_post": pre - 5 + rng.normal(0, 3, 12),
                             "pss_sr_pre": pre, "pss_sr_post": pre - 4 + rng.normal(0, 3, 12)}})
assert len(models.outcome_regression(patterns, participants)) == 7
print(sorted(m for m in ("statsmodels", "pingouin") if m in sys.modules))
assert len(models.mixed_anova_prepost(patterns, participants)) == 3
print(sorted(m for m in ("statsmodels.formula.api", "pingouin") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["['statsmodels']", "['pingouin', 'statsmodels.formula.api']"], out.stdout


def test_special_quantiles_equal_scipy_stats_to_the_bit():
    import numpy as np
    from scipy import special, stats

    from helpers.figures import normal_qq

    for q in (0.025, 0.5, 0.975, 0.995):
        assert special.ndtri(q) == stats.norm.ppf(q)
        for df in (1, 2, 3, 10, 79, 115):
            assert special.stdtrit(df, q) == stats.t.ppf(q, df)
            assert 2 * special.gammaincinv(df / 2, q) == stats.chi2.ppf(q, df)
    x = np.random.default_rng(1).normal(size=50)
    (osm, osr), (slope, intercept, _) = stats.probplot(x, dist="norm")
    got = normal_qq(x)
    assert np.array_equal(got[0], osm) and np.array_equal(got[1], osr)
    assert (got[2], got[3]) == (slope, intercept)


# --------------------------------------------------------------------------------------------
# the layers of the README's Architecture table
# --------------------------------------------------------------------------------------------
README = SRC.parents[1] / "README.md"


def readme_layers(readme: Path = README) -> dict:
    """``{module: layer index}`` from the README's Architecture table (first row = 0)."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Architecture"):]
    section = section[:section.index("\n## ", 4)]
    layers = {}
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    for i, row in enumerate(rows):
        for module in row.split("|")[2].replace("`", "").split(","):
            layers["helpers." + module.strip()] = i
    return layers


def upward_imports(graph: dict, layers: dict) -> list:
    """Imports that point up the table: ``(importer, imported)``. A private submodule
    (``helpers.data._cells``) is in its package's row."""
    def layer(module):
        while module not in layers and "." in module[len("helpers."):]:
            module = module.rsplit(".", 1)[0]
        return layers[module]
    return sorted((a, b) for a, deps in graph.items() if a != "helpers"
                  for b in deps if b != "helpers" and layer(b) > layer(a))


def test_every_module_is_in_a_row_of_the_readme_table():
    layers = readme_layers()
    graph = import_graph()
    missing = sorted(m for m in graph if m != "helpers" and m not in layers and m.rsplit(".", 1)[0] not in layers)
    assert not missing, f"modules in no row of the README's Architecture table: {missing}"
    assert not set(layers) - set(graph), f"rows name modules that do not exist: {sorted(set(layers) - set(graph))}"


def test_imports_point_down_the_layers():
    bad = upward_imports(import_graph(), readme_layers())
    assert not bad, "imports against the layer order (README Architecture): " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "helpers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from helpers import high\n")
    (pkg / "high.py").write_text("from helpers import low\n")
    readme = tmp_path / "README.md"
    readme.write_text("## Architecture\n\n| layer | modules | holds |\n|---|---|---|\n| a | `low` | x |\n"
                      "| b | `high` | y |\n\n## Next\n")
    assert upward_imports(import_graph(pkg), readme_layers(readme)) == [("helpers.low", "helpers.high")]


# --------------------------------------------------------------------------------------------
# a module uses another's public names only
# --------------------------------------------------------------------------------------------
def _owner(module: str) -> str:
    """``helpers.data._cells`` -> ``helpers.data``: a package owns its private submodules."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def private_reaches(src: Path = SRC) -> list:
    """``(module, "target.name")`` for every private name (``_x``, not ``__x__``) a module takes
    from a helpers module that another package owns: ``from helpers.x import _y`` or
    ``x._y`` on a name bound to a helpers module. Inside one package (``helpers.data`` and its
    ``_``-submodules) private names are shared freely."""
    modules = {_module_name(p, src): p for p in src.rglob("*.py")}

    def private(name):
        return name.startswith("_") and not name.startswith("__")

    found = []
    for name, path in modules.items():
        bound = {}  # local name -> helpers module it is bound to
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in modules:
                        bound[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and (node.module or "") in modules and not node.level:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in modules:
                        bound[a.asname or a.name] = full
                    elif private(a.name) and _owner(node.module) != _owner(name):
                        found.append((name, full))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and private(node.attr)
                    and _owner(bound[node.value.id]) != _owner(name)):
                found.append((name, f"{bound[node.value.id]}.{node.attr}"))
    return sorted(set(found))


def test_no_module_reaches_into_another_modules_private_names():
    bad = private_reaches()
    assert not bad, "private names used across modules (make them public, with a docstring): " + ", ".join(
        f"{a} uses {b}" for a, b in bad)


def test_the_private_name_check_sees_both_forms(tmp_path):
    pkg = tmp_path / "helpers"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from helpers.data._cells import _ok\n")
    (pkg / "data" / "_cells.py").write_text("def _ok(): pass\n")
    (pkg / "a.py").write_text("def _x(): pass\n")
    (pkg / "b.py").write_text("from helpers.a import _x\nfrom helpers import data\n\ndef f():\n"
                              "    return data._ok, data.__name__\n")
    assert private_reaches(pkg) == [("helpers.b", "helpers.a._x"), ("helpers.b", "helpers.data._ok")]
