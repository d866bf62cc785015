"""The layering docs/architecture.md describes, checked: the layer order (no module imports a higher layer), no
import cycle, the enhancer called from one module, no core module that names a plug-in, commands that do not import
each other, no family named outside families/, settings passed as objects, and every docs page the code cites."""

import ast
import inspect
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dicecli"
COMMAND_MODULES = {"dicecli.encode", "dicecli.distill", "dicecli.enhance", "dicecli.sample", "dicecli.transfer",
                   "dicecli.evaluate", "dicecli.analysis.embeddings", "dicecli.analysis.attention",
                   "dicecli.analysis.triggers"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Every dicecli module `path` imports: at module level, inside functions, or for type checking only
    (a circle of type-level imports is a circle in the design all the same)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n in known}
    return out


def test_no_import_cycle():
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    # a package's __init__ importing its own sub-modules is how a package exposes them, not a cycle
    graph = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail + [node, dep]))
            if dep not in state:
                visit(dep, trail + [node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_commands_do_not_import_each_other():
    found = modules()
    for name in COMMAND_MODULES:
        others = imports(found[name], set(found)) & (COMMAND_MODULES - {name})
        assert not others, f"{name} imports {others}"


def test_no_core_module_names_a_plugin():
    for name, path in modules().items():
        if name.startswith("dicecli.plugins."):
            continue
        assert not re.search(r"\btoy\b", path.read_text(), re.IGNORECASE), f"{path} names the toy world"


def test_the_enhancer_is_called_only_by_apply_enhancer(dice, prompts_file, enhancer_file, tmp_path, monkeypatch):
    """Run every command that uses an enhancer and record who calls it."""
    from dicecli.enhancer import Enhancer

    callers = set()
    original = Enhancer.forward

    def spy(self, *args, **kwargs):
        for frame in inspect.stack()[1:]:
            module = frame.frame.f_globals.get("__name__", "")
            if module.startswith("dicecli"):
                callers.add(f"{module}.{frame.function}")
                break
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Enhancer, "forward", spy)
    assert dice("enhance", prompts_file, "-o", tmp_path / "e.h5", "--enhancer", enhancer_file).code == 0
    assert dice("sample", prompts_file, "--enhancer", enhancer_file, "--steps", "2", "-o", tmp_path / "s").code == 0
    assert dice("transfer", enhancer_file, prompts_file, "--to", "tiny-sd15", "--steps", "2", "-o", tmp_path / "t").code == 0
    data = tmp_path / "s"  # a sample folder is distillation data
    assert dice("distill", "--model", "tiny-sd15", "--data", data, "--steps", "2", "--batch-size", "2",
                "--checkpoint-every", "2", "--work-dir", tmp_path / "w", "-o", tmp_path / "d.safetensors").code == 0
    assert dice("inspect", enhancer_file, prompts_file).code == 0
    assert dice("attention", enhancer_file, "a red cat", "--steps", "2", "-o", tmp_path / "maps.png").code == 0
    assert dice("trigger", enhancer_file, prompts_file, "--length", "1", "--iterations", "1", "--top-k", "2").code == 0
    assert callers == {"dicecli.method.apply_enhancer"}, callers


def parameter_count(node: ast.FunctionDef) -> int:
    args = node.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (bool(names) and names[0].arg in ("self", "cls"))


def is_command(node: ast.FunctionDef) -> bool:
    """A Typer command: its parameters are the command's options, one each, by Typer's design."""
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
               for d in node.decorator_list)


def test_settings_travel_as_objects():
    """No function takes more than 8 parameters: settings go down as `SampleOptions`, `Runtime`, `*Config` objects."""
    crowded = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({parameter_count(node)})"
               for path in modules().values() for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not is_command(node)
               and parameter_count(node) > 8]
    assert not crowded, crowded


