"""Run by test_trainer_peft_pipeline.py under `torch.distributed.run --nproc_per_node 2`.

A plain transformers.Trainer trains a tiny SupClap for two steps; every call of the loss records
what it saw (local and gathered embeddings, scales, loss) into <out>/rank<r>.pt.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests folder, for its helpers package

from helpers.toy import toy_processor, toy_rows  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

import modeling_supclap.model.losses as losses  # noqa: E402
from modeling_supclap import SupClapConfig, SupClapModel  # noqa: E402
from modeling_supclap.data import SupClapCollator  # noqa: E402

out = Path(sys.argv[1])
records: list[dict] = []
original_gather = losses.gather_features
original_forward = losses.SupClapLoss.forward


def recording_gather(text, audio, enabled=True):
    batch = original_gather(text, audio, enabled)
    records.append(
        {
            "num_local": batch.num_local,
            "num_global": batch.num_global,
            "all_text": batch.all_text.detach().clone(),
            "all_audio": batch.all_audio.detach().clone(),
        }
    )
    return batch


def recording_forward(self, text, audio, scale_t, scale_a):
    terms = original_forward(self, text, audio, scale_t, scale_a)
    records[-1].update(
        loss=terms["loss"].detach().clone(),
        scale_t=scale_t.detach().clone(),
        scale_a=scale_a.detach().clone(),
    )
    return terms


losses.gather_features = recording_gather
losses.SupClapLoss.forward = recording_forward

torch.manual_seed(0)
config = SupClapConfig.tiny(svr_mode="none")
model = SupClapModel(config)
processor = toy_processor(config)
args = TrainingArguments(
    str(out / "work"),
    per_device_train_batch_size=6,
    max_steps=2,
    learning_rate=1e-3,
    report_to=[],
    remove_unused_columns=False,
    use_cpu=True,
    ddp_backend="gloo",
    save_strategy="no",
    logging_steps=1,
    dataloader_num_workers=0,
    disable_tqdm=True,
    seed=0,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=toy_rows(24),
    data_collator=SupClapCollator(processor, caption_choice="first"),
)
trainer.train()
assert dist.is_initialized() and dist.get_world_size() == 2
torch.save(records, out / f"rank{dist.get_rank()}.pt")
dist.barrier()  # no rank leaves while the other still talks to it
# End here, without running destructors: freeing the Trainer's DDP model and the gloo group at interpreter
# exit can deadlock (gloo's destructor joins its worker thread while holding the GIL the thread waits for).
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
