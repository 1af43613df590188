"""Training of the FastSpeech-style starter synthesizer (`synthesizer.fastspeech`).

Loss = L1 + MSE of the mels (real frames only) + duration MSE (log domain) + forward-sum
alignment loss (CTC over the aligner's soft alignment) + binarization loss (from
`binarization_start` on). Batches are drawn by length (`LengthBuckets`) so that little
compute goes to padding; which items form the batch of a step depends only on
(seed, step), so resumed runs repeat the same batches.

    python -m synthesizer.train_fastspeech data/starter.npz --run-dir runs/starter
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_audio.training import (Distributed, RunLogger, TrainSummary, TrainingError, add_common_train_options,
                                     checkpoint_hparams, finite, fit, load_model_state, load_optimizer_state,
                                     open_run, parse_overrides, plot_matrix, plot_mels, previous_settings, run_cli,
                                     save_checkpoint, step_seed, write_run_settings)
from synthesizer.fastspeech import ARCHITECTURE, TRAINING_FIELDS, FastSpeech, FastSpeechHParams

CHECKPOINT = "synthesizer.pt"
DEFAULTS = FastSpeechHParams()
HPARAMS = {f.name: getattr(DEFAULTS, f.name) for f in fields(FastSpeechHParams)}


def with_overrides(hp: FastSpeechHParams, overrides) -> FastSpeechHParams:
    from dataclasses import replace
    changes = {k: v for k, v in dict(overrides or {}).items() if k in HPARAMS}
    return replace(hp, **changes) if changes else hp


def learning_rate(hp: FastSpeechHParams, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak at `total_steps`."""
    if step < hp.warmup_steps:
        return hp.learning_rate * (step + 1) / hp.warmup_steps
    progress = min(1.0, (step - hp.warmup_steps) / max(1, hp.total_steps - hp.warmup_steps))
    return hp.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class LengthBuckets(torch.utils.data.Sampler):
    """Batches of similar length for steps `start`..`end`, each a pure function of (seed, step).

    Steps come in groups of `group` steps; a group takes the next group * batch items of
    an endless stream of epoch permutations, sorts them by length, cuts them into
    batches and shuffles the order of those batches.
    """

    def __init__(self, lengths: np.ndarray, batch: int, seed: int, start: int, end: int, group: int = 50):
        self.lengths, self.batch, self.seed, self.start, self.end, self.group = lengths, batch, seed, start, end, group
        self._cache: dict[int, list[list[int]]] = {}

    def _stream(self, position: int, count: int) -> np.ndarray:
        n = len(self.lengths)
        out = []
        while count > 0:
            epoch, offset = divmod(position, n)
            perm = np.random.default_rng(step_seed(self.seed, epoch, salt=1)).permutation(n)
            take = perm[offset:offset + count]
            out.append(take)
            position += len(take)
            count -= len(take)
        return np.concatenate(out)

    def batches_of_group(self, g: int) -> list[list[int]]:
        if g not in self._cache:
            items = self._stream(g * self.group * self.batch, self.group * self.batch)
            items = items[np.argsort(self.lengths[items], kind="stable")]
            batches = [items[i * self.batch:(i + 1) * self.batch].tolist() for i in range(self.group)]
            order = np.random.default_rng(step_seed(self.seed, g, salt=2)).permutation(self.group)
            self._cache = {g: [batches[i] for i in order]}
        return self._cache[g]

    def __iter__(self):
        for step in range(self.start, self.end):
            g, k = divmod(step, self.group)
            yield [(index, step) for index in self.batches_of_group(g)[k]]

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def collate(batch, pad_value: float) -> dict[str, torch.Tensor]:
    """Items (ids (N,), mel (80, T), embed (256,)) -> padded tensors and lengths."""
    n_chars = max(len(ids) for ids, _, _ in batch)
    n_frames = max(mel.shape[1] for _, mel, _ in batch)
    chars = np.zeros((len(batch), n_chars), np.int64)
    mels = np.full((len(batch), batch[0][1].shape[0], n_frames), pad_value, np.float32)
    for i, (ids, mel, _) in enumerate(batch):
        chars[i, :len(ids)] = ids
        mels[i, :, :mel.shape[1]] = mel
    return {"chars": torch.from_numpy(chars), "mels": torch.from_numpy(mels),
            "embeds": torch.from_numpy(np.stack([e for _, _, e in batch]).astype(np.float32)),
            "char_lens": torch.tensor([len(ids) for ids, _, _ in batch]),
            "mel_lens": torch.tensor([mel.shape[1] for _, mel, _ in batch])}


