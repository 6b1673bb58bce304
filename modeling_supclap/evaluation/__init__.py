"""Evaluation: encode a corpus, score it, print it.

``encode.py`` turns records into embeddings; ``scoring.py`` (``evaluate_records``) scores them with the
``evaluate`` modules of ``metrics/`` (``retrieval.py``, ``zero_shot.py`` say what is scored against what);
``suites.py`` holds the standard evaluation suites (``--eval_suite esc50`` ...); ``report.py`` prints
results for people; ``trainer.py`` is the ``compute_metrics`` of a plain ``transformers.Trainer``.
"""

from .encode import EncodedCorpus, encode_audio, encode_records, encode_texts
from .scoring import evaluate_records, mean_recall_at_1
from .zero_shot import DEFAULT_PROMPT_TEMPLATE

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "EncodedCorpus",
    "encode_audio",
    "encode_records",
    "encode_texts",
    "evaluate_records",
    "mean_recall_at_1",
]
