"""A run's code version: a hash of the code the run executes, so that adding an entry stales nothing else.

A run executes the **shared core** (the training loop, data, evaluation, metrics, the simulator, the
notebook: every module of the library that computes results, :func:`result_files`) plus **the
registry entries it names**: its model class, its loss's terms, its backbone's spec, its world and
preset. The version of a run is ``hash(core, the source of those entries)``; the run hash
(``stflib.grid.runner``) adds the run's parameters.

How the two are told apart, statically (from the source, without importing it):

- An **entry** is a top-level statement that registers one name in a :class:`~stflib.registry.Registry`:
  ``LOSSES.register("mse", GeneLoss(...))``, a class decorated with ``@MODELS.register("mlp")`` or
  ``@register_model("mlp", ...)``. The registry's kind (``Registry("loss")``) is the run parameter that
  selects the entry (``loss``, ``model``, ``backbone``, ``world``, ``preset``). An entry **owns** its
  statement and the module-level functions and classes of its module that only entries reach (for a loss:
  its term functions and its primitive), found by following names from the entry's statement.
- Everything else is **core**: every statement of a module without entries, every statement of a module
  with entries that no entry reaches (imports, shared helpers, the registry itself), every entry of a
  registry whose kind is not a run parameter (each metric is computed by every run), and every
  definition whose name is used anywhere in the core or in another module. So a helper that two losses
  share is owned by both; one the training loop also calls is core.

How a change is still caught: an edit to any core statement (a shared helper, the training loop, the
data reader, the ``GeneLoss`` class, a metric) changes the core hash and so every run's version; an
edit to an entry (a loss's term function, a world's parameters) changes the version of the runs that
name it; a new entry is owned by itself and changes no other run's version. Statements are compared
through their syntax tree (``ast.unparse``), so comments, blank lines and the module docstring do not
count; every other docstring does. A helper added alongside a new entry that no entry reaches (nothing
refers to it) is core, and re-runs everything: register it inside the entry or refer to it from it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stflib.sim.cohort import MEASUREMENT_MODULES

# code that does not change what a run computes (command line, the grid, the results pages, figures of
# a run, benchmarks, the Visium importer, the recipe's search and check drivers): left out of the code
# version, so editing it does not mark finished runs stale
NOT_RESULT_FILES = {"cli.py", "__main__.py", "bench.py", "plots.py", "visium.py", "visium_read.py", "recipe.py", "apply.py",
                    *MEASUREMENT_MODULES}
NOT_RESULT_PACKAGES = {"grid", "report"}
# a decorator function that registers a model (the model registry's older spelling of MODELS.register)
REGISTER_FUNCTIONS = {"register_model": "model"}


def package_dir() -> Path:
    import stflib

    return Path(stflib.__file__).resolve().parent


def result_files(package: str | Path | None = None) -> list[Path]:
    """The library files whose content changes what a run computes, relative to the package, sorted."""
    pkg = Path(package) if package else package_dir()
    return [p.relative_to(pkg) for p in sorted(pkg.rglob("*"))
            if p.is_file() and p.suffix in (".py", ".gmt") and p.name not in NOT_RESULT_FILES
            and p.relative_to(pkg).parts[0] not in NOT_RESULT_PACKAGES and "__pycache__" not in p.parts]


@dataclass
class _Statement:
    text: str  # ast.unparse of the statement: what is hashed
    defines: set[str]
    names: set[str]  # every identifier it mentions
    entry: tuple[str, str] | None  # (registry kind, name) when it registers an entry
    is_import: bool = False
    targets: tuple[tuple[str, str], ...] = ()  # ("package.module", "Name") strings it holds (lazy imports)


@dataclass
class _Module:
    path: str
    statements: list[_Statement]
    owners: list[set[tuple[str, str]]] = field(default_factory=list)  # per statement: entries that reach it


def _identifiers(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.alias):
            out.add((n.asname or n.name).split(".")[0])
            out.add(n.name.split(".")[-1])
    return out


_TARGET = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


def _targets(node: ast.AST, package: list[str]) -> tuple[tuple[str, str], ...]:
    """(module, name) pairs ``node`` takes from other modules: ``from stflib.x import Name`` (or a relative
    import from ``package``) and "package.module:Name" strings (a registry entry naming a class it imports
    on first use)."""
    found = []
    if isinstance(node, ast.ImportFrom):
        base = package[:len(package) - node.level + 1] if node.level else []
        module = ".".join([*base, *(node.module.split(".") if node.module else [])])
        return tuple((module, a.name) for a in node.names)
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            m = _TARGET.match(n.value)
            if m:
                found.append((m.group(1), m.group(2)))
    return tuple(found)


def _module_path(module: str, modules: Mapping[str, object]) -> str:
    """``stflib.models.baselines`` -> ``models/baselines.py`` (or its package's ``__init__.py``)."""
    parts = module.split(".")[1:]
    for path in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
        if path in modules:
            return path
    return ""


def _defines(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return {n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)}


def _register_call(call: ast.AST, kinds: Mapping[str, str]) -> tuple[str, str] | None:
    """(kind, name) when ``call`` is ``<REGISTRY>.register("name", ...)`` or ``register_model("name", ...)``."""
    if not isinstance(call, ast.Call) or not call.args:
        return None
    first = call.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr == "register" and isinstance(f.value, ast.Name) and f.value.id in kinds:
        return kinds[f.value.id], first.value
    if isinstance(f, ast.Name) and f.id in REGISTER_FUNCTIONS:
        return REGISTER_FUNCTIONS[f.id], first.value
    return None


def _entry(stmt: ast.stmt, kinds: Mapping[str, str]) -> tuple[str, str] | None:
    if isinstance(stmt, (ast.ClassDef, ast.FunctionDef)):
        for dec in stmt.decorator_list:
            found = _register_call(dec, kinds)
            if found:
                return found
        return None
    value = getattr(stmt, "value", None)
    return _register_call(value, kinds) if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) else None