# docs/architecture.md, "Layers", lowest first: a module imports its own layer or lower ones, never a higher one
# (at module level, inside functions, or for type checking only). `dicecli` itself is imported for __version__.
LAYERS = [
    ("foundation", "errors faults paths schedulers hub runtime distributed plugins plugins.toy.world"),
    ("files", "files parts"),
    ("loading", "loading"),
    ("families", "families families.base families.sd15 families.sdxl families.pixart"),
    ("settings and formats", "settings enhancer cache cachejob samplefolder checkpoints textual_inversion lora"),
    ("models and data", "miniatures builtin recipes refs prompts data plugins.toy"),
    ("method", "method trainbatches"),
    ("preparation", "preparation"),
    ("sampling and reports", "sampling reportpage validation"),
    ("commands", "encode enhance sample transfer distill evaluate analysis analysis.pca analysis.embeddings analysis.attention "
                 "analysis.triggers"),
    ("integrations", "api comfyui comfyui.conditioning comfyui.nodes comfyui.install"),
    ("command line", "cli cli.app cli.options cli.attention cli.comfyui cli.inspect cli.trigger cli.distill cli.encode cli.enhance "
                     "cli.evaluate cli.recipes cli.sample cli.transfer __main__"),
]


def test_the_layer_order():
    found = modules()
    layer_of = {f"dicecli.{name}": rank for rank, (_, names) in enumerate(LAYERS) for name in names.split()}
    assert set(layer_of) == set(found) - {"dicecli"}, (set(found) - {"dicecli"}) ^ set(layer_of)  # every module placed
    upward = [f"{name} ({LAYERS[layer_of[name]][0]}) imports {dep} ({LAYERS[layer_of[dep]][0]})"
              for name, path in found.items() if name != "dicecli"
              for dep in imports(path, set(found)) - {"dicecli", name} if layer_of[dep] > layer_of[name]]
    assert not upward, upward


def names_a_family(node: ast.Compare) -> bool:
    """`x.family == "sd15"`, `family in ("sd15", "sdxl")`, `meta["family"] != "pixart"` and the like."""
    from dicecli.families import FAMILIES

    def is_family(expr) -> bool:
        return (isinstance(expr, ast.Attribute) and expr.attr == "family" or isinstance(expr, ast.Name) and expr.id == "family"
                or isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant) and expr.slice.value == "family")

    def names(expr) -> bool:
        items = expr.elts if isinstance(expr, (ast.Tuple, ast.List, ast.Set)) else [expr]
        return any(isinstance(i, ast.Constant) and i.value in FAMILIES for i in items)

    sides = [node.left, *node.comparators]
    return any(is_family(a) for a in sides) and any(names(b) for b in sides)


def test_no_module_outside_families_names_a_family():
    """What differs between families is a member of the family adapter, never a comparison in a command."""
    found = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}" for name, path in modules().items()
             if not name.startswith("dicecli.families") for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Compare) and names_a_family(node)]
    assert not found, found


def test_the_check_for_family_names_sees_them():
    tree = ast.parse('a.family == "pixart"\nfamily in ("sd15", "x")\nmeta["family"] != "sdxl"\na.family == b.family')
    assert [names_a_family(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)] == [True, True, True, False]


def test_every_docs_page_the_code_names_exists():
    """Help texts, docstrings and comments name docs/*.md pages; each exists."""
    root = PACKAGE.parent
    named = {(page, path.name) for path in PACKAGE.rglob("*.py") for page in re.findall(r"docs/[\w-]+\.md", path.read_text())}
    assert len(named) >= 10
    missing = sorted(f"{where} names {page}" for page, where in named if not (root / page).exists())
    assert not missing, missing


def test_the_training_loop_is_short_and_its_state_set_up_front():
    """`Distiller` holds the run (model, enhancer, optimizer, the loop); batches, checkpoints and validation grids
    are their own modules. Its attributes are all set in __init__."""
    tree = ast.parse((PACKAGE / "distill.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Distiller"]
    assert cls.end_lineno - cls.lineno + 1 < 150
    set_in = {}
    for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(method):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)) else []
            for target in targets:
                for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        set_in.setdefault(t.attr, set()).add(method.name)
    outside = {name for name, methods in set_in.items() if "__init__" not in methods}
    assert not outside, outside
