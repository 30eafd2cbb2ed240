"""``python -m stflib run``: one ablation arm through ``notebooks/ablation.ipynb`` with a live terminal.

The parameters are checked before any kernel starts (a bad one prints its one-line message and
exits 2; ``--traceback`` shows where it came from). The notebook then runs through papermill's API
with the kernel's stdout and stderr streamed to this terminal as they arrive: the fold summary, the
epoch progress bar (tqdm), the held-out metrics; the executed notebook and every artefact go to
``output_dir``. A failing cell prints ``error: <exception>: <message>`` and the executed notebook's path.

Two kernel lines that alarm users are removed at their source, a ``KernelManager`` subclass
(:func:`stflib.kernel.quiet_kernel_manager_class`, shared with the grid's runner):
- ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel``: jupyter_client's ``shutdown_kernel``
  sends SIGINT to the kernel before its shutdown request; if ipykernel is still inside a message
  handler it logs that error. The run has finished by then; this manager shuts down without the SIGINT
  (a kernel that does not exit on the request is still killed after ``shutdown_wait_time``).
- ``[IPKernelApp] WARNING | Kernel is running over TCP without encryption``: the kernel talks to
  this process over local IPC sockets instead of TCP ports.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from stflib.kernel import ECHO_ENV, quiet_kernel_manager_class  # noqa: F401  (importable from here too)
from stflib.paths import default_notebook

# printed after a run: (metrics.json key, label)
SUMMARY_KEYS = [
    ("pcc_hvg50", "PCC, 50 HVGs"), ("pcc_all", "PCC, all genes"), ("mse", "MSE"),
    ("pathway_pcc_truth", "pathway PCC vs truth"), ("collapse_ratio", "collapse ratio"),
    ("moran_i_pred_median", "Moran's I predicted (median)"), ("moran_i_true_median", "Moran's I measured (median)"),
    ("moran_rank_spearman", "Moran's I rank Spearman"), ("epochs_run", "epochs run"), ("train_seconds", "training s"),
]


def parse_value(text: str) -> Any:
    """A ``-p`` value as papermill's command line reads it: None, a bool, an int, a float (``1e-3`` too),
    a YAML list (``[p2p, p2h]``); otherwise the string itself (``p2p,p2h``)."""
    if text in ("None", "none", "null"):
        return None
    if text in ("True", "true", "False", "false"):
        return text in ("True", "true")
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.startswith("["):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return text


def gather_parameters(files: list[str], pairs: list[list[str]]) -> dict[str, Any]:
    """Parameters from YAML files (in order) then ``-p KEY VALUE`` pairs (later ones win)."""
    import yaml

    params: dict[str, Any] = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ValueError(f"parameters file not found: {f}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{f}: a parameters file is a YAML mapping of name: value, got {type(loaded).__name__}")
        params.update(loaded)
    for key, value in pairs:
        params[key] = parse_value(value)
    return params


def format_metrics(metrics: dict) -> str:
    rows = [(label, metrics[key]) for key, label in SUMMARY_KEYS if metrics.get(key) is not None]
    width = max(len(label) for label, _ in rows) if rows else 0
    return "\n".join(f"  {label:<{width}}  {value:.1f}" if label.endswith(" s") else
                     f"  {label:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {label:<{width}}  {value}"
                     for label, value in rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a notebook parameter, e.g. -p interactions p2p,p2h -p epochs 5 (repeatable)")
    p.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                   help="a YAML file of parameters, e.g. params/interactions/bottleneck.yaml (-p wins)")
    p.add_argument("--notebook", default=str(default_notebook()),
                   help="the parameterised notebook (default: <project>/notebooks/ablation.ipynb, see stflib.paths)")
    p.add_argument("--executed", default=None,
                   help="where the executed notebook goes (default: OUTPUT_DIR/executed.ipynb)")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")


def _fail(message: str, exc: BaseException | None, show_traceback: bool) -> int:
    if show_traceback and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    if not show_traceback:
        print("(add --traceback for the full traceback)", file=sys.stderr)
    return 2 if isinstance(exc, ValueError) else 1


def _interrupted(out_dir: Path) -> int:
    # Ctrl-C reaches the kernel too; when it dies of it, nbclient's orphaned execute task holds a
    # DeadKernelError that asyncio would log, with its traceback, when the event loop is collected
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    print(f"\ninterrupted; re-run the same command to resume from the last finished evaluation ({out_dir})",
          file=sys.stderr)
    return 130


def run(args) -> int:
    from stflib import config

    try:
        params = gather_parameters(args.parameters_file, args.parameter)
        cfg = config.validate(params)
    except ValueError as e:
        return _fail(str(e), e, args.traceback)
    notebook = Path(args.notebook)
    if not notebook.is_file():
        return _fail(f"notebook not found: {notebook}", ValueError(), False)
    out_dir = Path(cfg["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = Path(args.executed) if args.executed else out_dir / "executed.ipynb"
    print(f"running {notebook} -> {executed}", flush=True)  # the notebook prints the parameters

    import papermill as pm

    sigint = []

    def on_sigint(signum, frame):
        sigint.append(signum)
        signal.default_int_handler(signum, frame)

    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers live
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
    os.environ[ECHO_ENV] = "0"  # the kernel's output is streamed below: its bar must not reach the terminal twice
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name="python3",
                            progress_bar=False, stdout_file=sys.stdout, stderr_file=sys.stderr, cwd=os.getcwd(),
                            kernel_manager_class=quiet_kernel_manager_class())
    except KeyboardInterrupt:
        return _interrupted(out_dir)
    except pm.PapermillExecutionError as e:
        if e.ename == "KeyboardInterrupt":  # the kernel alone was interrupted
            return _interrupted(out_dir)
        if args.traceback:
            print("\n".join(e.traceback), file=sys.stderr)
        print(f"error: {e.ename}: {e.evalue}", file=sys.stderr)
        print(f"(executed notebook with the failing cell: {executed}"
              f"{'' if args.traceback else '; add --traceback for the full traceback'})", file=sys.stderr)
        return 1
    except Exception:
        if not sigint:
            raise
        return _interrupted(out_dir)  # the kernel died of the same Ctrl-C (nbclient's DeadKernelError)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    metrics_path = out_dir / "metrics.json"
    if not metrics_path.is_file():
        print(f"error: the notebook finished without writing {metrics_path}", file=sys.stderr)
        return 1
    metrics = json.loads(metrics_path.read_text())
    print(f"\nheld-out metrics ({cfg['model']}, fold {cfg['fold']}; {metrics_path}):")
    print(format_metrics(metrics), flush=True)
    return 0
