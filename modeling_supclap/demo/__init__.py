"""The offline demo corpus: synthetic sound events with free-form captions in up to seven languages.

``corpus.py`` builds it (an audiofolder, cached); ``sounds.py`` synthesises the clips, ``captions.py``
writes the English captions and ``languages.py`` the other languages' grammars; ``processor.py`` makes the
processor a model trained on it from scratch uses.
"""

from .corpus import DEMO_LANGUAGES, build_demo_corpus, check_demo_languages, demo_class_labels
from .processor import build_demo_processor

__all__ = [
    "DEMO_LANGUAGES",
    "build_demo_corpus",
    "build_demo_processor",
    "check_demo_languages",
    "demo_class_labels",
]
