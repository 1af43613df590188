"""Training of the FastSpeech-style starter synthesizer (`synthesizer.fastspeech`).

Loss = L1 + MSE of the mels (real frames only) + duration MSE (log domain) + (with
`pitch_conditioning`) per-character log-F0 MSE and the voice's log-F0 statistics guessed
from its embedding (MSE) + forward-sum
alignment loss (CTC over the aligner's soft alignment) + binarization loss (from
`binarization_start` on) + speaker-consistency losses (from `consistency_start` on, when
their weights are set): the frozen speaker encoder's verdict on the output mels, for the
batch's voices and for voices of a speaker bank (`--speaker-bank`, made by
`python -m deepfake_audio.training.speaker_bank`) that have no recordings in the corpus. Batches are drawn by length (`LengthBuckets`) so that little
compute goes to padding; which items form the batch of a step depends only on
(seed, step), so resumed runs repeat the same batches.

    python -m deepfake_audio.training.fastspeech_train data/starter.npz --run-dir runs/starter
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_audio_core.hparams import field_values
from deepfake_audio.training import TrainingError
from deepfake_audio.training.checkpoints import record_run, restore, save_checkpoint
from deepfake_audio.training.commands import TrainCommand, hparams_epilog, start_run, train_parser
from deepfake_audio.training.distributed import Distributed
from deepfake_audio.training.loop import TrainSummary, batch_loader, freeze_except, optimise, run_loop, warmup_cosine
from deepfake_audio.training.run_logger import plot_matrix, plot_mels
from deepfake_audio.training.sampling import LengthBuckets, step_seed
from deepfake_audio.training.synthesizer_train import SynthesizerData, _Collate, collate
from synthesizer.fastspeech import ARCHITECTURE, TRAINING_FIELDS, FastSpeech, FastSpeechHParams, length_regulate

CHECKPOINT = "synthesizer.pt"
DEFAULTS = FastSpeechHParams()
HPARAMS = field_values(DEFAULTS)


def learning_rate(hp: FastSpeechHParams, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak at `total_steps`."""
    return warmup_cosine(hp.learning_rate, hp.warmup_steps, hp.total_steps, step)


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


def build_parser() -> argparse.ArgumentParser:
    parser = train_parser(
        "sv2tts-starter-train",
        "Train the small FastSpeech-style synthesizer (a learned monotonic aligner, durations, parallel decoding) "
        "that ships as the starter model: it trains on a CPU. The checkpoint <run>/synthesizer.pt records "
        "its architecture and loads in the engine like a Tacotron. A weights-only checkpoint put in the run "
        "folder (an fp16 export) is continued from its step with fresh optimizer state.",
        "pack (.npz) from `python -m deepfake_audio.training.packed`, or a folder written by "
        "sv2tts-synthesizer-preprocess", save_every=500, sample_every=1000, epilog=hparams_epilog(HPARAMS))
    parser.add_argument("--speaker-bank", type=Path, default=None, metavar="NPZ",
                        help="voice embeddings for the bank consistency loss (consistency_bank_weight > 0)")
    return parser


class _PitchCollate:
    """Items (ids, mel, embedding, f0 (T,), pitch stats (2,)) -> `collate`'s batch + "f0" (B, T)
    (0 past each item's end) and "pitch_stats" (B, 2)."""

    def __init__(self, pad_value: float):
        self.pad_value = pad_value

    def __call__(self, batch):
        out = collate([item[:3] for item in batch], self.pad_value)
        f0 = np.zeros((len(batch), out["mels"].size(2)), np.float32)
        for i, item in enumerate(batch):
            f0[i, :len(item[3])] = item[3]
        out["f0"] = torch.from_numpy(f0)
        out["pitch_stats"] = torch.from_numpy(np.stack([item[4] for item in batch]).astype(np.float32))
        return out