class _Collate:
    def __init__(self, pad_value: float):
        self.pad_value = pad_value

    def __call__(self, batch):
        return collate(batch, self.pad_value)


def forward_sum_loss(log_alignment: torch.Tensor, char_lens: torch.Tensor, mel_lens: torch.Tensor,
                     blank_logprob: float = -1.0) -> torch.Tensor:
    """CTC of the monotonic path through every character (RAD-TTS's forward-sum loss).

    log_alignment (B, T, N) log-probabilities of frame t on character n. A blank class
    with constant score is added; targets are 1..N of each item.
    """
    b, t, n = log_alignment.shape
    padded = F.pad(log_alignment, (1, 0), value=blank_logprob)
    char_mask = torch.arange(n + 1, device=padded.device)[None, None, :] <= char_lens[:, None, None]
    padded = padded.masked_fill(~char_mask, -1e4)
    log_probs = torch.log_softmax(padded, dim=-1).transpose(0, 1)  # (T, B, N + 1)
    targets = torch.arange(1, n + 1, device=padded.device)[None, :].expand(b, -1)
    return F.ctc_loss(log_probs, targets, mel_lens, char_lens, blank=0, reduction="mean", zero_infinity=True)


def binarization_loss(log_alignment: torch.Tensor, durations: torch.Tensor, mel_lens: torch.Tensor) -> torch.Tensor:
    """-mean log-probability of the soft alignment on the hard path."""
    b, t, n = log_alignment.shape
    ends = durations.cumsum(1)
    frames = torch.arange(t, device=durations.device)
    index = (ends[:, None, :] <= frames[None, :, None]).sum(-1).clamp_max(n - 1)  # (B, T)
    picked = torch.gather(log_alignment, 2, index[..., None]).squeeze(-1)
    valid = frames[None, :] < mel_lens[:, None]
    return -(picked.clamp_min(-1e4) * valid).sum() / valid.sum()


def alignment_focus(log_alignment: torch.Tensor, mel_lens: torch.Tensor) -> float:
    """Mean over real frames of the soft alignment's largest probability (1 = one character per frame)."""
    valid = torch.arange(log_alignment.size(1), device=log_alignment.device)[None, :] < mel_lens[:, None]
    return float((log_alignment.max(dim=2).values.exp() * valid).sum() / valid.sum())


def build_parser(prog: str = "python -m synthesizer.train_fastspeech") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train the FastSpeech-style starter synthesizer (learned aligner, durations) on a "
                               "synthesizer pack or a folder written by sv2tts-synthesizer-preprocess.")
    parser.add_argument("data", type=Path, help="pack (.npz) from `python -m synthesizer.packed`, or a "
                                                "preprocessed folder")
    add_common_train_options(parser, save_every=500, sample_every=1000)
    return parser


def main(argv: list[str] | None = None) -> TrainSummary:
    args = build_parser().parse_args(argv)
    dist = Distributed.setup(args.device or "cpu")
    try:
        return train(args, dist)
    finally:
        dist.close()


def _dataset(path: Path):
    if path.is_file():
        from synthesizer.packed import PackedSynthesizerData
        data = PackedSynthesizerData(path)
        return data, np.diff(data.mel_offsets)
    from synthesizer.hparams import hparams as tacotron_hparams
    from synthesizer.train import SynthesizerData
    from deepfake_audio.training import read_metadata
    records = read_metadata(path, ("mel", "embed", "text"))
    return SynthesizerData(records, tacotron_hparams), np.asarray([r["n_frames"] for r in records])


