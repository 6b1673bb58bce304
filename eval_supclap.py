#!/usr/bin/env python
"""Evaluate a SupCLAP or plain CLAP model: retrieval and zero-shot classification.

python eval_supclap.py --model_name_or_path outputs/supclap-demo --eval_data .cache/supclap/demo_corpus_2400 \
    --eval_split test
"""

from modeling_supclap.cli.evaluate import main

if __name__ == "__main__":
    main()
