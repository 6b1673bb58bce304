"""The model's load-time files, and nothing else.

Exactly what ``save_pretrained`` copies next to the weights for ``trust_remote_code`` loading
(tests/model/test_remote_code.py checks it): flat sibling modules that import each other with
single-level relative imports only (``from .losses import ...``) and nothing else of this package.
Everything else (training, data, evaluation, the command line) lives outside this folder.
"""
