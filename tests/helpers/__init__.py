"""Shared test helpers (a package, so tests import them by name instead of from ``conftest.py``).

* ``cli``: the command lines of the real entry points (``run_script``, ``tiny_train_args``).
* ``toy``: a separable three-class toy audio-caption set and its processor.
* ``reference``: a loop-by-loop reference of the loss family, and the ten loss variants.
* ``retrieval_reference``: the retrieval metric's previous (two-pass) implementation, the exactness
  reference of the shipped one-pass module.
* ``hub_server``: a loopback stand-in of the Hugging Face Hub HTTP API.

Fixtures (``small_corpus_cache``) live in ``conftest.py``.
"""
