"""What a user sees in the terminal: ``python -m stflib run`` and Ctrl-C during ``python -m stflib ablate``."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from stflib import arm

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}

# a stand-in for notebooks/ablation.ipynb: the same parameter names, prints progress, writes metrics.json
STAND_IN = '''
import json, sys, time
from pathlib import Path
Path(output_dir).mkdir(parents=True, exist_ok=True)
(Path(output_dir) / "started").touch()  # the kernel has reached the long cell
for epoch in range(3):
    print(f"epoch {epoch} done", file=sys.stderr, flush=True)
    time.sleep(sleep_s)
Path(output_dir).mkdir(parents=True, exist_ok=True)
(Path(output_dir) / "metrics.json").write_text(json.dumps({"pcc_hvg50": 0.25, "moran_rank_spearman": 0.5, "epochs_run": 3}))
print("stand-in finished")
'''


def stand_in_notebook(path: Path, sleep_s: float = 0.0) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(f"model = 'interaction'\nseed = 0\nfold = 0\nn_folds = 3\n"
                                       f"output_dir = 'out'\nepochs = 3\nsleep_s = {sleep_s}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(STAND_IN)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def stflib(*args, cwd=REPO, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stflib", *args], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=timeout)


def test_a_bad_parameter_prints_its_one_line_message_first():
    out = stflib("run", "-p", "interactions", "p2x,p2p")
    assert out.returncode == 2
    first = out.stderr.splitlines()[0]
    assert first == "error: interactions: unknown quadrant 'p2x'; allowed: p2p, p2h, h2p, h2h (or all, full, bottleneck)"
    assert "Traceback" not in out.stderr and out.stdout == ""
    shown = stflib("run", "-p", "epochs", "0", "--traceback")
    assert shown.returncode == 2 and "Traceback (most recent call last)" in shown.stderr
    assert shown.stderr.rstrip().splitlines()[-1] == "error: epochs: must be > 0, got 0"
    unknown = stflib("run", "-p", "epoch", "3")
    assert unknown.stderr.startswith("error: unknown parameter(s) epoch; allowed: ")


def test_run_streams_the_notebook_and_prints_the_metrics(tmp_path):
    nb = stand_in_notebook(tmp_path / "stand_in.ipynb")
    out = stflib("run", "--notebook", str(nb), "-p", "output_dir", str(tmp_path / "arm"), "-p", "seed", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("epoch")] == [f"epoch {i} done" for i in range(3)]
    assert "stand-in finished" in out.stdout
    assert out.stdout.rstrip().splitlines()[-3:] == ["  PCC, 50 HVGs             0.2500",
                                                     "  Moran's I rank Spearman  0.5000",
                                                     "  epochs run               3"]
    assert (tmp_path / "arm" / "executed.ipynb").is_file()
    assert "[IPKernelApp]" not in out.stderr and "KeyboardInterrupt" not in out.stderr


def test_a_failing_cell_is_one_line_and_names_the_executed_notebook(tmp_path):
    nb = stand_in_notebook(tmp_path / "stand_in.ipynb")
    out = stflib("run", "--notebook", str(nb), "-p", "output_dir", str(tmp_path / "arm"), "-p", "sleep_s", "-1",
                 cwd=tmp_path)
    # sleep_s is not a stflib parameter: refused before any kernel starts
    assert out.returncode == 2 and out.stderr.startswith("error: unknown parameter(s) sleep_s")
    broken = nbformat.read(nb, as_version=4)
    broken.cells[1].source = "raise RuntimeError('the data folder is empty')"
    nbformat.write(broken, nb)
    out = stflib("run", "--notebook", str(nb), "-p", "output_dir", str(tmp_path / "arm"), cwd=tmp_path)
    assert out.returncode == 1
    assert "error: RuntimeError: the data folder is empty" in out.stderr and "Traceback" not in out.stderr
    assert str(tmp_path / "arm" / "executed.ipynb") in out.stderr


def test_quiet_kernel_manager_uses_ipc_and_sends_no_sigint_on_shutdown():
    km = arm.quiet_kernel_manager_class()(kernel_name="python3")
    assert km.transport == "ipc" and km.ip.endswith("-ipc")
    km.shutting_down = True  # no kernel is running: a real interrupt would raise
    asyncio.run(km._async_interrupt_kernel())
    km.shutting_down = False
    with pytest.raises(RuntimeError, match="No kernel is running"):
        asyncio.run(km._async_interrupt_kernel())


@pytest.mark.slow
def test_ctrl_c_during_the_grid_says_how_to_resume(tmp_path):
    nb = stand_in_notebook(tmp_path / "stand_in.ipynb", sleep_s=30)
    (tmp_path / "params" / "demo").mkdir(parents=True)
    (tmp_path / "params" / "demo" / "slow.yaml").write_text("model: interaction\n")
    proc = subprocess.Popen([sys.executable, "-m", "stflib", "ablate", "params", "--folds", "2", "--workers", "1",
                             "--threads", "1", "--notebook", str(nb), "--results", "results"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, as a terminal's foreground job
    try:
        deadline = time.time() + 90
        # wait until a run is under way (its kernel has written the executed notebook's first save)
        while time.time() < deadline and not list((tmp_path / "results").rglob("executed.ipynb")):
            time.sleep(0.5)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "interrupted; re-run the same command to resume" in output
    for noise in ("Traceback", "KeyboardInterrupt", "WARNING", "distributed."):
        assert noise not in output, output


@pytest.mark.parametrize("text, value", [("5", 5), ("1e-3", 1e-3), ("0.5", 0.5), ("True", True), ("false", False),
                                         ("None", None), ("p2p,p2h", "p2p,p2h"), ("[p2p, h2h]", ["p2p", "h2h"]),
                                         ("/data/hest", "/data/hest"), ("resnet50", "resnet50")])
def test_parameter_values_are_read_as_papermill_reads_them(text, value):
    assert arm.parse_value(text) == value and type(arm.parse_value(text)) is type(value)


def test_parameters_file_then_command_line(tmp_path):
    f = tmp_path / "arm.yaml"
    f.write_text("interactions: [p2p, p2h]\nepochs: 4\n")
    assert arm.gather_parameters([str(f)], [["epochs", "2"]]) == {"interactions": ["p2p", "p2h"], "epochs": 2}
    with pytest.raises(ValueError, match="parameters file not found: nope.yaml"):
        arm.gather_parameters(["nope.yaml"], [])
    f.write_text("- a list\n")
    with pytest.raises(ValueError, match="a YAML mapping of name: value, got list"):
        arm.gather_parameters([str(f)], [])


@pytest.mark.slow
def test_ctrl_c_during_one_arm_says_how_to_resume(tmp_path):
    nb = stand_in_notebook(tmp_path / "stand_in.ipynb", sleep_s=30)
    proc = subprocess.Popen([sys.executable, "-m", "stflib", "run", "--notebook", str(nb), "-p", "output_dir", "arm"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        # wait until the kernel is inside the long cell (a loaded machine can take seconds to start it)
        while time.time() < deadline and not (tmp_path / "arm" / "started").is_file():
            time.sleep(0.5)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "interrupted; re-run the same command to resume" in output and "Traceback" not in output
    assert "stand-in finished" not in output


@pytest.mark.parametrize("echo", ["1", "0"])
def test_plain_papermill_shows_the_progress_bar_in_the_terminal(tmp_path, echo):
    """papermill without --log-output shows nothing of a cell while it runs; the training bar reaches the
    terminal through the kernel's copy of its stderr, unless the parent streams the kernel itself."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from tqdm import tqdm\nfrom stflib.kernel import progress_stream\n"
        "for _ in tqdm(range(7), desc='steps-bar', file=progress_stream()):\n    pass\n")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "in.ipynb"
    nbformat.write(nb, src)
    env = {k: v for k, v in ENV.items() if k != "PYTEST_CURRENT_TEST"}  # ipykernel captures no fd under pytest
    env["STFLIB_TERMINAL_ECHO"] = echo
    done = subprocess.run([sys.executable, "-m", "papermill", str(src), str(tmp_path / "out.ipynb"), "--no-progress-bar"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("steps-bar" in done.stderr and "7/7" in done.stderr) == (echo == "1"), done.stderr[-2000:]
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "steps-bar" in str(out.cells[0].outputs)  # the notebook keeps the bar either way
