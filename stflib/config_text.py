"""The run configuration as text: the book's parameter table, the notebook's generated parameters cell
(``sync_notebook_parameters``), a run's parameters printed (``format_config``) and a parameter's value
as it goes into a params YAML (``to_yaml_value``). ``stflib.config`` owns the parameters themselves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stflib.config import PARAM_BY_NAME, PARAMETERS, RunConfig, _allowed, _plain, validate


def to_yaml_value(name: str, value):
    """A parameter as it goes into a params YAML: normalised by its type (``interactions`` in
    canonical order), as plain data (a list)."""
    p = PARAM_BY_NAME.get(name)
    if p is not None and p.type not in (bool, int, float, str) and value is not None:
        value = p.type(value)
    return _plain(value)


def parameters_table(groups: tuple[str, ...] | None = None) -> str:
    """Markdown table of the parameters (the book's parameter reference)."""
    lines = ["| parameter | default | allowed | description |", "|---|---|---|---|"]
    for p in PARAMETERS:
        if groups and p.group not in groups:
            continue
        allowed = _allowed(p.choices()) if p.allowed else getattr(p.type, "spellings", p.type.__name__)
        lines.append(f"| `{p.name}` | `{p.default!r}` | {allowed} | {p.help} |")
    return "\n".join(lines)


def parameters_cell() -> str:
    """Source of the notebook's parameters cell, generated from the table."""
    out = []
    for p in PARAMETERS:
        # papermill parses this cell: no quotes or '=' in the comments
        help_text = p.help.replace("'", "").replace('"', "").replace("=", "is")
        help_text = help_text if len(help_text) <= 90 else help_text[:87].rsplit(" ", 1)[0] + " ..."
        out.append(f"{p.name} = {p.default!r}  # {help_text}")
    return "\n".join(out)


def format_config(cfg: "dict[str, Any] | RunConfig") -> str:
    """The parameters as run, one per line, non-defaults marked with '*'."""
    cfg = cfg.as_dict() if isinstance(cfg, RunConfig) else cfg
    d = validate({}, check_paths=False)  # every default, normalised as a run holds it
    width = max(len(k) for k in cfg)
    return "\n".join(f"{'*' if v != d.get(k) else ' '} {k:<{width}} = {v!r}" for k, v in cfg.items())


def sync_notebook_parameters(py_path: str | Path) -> bool:
    """Rewrite the ``parameters`` cell of a py:percent notebook from ``PARAMETERS``; True if it changed.

    Then ``jupytext --sync notebooks/ablation.py`` updates the paired .ipynb.
    """
    path = Path(py_path)
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("# %%") and "parameters" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%"))
    new = lines[: start + 1] + [parameters_cell() + "\n", "\n"] + lines[end:]
    if new != lines:
        path.write_text("".join(new))
        return True
    return False