class _FolderPitchData(torch.utils.data.Dataset):
    """A preprocessed folder's items with their F0 and their speaker's pitch statistics, as a pack
    with pitch gives them. Every frame's F0 is measured once, from the processed audio, when
    the dataset is made (a few seconds for the minutes of one voice a fine-tuning uses)."""

    def __init__(self, records: list[dict], items: SynthesizerData):
        from deepfake_audio.training.packed import frame_f0, speaker_pitch_stats
        if any("audio" not in r for r in records):
            raise TrainingError("pitch_conditioning needs the processed audio of every utterance: preprocess the "
                                "corpus again.")
        self.items = items
        self.f0 = [frame_f0(np.load(r["audio"]), int(r["n_frames"])) for r in records]
        offsets = np.cumsum([0] + [len(f) for f in self.f0])
        self.stats = speaker_pitch_stats(np.concatenate(self.f0), offsets, np.asarray([r["speaker"] for r in records]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item):
        ids, mel, embed = self.items[item]
        f0 = np.zeros(mel.shape[1], np.float32)
        measured = self.f0[item[0]].astype(np.float32)[:mel.shape[1]]
        f0[:len(measured)] = measured
        return ids, mel, embed, f0, self.stats[item[0]]


def _dataset(path: Path, pitch: bool = False):
    if path.is_file():
        from deepfake_audio.training.packed import PackedSynthesizerData
        data = PackedSynthesizerData(path, pitch=pitch)
        return data, np.diff(data.mel_offsets)
    from synthesizer.hparams import hparams as tacotron_hparams
    from deepfake_audio.training.files import read_metadata
    records = read_metadata(path, ("mel", "embed", "text"))
    data = SynthesizerData(records, tacotron_hparams)
    return (_FolderPitchData(records, data) if pitch else data), np.asarray([r["n_frames"] for r in records])


def train(args, dist: Distributed) -> TrainSummary:
    run = start_run(args, DEFAULTS, CHECKPOINT, TRAINING_FIELDS)
    if run.source and run.source.get("architecture", "tacotron") != ARCHITECTURE:
        where = run.checkpoint if run.resume is not None else args.init
        raise TrainingError(f"{where} is a {run.source.get('architecture', 'tacotron')} checkpoint, not a "
                            f"{ARCHITECTURE} one.")
    hp = run.hp

    torch.manual_seed(args.seed)
    model = FastSpeech(hp).to(dist.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, betas=(0.9, 0.98), eps=1e-9,
                                  weight_decay=1e-6)
    weights_only = run.resume is not None and "optimizer_state" not in run.resume
    if weights_only:
        # Exported weights placed in the run folder (the starter recipe commits only these between
        # sessions): continue from their step with fresh Adam moments.
        run.init, run.resume = run.resume, None
        args.init = run.checkpoint
    _add_pitch_weights(run, model)
    restore(run, args, model, optimizer, "synthesizer")
    freeze_except(model, args.train_only)
    if run.resume is None and not weights_only:
        model.step.zero_()  # --init starts a new run from other weights
    start_step = int(model.step.item())
    end_step = args.steps if args.steps is not None else hp.total_steps

    dataset, lengths = _dataset(args.data, hp.pitch_conditioning)
    sampler = LengthBuckets(lengths, hp.batch_size, args.seed, start_step, end_step, fixed=args.overfit_batch)
    collate_fn = (_PitchCollate if hp.pitch_conditioning else _Collate)(-hp.max_abs_value)
    loader = batch_loader(dataset, sampler, collate_fn, args, dist)
    record_run(args, dist, asdict(hp), architecture=ARCHITECTURE)
    consistency, bank = _consistency(hp, args.speaker_bank, dist.device)
    model.train()
    last: dict = {}

    def train_step(batch: dict, step: int) -> dict:
        lr = learning_rate(hp, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(dist.device) for k, v in batch.items()}
        torch.manual_seed(step_seed(args.seed, step, dist.rank, salt=3))  # dropout masks repeat on resume
        out = model(batch["chars"], batch["mels"], batch["embeds"], batch["char_lens"], batch["mel_lens"],
                    batch.get("f0"), batch.get("pitch_stats"))
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
        if hp.pitch_conditioning:
            pitch_loss = ((out["pitch"] - out["pitch_target"]).pow(2) * char_mask).sum() / char_mask.sum()
            known = ~torch.isnan(batch["pitch_stats"])
            stats_loss = ((out["stats"] - batch["pitch_stats"].nan_to_num()).pow(2) * known).sum() / known.sum().clamp_min(1)
            loss = loss + hp.pitch_loss_weight * (pitch_loss + stats_loss)
            values.update(pitch_loss=pitch_loss.item(), pitch_stats_loss=stats_loss.item())
        if step >= hp.binarization_start:
            bin_loss = binarization_loss(out["log_alignment"], out["durations"], batch["mel_lens"])
            loss = loss + hp.binarization_loss_weight * bin_loss
            values["binarization_loss"] = bin_loss.item()
        if consistency is not None and step >= hp.consistency_start:
            generator = torch.Generator().manual_seed(step_seed(args.seed, step, dist.rank, salt=5))
            if hp.consistency_loss_weight:  # on as many of the batch's items as the bank term uses
                n = min(hp.consistency_bank_items, batch["chars"].size(0))
                own = consistency(out["mels"][:n], batch["mel_lens"][:n], batch["embeds"][:n], generator)
                loss = loss + hp.consistency_loss_weight * own
                values["consistency_loss"] = own.item()
            if bank is not None:
                voices = bank[torch.randint(len(bank), (min(hp.consistency_bank_items, len(bank)),),
                                            generator=generator)].to(dist.device)
                k = min(len(voices), batch["chars"].size(0))
                # the batch's texts at the batch's durations, in voices the corpus has no recordings of
                encoded, _, mask = model.encode(batch["chars"][:k], voices[:k])
                if hp.pitch_conditioning:  # at the pitch the model predicts for them
                    median = model.voice_pitch(voices[:k], None)[:, :1].detach()
                    encoded = model.add_pitch(encoded, (model.pitch(encoded, mask) + median) * mask, mask)
                frames = length_regulate(encoded, out["durations"][:k], batch["mels"].size(2))
                bank_mels = model.decode(frames, batch["mel_lens"][:k])
                banked = consistency(bank_mels, batch["mel_lens"][:k], voices[:k], generator)
                loss = loss + hp.consistency_bank_weight * banked
                values["bank_consistency_loss"] = banked.item()
        grad_norm = optimise(model, optimizer, loss, hp.clip_grad_norm, step)
        last.update(batch=batch, out={k: v.detach() for k, v in out.items()})
        values["alignment_focus"] = alignment_focus(out["log_alignment"].detach(), batch["mel_lens"])
        return {"loss": loss.item(), **values, "grad_norm": grad_norm, "lr": lr}

    def save(step: int) -> None:
        save_checkpoint(run.checkpoint, model, optimizer, export_hparams(hp), backup_every=args.backup_every,
                        current_step=step, extra={"architecture": ARCHITECTURE})

    def sample(_batch, step: int, logger) -> None:
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

    return run_loop(loader, train_step, save, sample, start_step, end_step, args, dist, "synthesizer", model,
                    run.checkpoint)


def _add_pitch_weights(run, model: FastSpeech) -> None:
    """Continuing weights from before pitch conditioning: the pitch modules start as built
    (their input projections at zero, so the model first speaks as the weights did)."""
    source = run.resume if run.resume is not None else run.init
    if source is None or not model.hp.pitch_conditioning:
        return
    from deepfake_audio_core.checkpoint import model_state_of
    state = model_state_of(source, run.checkpoint)
    if any(name.startswith("pitch") for name in state):
        return
    if not isinstance(state, dict):
        return
    for name, tensor in model.state_dict().items():
        if name.split(".")[0] in ("pitch_stats_proj", "pitch_from_speaker", "pitch", "pitch_embed"):
            state[name] = tensor.clone()


def _consistency(hp: FastSpeechHParams, bank_path: Path | None, device):
    """(the speaker-consistency loss or None, the bank's embeddings (K, 256) or None)."""
    if hp.consistency_bank_weight and bank_path is None:
        raise TrainingError("consistency_bank_weight is set but no --speaker-bank was given; make one with "
                            "`python -m deepfake_audio.training.speaker_bank CORPUS OUT.npz`.")
    if not (hp.consistency_loss_weight or hp.consistency_bank_weight):
        return None, None
    from deepfake_audio.training.speaker_bank import load_bank
    from deepfake_audio.training.speaker_loss import load_consistency
    bank = torch.from_numpy(load_bank(bank_path)) if hp.consistency_bank_weight else None
    return load_consistency().to(device), bank


def export_hparams(hp: FastSpeechHParams) -> dict:
    """Every model field (training settings stay in the run folder)."""
    return {k: v for k, v in asdict(hp).items() if k not in TRAINING_FIELDS}


main, cli = TrainCommand(build_parser, train).entry_points()


if __name__ == "__main__":
    raise SystemExit(cli())
