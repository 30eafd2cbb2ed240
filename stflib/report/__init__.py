"""The book's results pages, computed from ``results/``: no figure in them is typed by hand.

- :mod:`~stflib.report.results`: reading ``results/summary.csv`` and run folders;
- :mod:`~stflib.report.stats`: paired intervals, Holm correction, factorial effects;
- :mod:`~stflib.report.tables`: arm tables, paired differences, run flags, the grid's cost;
- :mod:`~stflib.report.figures`: figures of an axis and of the whole grid;
- :mod:`~stflib.report.findings`: readings, takeaways and findings written from the numbers;
- :mod:`~stflib.report.claims`: the training recipe's must-show claims, read from the grid;
- :mod:`~stflib.report.context`: the context page's context-matched comparisons and its ceilings;
- :mod:`~stflib.report.pages`: page bodies (an axis's report, banners) and the API tables.
"""