def _registry_kinds(trees: Mapping[str, ast.Module]) -> dict[str, str]:
    """Variable name -> kind of every ``NAME = Registry("kind")`` in the package."""
    kinds = {}
    for tree in trees.values():
        for stmt in tree.body:
            value = getattr(stmt, "value", None)
            if (isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name) and value.func.id == "Registry" and value.args
                    and isinstance(value.args[0], ast.Constant)):
                for name in _defines(stmt):
                    kinds[name] = str(value.args[0].value)
    return kinds


def _notebook_code(notebook: Path | None) -> str:
    if notebook is None or not Path(notebook).is_file():
        return ""
    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    return "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")


class CodeIndex:
    """The library's code split into the shared core and the registry entries (see the module docstring).

    ``package``: the library folder (default: the imported ``stflib``); ``notebook``: the run notebook,
    whose code cells are core; ``parameters``: the run parameters (an entry of a registry whose kind is
    one of them belongs to the runs that name it; default: ``stflib.config.PARAMETERS``).
    """

    def __init__(self, package: str | Path | None = None, notebook: str | Path | None = None,
                 parameters: tuple[str, ...] | None = None, version: str | None = None):
        import stflib

        if parameters is None:
            from stflib.config import PARAM_BY_NAME
            parameters = tuple(PARAM_BY_NAME)
        pkg = Path(package) if package else package_dir()
        files = result_files(pkg)
        sources = {rel.as_posix(): (pkg / rel).read_bytes() for rel in files}
        trees = {path: ast.parse(src) for path, src in sources.items() if path.endswith(".py")}
        kinds = _registry_kinds(trees)
        modules = {}
        for path, tree in trees.items():
            package = ["stflib", *path.split("/")[:-1]]  # the dotted package a relative import starts from
            body = tree.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]  # the module docstring documents, it does not compute
            modules[path] = _Module(path, [
                _Statement(ast.unparse(s), _defines(s), _identifiers(s), _entry(s, kinds),
                           isinstance(s, (ast.Import, ast.ImportFrom)), _targets(s, package)) for s in body])
        self._own_entries(modules, set(parameters))
        notebook_code = _notebook_code(Path(notebook) if notebook else None)
        self.entries: dict[tuple[str, str], str] = {}
        core = hashlib.sha256((version if version is not None else stflib.__version__).encode())
        for path in sorted(sources):
            core.update(path.encode() + b"\0")
            if path not in modules:  # data files (gene sets)
                core.update(sources[path] + b"\0")
                continue
            for stmt, owners in zip(modules[path].statements, modules[path].owners):
                if owners:
                    for owner in owners:
                        self.entries[owner] = self.entries.get(owner, "") + f"{path}\0{stmt.text}\0"
                else:
                    core.update(stmt.text.encode() + b"\0")
        core.update(notebook_code.encode())
        self.core_version = core.hexdigest()[:16]
        self.parameters = set(parameters)

    @staticmethod
    def _own_entries(modules: dict[str, _Module], parameters: set[str]) -> None:
        """Fill each statement's owners: the entries (of run-parameter kinds) that alone reach it."""
        defs: dict[str, dict[str, list[int]]] = {}
        for path, m in modules.items():
            defs[path] = {}
            for i, s in enumerate(m.statements):
                for name in s.defines:
                    defs[path].setdefault(name, []).append(i)
        owners = {path: [set() for _ in m.statements] for path, m in modules.items()}
        for path, m in modules.items():
            for i, s in enumerate(m.statements):
                if s.entry is None or s.entry[0] not in parameters:
                    continue
                # from the entry's statement, through the names each reached statement uses (in its own
                # module) and the "package.module:Name" targets it names (a class imported on first use)
                todo, seen = [(path, i)], {(path, i)}
                while todo:
                    where, j = todo.pop()
                    stmt = modules[where].statements[j]
                    owners[where][j].add(s.entry)
                    nxt = [(where, k) for name in stmt.names for k in defs[where].get(name, ())]
                    for module, name in stmt.targets:
                        target = _module_path(module, modules)
                        nxt += [(target, k) for k in defs.get(target, {}).get(name, ())]
                    for where2, k in nxt:
                        if (where2, k) not in seen and modules[where2].statements[k].entry is None:
                            seen.add((where2, k))
                            todo.append((where2, k))
        # core: what no entry reaches, and every reached definition that core code uses (names outside
        # import statements: a module that re-exports a model class does not run it, one that instantiates
        # it for every run does); repeated until nothing more becomes core, since a statement that becomes
        # core makes what it uses core too. One set of names for the package: a name that another module's
        # core uses counts, conservatively
        while True:
            used = set().union(*(s.names for path, m in modules.items()
                                 for s, o in zip(m.statements, owners[path]) if not o and not s.is_import))
            changed = False
            for path, m in modules.items():
                for s, o in zip(m.statements, owners[path]):
                    if o and s.defines & used:
                        o.clear()
                        changed = True
            if not changed:
                break
        for path, m in modules.items():
            m.owners = owners[path]

    def run_version(self, params: Mapping[str, object]) -> str:
        """The code version of a run with these (validated) parameters: the core and its entries."""
        h = hashlib.sha256(self.core_version.encode())
        for (kind, name), text in sorted(self.entries.items()):
            if kind in self.parameters and params.get(kind) == name:
                h.update(f"{kind}={name}\0".encode() + text.encode())
        return h.hexdigest()[:16]


