"""The model's load-time files, and nothing else.

Exactly what ``save_pretrained`` copies next to the weights for ``trust_remote_code`` loading
(tests/model/test_modeling.py checks it: ``test_save_pretrained_copies_exactly_the_model_room``, and
``test_trust_remote_code_loads_where_the_package_is_absent``): flat sibling modules that import each
other with single-level relative imports only (``from .losses import ...``) and nothing else of this
package. Everything else (training, data, evaluation, the command line) lives outside this folder.
"""
