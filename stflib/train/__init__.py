"""Training and evaluation of one ablation arm; ``run(cfg)`` is the one entry point (the notebook's run).

The package reads top to bottom as the run does:

- ``fold``       the cohort split by patient, the genes, the slide items, input and target statistics
- ``windows``    neighbourhood windows for models that do not attend to neighbours themselves
- ``step``       one forward pass, outputs aligned with targets (dense, window, global), the loss
                 through ``stflib.losses.LOSSES``
- ``model``      the arm's model from the registry (``stflib.models.MODELS``), ``StandardizedOutput``,
                 the numpy baselines' fit
- ``loop``       ``fit``: schedule, batches, validation, checkpoints, model selection
- ``predict``    whole-slide predictions on log1p(CP10k)
- ``evaluate``   held-out metrics, training fit, the pathway ceiling
- ``artefacts``  ``metrics.json``, ``per_gene.csv``, ``history.csv``, ``predictions.h5ad``
- ``run``        ``run(cfg) -> Run``: all of the above for one arm
- ``recipe``     the training recipe's reference search and must-show measurements (``python -m stflib recipe``)
"""
from stflib.train.artefacts import write_artefacts
from stflib.train.evaluate import evaluate_predictions, pathway_ceiling
from stflib.train.fold import FoldData, load_fold, log_mean_fractions, standardize_features, target_statistics
from stflib.train.loop import FitResult, crop_item, fit, lr_lambda, median_smoothed, validation_score
from stflib.train.model import StandardizedOutput, build_torch_model, count_parameters, fit_numpy
from stflib.train.predict import predict, predict_numpy
from stflib.train.run import Run, run, set_seed
from stflib.train.step import Step, compute_loss, forward, output_space
from stflib.train.windows import make_windows, window_index

__all__ = [
    "run", "Run", "set_seed", "load_fold", "FoldData", "standardize_features", "target_statistics",
    "log_mean_fractions", "fit", "FitResult", "lr_lambda", "crop_item", "median_smoothed", "validation_score",
    "predict", "predict_numpy", "fit_numpy", "build_torch_model", "StandardizedOutput", "count_parameters",
    "forward", "compute_loss", "Step", "output_space", "make_windows", "window_index", "evaluate_predictions",
    "pathway_ceiling", "write_artefacts",
]