_INDEX_MEMO: dict[tuple, CodeIndex] = {}


def code_index(notebook: str | Path | None = None) -> CodeIndex:
    """:class:`CodeIndex` of the imported library and ``notebook``, parsed once per process while no file
    changes (keyed by every source file's path, size and modification time).

    A grid worker asks for its run's version before and after every run (the second time to notice code
    edited while the run ran); parsing the library takes about a second each time, so without the memo
    the check alone was 2-5 % of a reference run's wall time."""
    pkg = package_dir()
    paths = [pkg / rel for rel in result_files(pkg)]
    if notebook is not None:
        paths.append(Path(notebook).resolve())
    stamps = []
    for path in paths:
        st = path.stat()
        stamps.append((str(path), st.st_size, st.st_mtime_ns))
    key = tuple(stamps)
    if key not in _INDEX_MEMO:
        _INDEX_MEMO.clear()  # an older state of the files is never asked for again
        _INDEX_MEMO[key] = CodeIndex(notebook=notebook)
    return _INDEX_MEMO[key]


def core_version(notebook: str | Path | None = None) -> str:
    """The shared core's version (see the module docstring): runs of one core may be compared."""
    from stflib.grid.runner import DEFAULT_NOTEBOOK

    return CodeIndex(notebook=notebook or DEFAULT_NOTEBOOK).core_version

