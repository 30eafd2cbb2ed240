"""stflib: the slim library behind the stf-book (SpatialTranscriptFormer teaching and ablations).

The book's code is this library's code: notebooks import from here and stay thin.
"""

__version__ = "0.1.0"
