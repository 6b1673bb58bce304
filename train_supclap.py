#!/usr/bin/env python
"""Train a SupCLAP model (thin wrapper: the code is in modeling_supclap/training/).

python train_supclap.py                      # the offline demo, a few minutes on CPU
python train_supclap.py --help               # every option
accelerate launch --multi_gpu --num_processes 8 train_supclap.py --model_name_or_path ...
"""

from modeling_supclap.cli.train import main

if __name__ == "__main__":
    main()