def train(args, dist: Distributed) -> TrainSummary:
    overrides = parse_overrides(args.hparams, HPARAMS)
    ckpt_path, resume, init = open_run(args.run_dir, CHECKPOINT, args.init)
    source = resume or init
    if source is not None and source.get("architecture", "tacotron") != ARCHITECTURE:
        raise TrainingError(f"{args.init if resume is None else ckpt_path} is a {source.get('architecture', 'tacotron')}"
                            f" checkpoint, not a {ARCHITECTURE} one.")
    hp = with_overrides(DEFAULTS, checkpoint_hparams(source or {}))
    if resume is not None:
        hp = with_overrides(hp, previous_settings(args.run_dir, TRAINING_FIELDS))
    hp = with_overrides(hp, overrides)

    torch.manual_seed(args.seed)
    model = FastSpeech(hp).to(dist.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, betas=(0.9, 0.98), eps=1e-9,
                                  weight_decay=1e-6)
    start_step = 0
    if resume is not None:
        load_model_state(model, resume, ckpt_path, "synthesizer")
        if "optimizer_state" in resume:
            load_optimizer_state(optimizer, resume, ckpt_path)
        start_step = int(model.step.item())
    elif init is not None:
        load_model_state(model, init, args.init, "synthesizer")
        if args.steps is None:
            model.step.zero_()
        start_step = int(model.step.item())
    end_step = args.steps if args.steps is not None else hp.total_steps

    dataset, lengths = _dataset(args.data)
    sampler = LengthBuckets(lengths, hp.batch_size, args.seed, start_step, end_step)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=_Collate(-hp.max_abs_value),
                                         num_workers=args.workers)
    if dist.is_main:
        write_run_settings(args.run_dir, {**vars(args), "hparams": asdict(hp), "architecture": ARCHITECTURE})
    model.train()
    logger = RunLogger(args.run_dir, dist, start_step, end_step, args.quiet)
    last: dict = {}

    def train_step(batch: dict, step: int) -> dict:
        lr = learning_rate(hp, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(dist.device) for k, v in batch.items()}
        torch.manual_seed(step_seed(args.seed, step, dist.rank, salt=3))  # dropout masks repeat on resume
        out = model(batch["chars"], batch["mels"], batch["embeds"], batch["char_lens"], batch["mel_lens"])
        frame_mask = (torch.arange(batch["mels"].size(2))[None, :] < batch["mel_lens"][:, None])[:, None, :]
        n_values = frame_mask.sum() * hp.num_mels
        diff = (out["mels"] - batch["mels"]) * frame_mask
        mel_loss = diff.abs().sum() / n_values + diff.pow(2).sum() / n_values
        char_mask = out["char_mask"]
        target = torch.log1p(out["durations"].float())
        dur_loss = ((out["log_durations"] - target).pow(2) * char_mask).sum() / char_mask.sum()
        align_loss = forward_sum_loss(out["log_alignment"], batch["char_lens"], batch["mel_lens"])
        loss = mel_loss + hp.duration_loss_weight * dur_loss + hp.align_loss_weight * align_loss
        values = {"mel_loss": mel_loss.item(), "duration_loss": dur_loss.item(), "align_loss": align_loss.item()}
        if step >= hp.binarization_start:
            bin_loss = binarization_loss(out["log_alignment"], out["durations"], batch["mel_lens"])
            loss = loss + hp.binarization_loss_weight * bin_loss
            values["binarization_loss"] = bin_loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), hp.clip_grad_norm)
        if finite(grad_norm):
            optimizer.step()
        model.step.fill_(step + 1)
        last.update(batch=batch, out={k: v.detach() for k, v in out.items()})
        values["alignment_focus"] = alignment_focus(out["log_alignment"].detach(), batch["mel_lens"])
        return {"loss": loss.item(), **values, "grad_norm": float(grad_norm), "lr": lr}

    def save(step: int) -> None:
        save_checkpoint(ckpt_path, model, optimizer, export_hparams(hp), backup_every=args.backup_every,
                        current_step=step, extra={"architecture": ARCHITECTURE})

    def sample(_batch, step: int) -> None:
        from synthesizer.audio import griffin_lim
        from synthesizer.hparams import hparams as mel_hparams
        n_frames = int(last["batch"]["mel_lens"][0])
        n_chars = int(last["batch"]["char_lens"][0])
        alignment = last["out"]["log_alignment"][0, :n_frames, :n_chars].exp().cpu().numpy()
        logger.figure(step, "synthesizer/alignment", plot_matrix(alignment.T, f"soft alignment, step {step}",
                                                                 "frame", "character"))
        predicted = last["out"]["mels"][0, :, :n_frames].cpu().numpy()
        target = last["batch"]["mels"][0, :, :n_frames].cpu().numpy()
        logger.figure(step, "synthesizer/mel", plot_mels({"target": target, "predicted (hard durations)": predicted}))
        logger.audio(step, "synthesizer/griffin_lim", griffin_lim(predicted, mel_hparams,
                                                                  rng=np.random.RandomState(0)), 16000)

    try:
        losses = fit(loader, train_step, save, sample, start_step, args, logger, dist, "synthesizer")
    finally:
        logger.close()
    return TrainSummary(ckpt_path, start_step, start_step + len(losses), losses, model)


def export_hparams(hp: FastSpeechHParams) -> dict:
    """Every model field (training settings stay in the run folder)."""
    return {k: v for k, v in asdict(hp).items() if k not in TRAINING_FIELDS}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
