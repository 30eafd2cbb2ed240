"""Command line: ``python -m stflib <command> ...``.

Each command lives in the module that owns its logic; this file only maps names to modules, so
importing the CLI never imports torch or the simulator until a command actually runs.
Every command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (for modules
with several commands the functions carry the command name as a suffix, see ``COMMANDS``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, add-arguments function, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "simulate": ("stflib.sim.cohort", "add_arguments", "run", "write a simulated CRC Visium cohort in HEST-1k layout"),
    "rehearse": ("stflib.grid.rehearsal", "add_arguments", "run",
                 "write a rehearsal of real HEST-1k at the bowel cohort's scale, with the real metadata's quirks"),
    "truth": ("stflib.sim.truth", "add_arguments", "run",
              "what each simulated world lets a model find, measured on its truth (results/worlds/truth.csv)"),
    "reliability": ("stflib.sim.reliability", "add_arguments", "run",
                    "split-half reliability of genes and pathway scores per world, or of a HEST folder's counts"),
    "extract-features": ("stflib.features", "add_arguments", "run", "extract frozen backbone features into the feature cache"),
    "bench": ("stflib.bench", "add_arguments", "run", "benchmarks that print figures (attention, backbones)"),
    "run": ("stflib.arm", "add_arguments", "run", "run one ablation arm (the notebook) with live progress and its metrics"),
    "predict": ("stflib.apply", "add_arguments", "run",
                "apply a trained run (best.pt) to sections with features, expression optional: <id>/predictions.h5ad"),
    "ablate": ("stflib.grid.commands", "add_arguments_ablate", "run_ablate", "run the ablation grid through papermill (Dask)"),
    "collect": ("stflib.grid.commands", "add_arguments_collect", "run_collect", "collect run metrics into results/summary.csv"),
    "import-visium": ("stflib.data.visium", "add_arguments", "run",
                      "import a Visium section (Space Ranger folder or AnnData + H&E image) into the HEST-1k layout"),
    "recipe": ("stflib.train.recipe", "add_arguments", "run", "the training recipe's reference search and must-show measurements"),
    "ceilings": ("stflib.report.context", "add_arguments", "run",
                 "the context page's latent ceilings on the grid's patient folds (results/ceilings/)"),
    "pathway-bounds": ("stflib.report.pathway_bounds", "add_arguments", "run",
                       "the pathways page's bounds for the named pathway tokens (results/ceilings/)"),
    "spread": ("stflib.report.spread", "add_arguments", "run",
               "held-out spread vs accuracy (collapse ratio, explained share, calibration slope) per run (results/ceilings/)"),
    "interpretability": ("stflib.report.interpretability", "add_arguments", "run",
                         "pathway recovery and attribution read-outs against the simulator's truth per world (results/interpretability/)"),
    "chapters": ("stflib.report.chapters", "add_arguments", "run",
                 "what the teaching chapters show that takes more than seconds (results/chapters/)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stflib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv else None
    for name, (module, add_fn, _run_fn, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:  # import only the module of the command being run
            getattr(importlib.import_module(module), add_fn)(p)
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    module, _add_fn, run_fn, _help = COMMANDS[args.command]
    return int(getattr(importlib.import_module(module), run_fn)(args) or 0)
