"""The SupCLAP demo app (``python app.py``, the same as ``supclap-app``; ``--help`` lists the options).

A Hugging Face Space runs this file as it is. ``MODEL_NAME_OR_PATH`` is the model it serves when started
without ``--model_name_or_path``: ``None`` is the demo model (trained once if missing); the copy that
``supclap-push --hub_space_id`` writes into a Space names the pushed model.
"""

import sys

from modeling_supclap.cli.app import main

MODEL_NAME_OR_PATH = None

if __name__ == "__main__":
    main(sys.argv[1:], default_model_name_or_path=MODEL_NAME_OR_PATH)
