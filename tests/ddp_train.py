"""Started by torchrun in test_training_ddp: train one stage, then save this rank's parameters.

    torchrun --nproc_per_node 2 tests/ddp_train.py STAGE OUT_DIR [training options...]
"""
import importlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

stage, out = sys.argv[1], Path(sys.argv[2])
summary = importlib.import_module(f"deepfake_audio.training.{stage}_train").main(sys.argv[3:])
params = {name: p.detach().cpu().clone() for name, p in summary.model.named_parameters()}
torch.save({"params": params, "losses": summary.losses}, out / f"rank{os.environ['RANK']}.pt")
