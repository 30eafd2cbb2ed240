"""HEST-1k data, real or simulated: one reader, cohort selection and patient-grouped folds, QC and the
whole-slide dataset, and the import of one's own Visium section into the same layout.

Modules, in the order the data flows:

- ``hest``: ``read_hest_sample(root, id)`` -> ``HestSample`` (counts, genes, barcodes, coords,
  features and patches joined to the st spots by barcode).
- ``cohort``: ``select_samples`` (metadata filters), ``download_hest`` (the gated HEST-1k dataset),
  ``patient_groups`` / ``patient_folds`` / ``check_cohort_folds`` / ``train_val_split``, and the
  leave-one-study-out split (``study_labels`` / ``study_folds`` / ``check_study_folds``; ``cohort_folds``
  picks the run's ``split``).
- ``dataset``: ``qc_mask``, ``normalize_cp10k``, ``select_genes`` (vocabulary and HVGs of a training
  fold), ``SlideDataset`` and ``collate_slides`` (whole slides, padded).
- ``visium`` (``python -m stflib import-visium``) with its readers in ``visium_read``.

The names below are the package's public interface (``stflib.data.<name>``).
"""
from .cohort import (STUDY_COLUMN, check_cohort_folds, check_study_folds, cohort_folds, download_hest,
                     find_hest_metadata, patient_folds, patient_groups, select_samples, study_folds, study_labels,
                     train_val_split, write_downloaded_metadata)
from .dataset import MITO_PREFIX, SlideDataset, collate_slides, library_size, normalize_cp10k, qc_mask, select_genes
from .hest import ENSEMBL, SYMBOL_COLUMNS, HestSample, decode_barcodes, gene_symbols, read_hest_sample

__all__ = ["ENSEMBL", "MITO_PREFIX", "STUDY_COLUMN", "SYMBOL_COLUMNS", "HestSample", "SlideDataset",
           "check_cohort_folds", "check_study_folds", "cohort_folds", "study_folds", "study_labels",
           "collate_slides", "decode_barcodes", "download_hest", "find_hest_metadata",
           "gene_symbols", "library_size", "normalize_cp10k",
           "patient_folds", "patient_groups", "qc_mask", "read_hest_sample", "select_genes", "select_samples",
           "train_val_split", "write_downloaded_metadata"]
