"""Scale-out: the training commands under torchrun with DistributedDataParallel (2 CPU processes, gloo)."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from deepfake_audio_core.checkpoint import read_checkpoint
from training_fixtures import QUIET, SYNTH_TINY, synthesizer_data

TESTS = Path(__file__).resolve().parent


def test_two_ranks_hold_identical_weights(tmp_path, tmp_path_factory, seed1_dir):
    data = synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(TESTS / "ddp_train.py"), "synthesizer", str(tmp_path), str(data), "--run-dir", str(run),
               "--steps", "3", "--device", "cpu", "--hparams", *SYNTH_TINY, *QUIET]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # Each rank trained on its own share of the data...
    assert rank0["losses"] != rank1["losses"] and len(rank0["losses"]) == 3
    # ...yet the averaged gradients keep every parameter identical.
    assert rank0["params"].keys() == rank1["params"].keys()
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
    # Only rank 0 wrote: one checkpoint (with rank 0's weights) and one TensorBoard file.
    ckpt = read_checkpoint(run / "synthesizer.pt")
    assert int(ckpt["model_state"]["step"]) == 3
    for name, value in rank0["params"].items():
        assert torch.equal(ckpt["model_state"][name], value), name
    assert len(list((run / "logs").iterdir())) == 1
