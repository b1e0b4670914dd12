"""sweepbook: declarative sweeps in JAX, Parquet results, self-contained HTML reports."""

__version__ = "0.1.0"
