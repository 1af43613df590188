"""Tacotron training (teacher forcing) on the output of `synthesizer_preprocess`.

The run follows `tts_schedule`: phases of (r, learning rate, until step, batch size);
r (mel frames per decoder step) is written into the model's `decoder.r` buffer, so a
checkpoint always says which r it was trained with. Loss = (MSE + L1) of the decoder
mels + MSE of the post-net mels + BCE of the stop tokens, plus, optionally, a guided-
attention loss (Tachibana et al., 2017) that pushes the alignment towards the diagonal
so that it appears early.

    sv2tts-synthesizer-train data/synthesizer --run-dir runs/synthesizer
    torchrun --nproc_per_node 4 -m deepfake_audio.training.synthesizer_train data/synthesizer --run-dir runs/synthesizer
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_audio_core.hparams import differences
from deepfake_audio.training import TrainingError
from deepfake_audio.training.checkpoints import record_run, restore, save_checkpoint
from deepfake_audio.training.commands import TrainCommand, start_run, train_parser
from deepfake_audio.training.distributed import Distributed
from deepfake_audio.training.files import read_metadata
from deepfake_audio.training.loop import TrainSummary, batch_loader, finite, freeze_except, run_loop
from deepfake_audio.training.run_logger import plot_matrix, plot_mels
from deepfake_audio.training.sampling import SampleStream, StepBatchSampler, step_seed
from synthesizer.hparams import SynthesizerHParams, hparams as default_hparams
from synthesizer.model import Tacotron
from synthesizer.text import text_to_sequence

CHECKPOINT = "synthesizer.pt"
# Settings of the training run only; the checkpoint keeps the others (model and inference).
TRAINING_HPARAMS = ("tts_schedule", "tts_clip_grad_norm", "max_mel_frames", "trim_silence",
                    "utterance_min_duration", "silence_min_duration_split")


def hparams_overrides(hp: SynthesizerHParams) -> dict:
    """The model and inference fields of `hp` that differ from the published hparams, as plain values."""
    return differences(hp, default_hparams, skip=TRAINING_HPARAMS)


def schedule_phase(hp: SynthesizerHParams, step: int) -> tuple[int, float, int, int]:
    """(r, learning rate, until step, batch size) in force at `step`; the last phase continues."""
    for phase in hp.tts_schedule:
        if step < phase[2]:
            return phase
    return hp.tts_schedule[-1]


def init_weights(model: Tacotron) -> None:
    """Xavier-uniform for every matrix, as the reference initialises a new Tacotron."""
    for p in model.parameters():
        if p.dim() > 1:
            torch.nn.init.xavier_uniform_(p)


class SynthesizerData(torch.utils.data.Dataset):
    """Item (index, key) -> (char ids (N,), mel (80, T), speaker embedding (256,))."""

    def __init__(self, records: list[dict], hp: SynthesizerHParams):
        self.records = records
        self.ids = [np.asarray(text_to_sequence(r["text"], hp.tts_cleaner_names), np.int64) for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: tuple[int, int]):
        index = item[0]
        record = self.records[index]
        return self.ids[index], np.load(record["mel"]), np.load(record["embed"])


def collate(batch, pad_value: float) -> dict[str, torch.Tensor]:
    """Pad a list of items: chars with 0, mels with the silence value, stop targets with 1."""
    n_chars = max(len(ids) for ids, _, _ in batch)
    n_frames = max(mel.shape[1] for _, mel, _ in batch)
    chars = np.zeros((len(batch), n_chars), np.int64)
    mels = np.full((len(batch), batch[0][1].shape[0], n_frames), pad_value, np.float32)
    stop = np.ones((len(batch), n_frames), np.float32)
    for i, (ids, mel, _) in enumerate(batch):
        chars[i, :len(ids)] = ids
        mels[i, :, :mel.shape[1]] = mel
        stop[i, :mel.shape[1] - 1] = 0.0
    return {"chars": torch.from_numpy(chars), "mels": torch.from_numpy(mels), "stop": torch.from_numpy(stop),
            "embeds": torch.from_numpy(np.stack([e for _, _, e in batch]).astype(np.float32)),
            "char_lens": torch.tensor([len(ids) for ids, _, _ in batch]),
            "mel_lens": torch.tensor([mel.shape[1] for _, mel, _ in batch])}


class _Collate:
    def __init__(self, pad_value: float):
        self.pad_value = pad_value

    def __call__(self, batch):
        return collate(batch, self.pad_value)


def guided_attention_loss(attention: torch.Tensor, char_lens: torch.Tensor, mel_lens: torch.Tensor, r: int,
                          sigma: float = 0.2) -> torch.Tensor:
    """Attention (B, steps, N) weighted by 1 - exp(-(n/N - t/T)^2 / 2 sigma^2), summed over each item's
    steps and divided by its (steps x characters) cells.

    Attention on padding gets the full weight 1: the reference's attention multiplies padded
    energies by 0 instead of masking them, so without this the cheapest way to lower the loss
    is to attend to the padding of the batch's shorter items.
    """
    _, n_steps, n_chars = attention.shape
    device = attention.device
    steps = torch.ceil(mel_lens.to(device).float() / r)[:, None, None]
    chars = char_lens.to(device).float()[:, None, None]
    t = torch.arange(n_steps, device=device).float()[None, :, None]
    n = torch.arange(n_chars, device=device).float()[None, None, :]
    weight = 1.0 - torch.exp(-((n / chars - t / steps) ** 2) / (2 * sigma ** 2))
    weight = torch.where(n < chars, weight, torch.ones_like(weight))
    inside = ((t < steps) & (n < chars)).float()
    return (attention * weight * (t < steps).float()).sum() / inside.sum()


def attention_focus(attention: torch.Tensor, mel_lens: torch.Tensor, r: int) -> float:
    """Mean over real decoder steps of the largest attention weight: near 1 once the model attends
    to one character at a time (an alignment has formed), about 1/N while it is spread out."""
    steps = torch.ceil(mel_lens.to(attention.device).float() / r)
    valid = torch.arange(attention.size(1), device=attention.device)[None, :] < steps[:, None]
    return float((attention.max(dim=2).values * valid).sum() / valid.sum())


def pad_to_multiple(batch: dict, r: int, pad_value: float) -> dict:
    extra = (-batch["mels"].shape[2]) % r
    if extra:
        batch = dict(batch)
        batch["mels"] = F.pad(batch["mels"], (0, extra), value=pad_value)
        batch["stop"] = F.pad(batch["stop"], (0, extra), value=1.0)
    return batch


def build_parser(prog: str = "sv2tts-synthesizer-train") -> argparse.ArgumentParser:
    parser = train_parser(
        prog,
        "Train the Tacotron synthesizer on the output of sv2tts-synthesizer-preprocess, following the "
        "reduction-factor / learning-rate / batch-size schedule tts_schedule. The checkpoint <run>/synthesizer.pt "
        "has the published layout (model_state, optimizer_state) and loads in the engine. Runs on several GPUs "
        "or machines under torchrun (DistributedDataParallel): the batch size is per process.",
        "folder written by sv2tts-synthesizer-preprocess, or a pack of one made by "
        "`python -m deepfake_audio.training.packed`", save_every=1000, sample_every=500,
        epilog="Schedule (r, lr, until step, batch): " + str(default_hparams.tts_schedule) + ". Any field of "
               "SynthesizerHParams can be set with --hparams, e.g. tts_lstm_dims=512 "
               "'tts_schedule=((2, 1e-3, 20000, 12),)'.")
    parser.add_argument("--guided-attention", type=float, default=0.0, metavar="WEIGHT",
                        help="weight of the guided-attention loss that favours diagonal alignments (default 0: "
                             "off; 1-10 makes alignment appear within a few thousand steps)")
    parser.add_argument("--guided-attention-sigma", type=float, default=0.2, metavar="G",
                        help="width of the diagonal band the guided-attention loss allows (default 0.2)")
    return parser


def train(args, dist: Distributed) -> TrainSummary:
    run = start_run(args, default_hparams, CHECKPOINT, TRAINING_HPARAMS)
    hp = run.hp
    if not hp.tts_schedule:
        raise TrainingError("tts_schedule is empty.")
    for r, *_ in hp.tts_schedule:
        if not 1 <= r <= hp.max_r:
            raise TrainingError(f"the schedule asks for r = {r}, but the model allows 1 to max_r = {hp.max_r}.")
    pad_value = -hp.max_abs_value

    torch.manual_seed(args.seed)
    model = Tacotron(hp)
    init_weights(model)
    model.to(dist.device)
    optimizer = torch.optim.Adam(model.parameters())
    restore(run, args, model, optimizer, "synthesizer")
    freeze_except(model, args.train_only)
    if run.resume is None:
        model.step.zero_()
    start_step = int(model.step.item())
    end_step = args.steps if args.steps is not None else hp.tts_schedule[-1][2]

    if args.data.is_file():  # a pack written by deepfake_audio.training.packed
        from deepfake_audio.training.packed import PackedSynthesizerData
        dataset = PackedSynthesizerData(args.data)
    else:
        dataset = SynthesizerData(read_metadata(args.data, ("mel", "embed", "text")), hp)
    phases = [(until, batch) for _, _, until, batch in hp.tts_schedule]
    sampler = StepBatchSampler(SampleStream(len(dataset), args.seed), phases, start_step, end_step, dist.rank,
                               dist.world_size, args.overfit_batch)
    loader = batch_loader(dataset, sampler, _Collate(pad_value), args, dist)
    record_run(args, dist, asdict(hp))
    ddp = dist.wrap(model)
    model.train()
    last: dict = {}

    def train_step(batch: dict, step: int) -> dict:
        r, lr, _, _ = schedule_phase(hp, step)
        model.decoder.r.fill_(r)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(dist.device, non_blocking=True) for k, v in pad_to_multiple(batch, r, pad_value).items()}
        # Dropout masks from a (seed, step, rank) generator: a resumed run repeats them exactly.
        generator = torch.Generator(device=dist.device).manual_seed(step_seed(args.seed, step, dist.rank, salt=3))
        mels = batch["mels"]
        decoder_mels, postnet_mels, attention, stop = ddp(batch["chars"], mels, batch["embeds"], generator)
        mel_loss = F.mse_loss(decoder_mels, mels) + F.l1_loss(decoder_mels, mels)
        postnet_loss = F.mse_loss(postnet_mels, mels)
        stop_loss = F.binary_cross_entropy(stop, batch["stop"])
        loss = mel_loss + postnet_loss + stop_loss
        values = {"mel_loss": mel_loss.item(), "postnet_loss": postnet_loss.item(), "stop_loss": stop_loss.item()}
        if args.guided_attention > 0:
            ga = guided_attention_loss(attention, batch["char_lens"], batch["mel_lens"], r,
                                       args.guided_attention_sigma)
            loss = loss + args.guided_attention * ga
            values["guided_attention_loss"] = ga.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), hp.tts_clip_grad_norm)
        if finite(grad_norm):  # a bad batch must not poison the weights
            optimizer.step()
        model.step.fill_(step + 1)
        last.update(batch=batch, postnet=postnet_mels.detach(), attention=attention.detach())
        values["attention_focus"] = attention_focus(attention.detach(), batch["mel_lens"], r)
        return {"loss": loss.item(), **values, "grad_norm": float(grad_norm), "lr": lr, "r": r}

    def save(step: int) -> None:
        save_checkpoint(run.checkpoint, model, optimizer, hparams_overrides(hp), backup_every=args.backup_every,
                        current_step=step)

    def sample(_batch, step: int, logger) -> None:
        from synthesizer.audio import griffin_lim
        n_frames = int(last["batch"]["mel_lens"][0])
        n_chars = int(last["batch"]["char_lens"][0])
        steps = math.ceil(n_frames / model.r)
        target = last["batch"]["mels"][0, :, :n_frames].cpu().numpy()
        predicted = last["postnet"][0, :, :n_frames].cpu().numpy()
        logger.figure(step, "synthesizer/attention", plot_matrix(
            last["attention"][0, :steps, :n_chars].cpu().numpy().T, f"attention, step {step}",
            "decoder step", "character"))
        logger.figure(step, "synthesizer/mel", plot_mels({"target": target, "predicted (teacher-forced)": predicted}))
        wav = griffin_lim(predicted, hp, rng=np.random.RandomState(0))
        logger.audio(step, "synthesizer/griffin_lim", wav, hp.sample_rate)

    return run_loop(loader, train_step, save, sample, start_step, end_step, args, dist, "synthesizer", model,
                    run.checkpoint)


main, cli = TrainCommand(build_parser, train).entry_points()

if __name__ == "__main__":
    raise SystemExit(cli())
