"""Checkpoints of other code bases converted into SupClap models, with a report of every tensor.

``laion_clap.py``: LAION-CLAP's own ``.pt`` checkpoints (``supclap-convert --from laion_clap``);
``checkpoint_file.py``: reading a ``.pt`` without running code from it; ``report.py``: what went where.
Layered like ``hub``: it uses ``model``, ``data`` and ``files``; only the command line uses it.
"""

from .laion_clap import LaionConversion, convert_laion_clap
from .report import REPORT_FILE, ConversionError, ConversionReport

__all__ = ["REPORT_FILE", "ConversionError", "ConversionReport", "LaionConversion", "convert_laion_clap"]
