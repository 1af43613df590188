"""Training of the starter vocoder (`vocoder.starter_model`) on a CPU.

Loss = multi-resolution STFT distance (spectral convergence + log-magnitude L1 at five
FFT sizes, Yamamoto et al. 2020) between the output and the recording, plus, for the
source-filter design, the pitch read off the mel against the measured F0 (L1 on log-F0,
full weight on voiced frames and a tenth on the F0 interpolated through unvoiced ones)
and a voicing term. Until `teacher_f0_until` the pulse train runs at the measured F0
(interpolated through unvoiced frames), so the filters learn on the right harmonics
while the pitch head learns beside them; after it, at the predicted pitch, as at
inference. Items are random 0.6 s windows; which ones form a step's batch depends only
on (seed, step), so a resumed run sees the same batches.

    python -m deepfake_audio.training.starter_vocoder_data artifacts/corpus/train --out artifacts/vocoder_data
    python -m deepfake_audio.training.starter_vocoder_train artifacts/vocoder_data --run-dir runs/starter_vocoder --time-limit 3600

`--also PACK` adds more packs, drawn from in proportion to their frames: a pack of the
synthesizer's ground-truth-aligned mels (`vocoder_preprocess --synthesizer`, then
`starter_vocoder_data`) teaches the vocoder the smoother mels it is given at clone time
while the recordings' own mels keep it faithful to true mels.

`--hparams adversarial_weight=W feature_weight=V` adds a multi-resolution spectrogram
discriminator (`vocoder_discriminator`), trained beside the vocoder at the same learning
rate, and its least-squares and feature-matching losses to the vocoder's: meant for
fine-tuning a vocoder the STFT loss has already trained (`--init`). Its state is kept in the
checkpoint, so a resumed run continues it too. Measured on the shipped vocoder (bench/RESULTS.md,
2026-12-06): 1,000 such steps kept a little more of the speaker on true mels of held-out voices
but rated lower (DNSMOS) on clones, so the shipped weights do not use it.
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
from deepfake_audio.training.loop import TrainSummary, freeze_except, optimise, run_loop, warmup_cosine
from deepfake_audio.training.sampling import step_seed
from deepfake_audio.training.starter_vocoder_data import VocoderPack
from deepfake_audio.training.vocoder_discriminator import (MultiResolutionDiscriminator, discriminator_loss,
                                                           generator_losses)
from vocoder.starter_model import ARCHITECTURE, TRAINING_FIELDS, StarterVocoderHParams, StarterVocoderNet

CHECKPOINT = "vocoder.pt"
DEFAULTS = StarterVocoderHParams()
HPARAMS = field_values(DEFAULTS)
STFT_RESOLUTIONS = ((2048, 512), (1024, 256), (512, 128), (256, 64), (128, 32))  # (n_fft, hop)


def learning_rate(hp: StarterVocoderHParams, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak at `total_steps`."""
    return warmup_cosine(hp.learning_rate, hp.warmup_steps, hp.total_steps, step)


def stft_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT distance of two batches of audio (B, S): mean over resolutions of
    spectral convergence + mean |log magnitude difference|."""
    total = output.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=output.device)
        spec = lambda x: torch.stft(x, n_fft, hop, n_fft, window, return_complex=True).abs().clamp_min(1e-5)  # noqa: E731
        a, b = spec(output), spec(target)
        convergence = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp_min(1e-5)
        total = total + convergence + (a.log() - b.log()).abs().mean()
    return total / len(STFT_RESOLUTIONS)


def interpolate_f0(f0: np.ndarray, fallback: float = 120.0) -> np.ndarray:
    """F0 (T,) with its unvoiced (0) frames filled by log-linear interpolation between voiced ones
    (held at the ends); `fallback` Hz throughout when nothing is voiced."""
    voiced = f0 > 0
    if not voiced.any():
        return np.full_like(f0, fallback)
    t = np.arange(len(f0))
    return np.exp(np.interp(t, t[voiced], np.log(f0[voiced]))).astype(np.float32)


class Segments:
    """The batch of a step: `batch_size` random windows of `segment_frames` frames (longer utterances
    drawn more often) from any of the packs, as tensors: mel (B, 80, T), f0 (B, T) with
    0 = unvoiced, audio (B, 200 T)."""

    def __init__(self, packs: VocoderPack | list[VocoderPack], hp: StarterVocoderHParams, seed: int):
        self.packs = packs if isinstance(packs, list) else [packs]
        self.hp, self.seed = hp, seed
        usable, weights = [], []
        for p, pack in enumerate(self.packs):
            lengths = np.diff(pack.offsets).astype(np.float64)
            keep = np.flatnonzero(lengths > hp.segment_frames)
            usable.extend((p, int(u)) for u in keep)
            weights.append(lengths[keep])
        if not usable:
            raise TrainingError(f"no utterance is longer than {hp.segment_frames} frames: nothing to train on")
        self.usable = usable
        weights = np.concatenate(weights)
        self.cumulative = np.cumsum(weights / weights.sum())

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(step_seed(self.seed, step, 0, salt=11))
        t = self.hp.segment_frames
        mels, f0s, audios = [], [], []
        picks = np.minimum(np.searchsorted(self.cumulative, rng.random(self.hp.batch_size)), len(self.usable) - 1)
        for p, u in (self.usable[i] for i in picks):
            pack = self.packs[p]
            n = int(pack.offsets[u + 1] - pack.offsets[u])
            mel, f0, audio = pack.segment(u, int(rng.integers(0, n - t)), t)
            mels.append(mel)
            f0s.append(f0)
            audios.append(audio)
        return {"mels": torch.from_numpy(np.stack(mels)), "f0": torch.from_numpy(np.stack(f0s)),
                "audio": torch.from_numpy(np.stack(audios))}


def build_parser() -> argparse.ArgumentParser:
    parser = train_parser(
        "sv2tts-starter-vocoder-train",
        "Train the small starter vocoder (mel -> 16 kHz audio at a few ms per second of audio on a CPU). "
        "The checkpoint <run>/vocoder.pt records its architecture; export it with "
        "`python -m deepfake_audio.training.export <run>/vocoder.pt saved_models/starter/starter_vocoder.pt --fp16`.",
        "pack folder from `python -m deepfake_audio.training.starter_vocoder_data`", save_every=500,
        sample_every=0, epilog=hparams_epilog(HPARAMS))
    parser.add_argument("--also", type=Path, action="append", default=[], metavar="PACK",
                        help="another pack to draw from as well, in proportion to its frames (repeatable); "
                             "for example the synthesizer's ground-truth-aligned mels")
    return parser


def train(args, dist: Distributed) -> TrainSummary:
    run = start_run(args, DEFAULTS, CHECKPOINT, TRAINING_FIELDS)
    hp = run.hp
    torch.manual_seed(args.seed)
    model = StarterVocoderNet(hp).to(dist.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, betas=(0.8, 0.99), weight_decay=1e-6)
    weights_only = run.resume is not None and "optimizer_state" not in run.resume
    if weights_only:  # exported weights put in the run folder: continue their step, fresh optimizer
        run.init, run.resume = run.resume, None
        args.init = run.checkpoint
    restore(run, args, model, optimizer, "vocoder")
    freeze_except(model, args.train_only)  # a voice's tuning may train a part only
    critic = Critic(hp, run.resume, dist.device) if hp.adversarial_weight > 0 else None
    if run.resume is None and not weights_only:
        model.step.zero_()
    start_step = int(model.step.item())
    end_step = args.steps if args.steps is not None else hp.total_steps
    segments = Segments([VocoderPack.open(folder) for folder in [args.data, *args.also]], hp, args.seed)
    record_run(args, dist, asdict(hp), architecture=ARCHITECTURE)
    model.train()

    def batches():
        for step in range(start_step, end_step):
            yield segments.batch(step)

    def train_step(batch: dict, step: int) -> dict:
        lr = learning_rate(hp, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(args.seed, step, dist.rank, salt=13))  # noise sources repeat on resume
        measured = batch["f0"]
        drive = None
        if hp.design == "source_filter" and step < hp.teacher_f0_until:
            drive = torch.from_numpy(np.stack([interpolate_f0(f.numpy()) for f in measured]))
        out = model(batch["mels"], f0=drive)
        loss = stft_loss(out["wav"], batch["audio"])
        values = {"stft_loss": loss.item()}
        if critic is not None:
            adversarial, matching, values["discriminator_loss"] = critic.step(out["wav"], batch["audio"], lr)
            loss = loss + hp.adversarial_weight * adversarial + hp.feature_weight * matching
            values.update(adversarial_loss=adversarial.item(), feature_loss=matching.item())
        if hp.design == "source_filter":
            voiced = (measured > 0).float()
            target = torch.log(torch.from_numpy(np.stack([interpolate_f0(f.numpy()) for f in measured])))
            weight = voiced + 0.1 * (1 - voiced)
            f0_loss = ((out["log_f0"] - target).abs() * weight).sum() / weight.sum()
            voicing_loss = F.binary_cross_entropy_with_logits(out["voicing"], voiced)
            loss = loss + hp.f0_loss_weight * f0_loss + hp.voicing_loss_weight * voicing_loss
            values.update(f0_loss=f0_loss.item(), voicing_loss=voicing_loss.item())
        grad_norm = optimise(model, optimizer, loss, hp.clip_grad_norm, step)
        return {"loss": loss.item(), **values, "grad_norm": grad_norm, "lr": lr}

    def save(step: int) -> None:
        extra = {"architecture": ARCHITECTURE, **(critic.state() if critic is not None else {})}
        save_checkpoint(run.checkpoint, model, optimizer, export_hparams(hp), extra=extra,
                        backup_every=args.backup_every, current_step=step)

    return run_loop(batches(), train_step, save, None, start_step, end_step, args, dist, "vocoder", model,
                    run.checkpoint)


class Critic:
    """The discriminator of adversarial fine-tuning, with its optimizer; its state rides in the
    vocoder's checkpoint (`discriminator_state`, `discriminator_optimizer_state`)."""

    def __init__(self, hp: StarterVocoderHParams, resume: dict | None, device):
        self.net = MultiResolutionDiscriminator().to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=hp.learning_rate, betas=(0.8, 0.99),
                                           weight_decay=1e-6)
        if resume is not None and "discriminator_state" in resume:  # else a fresh one (adversarial from now on)
            self.net.load_state_dict(resume["discriminator_state"])
            self.optimizer.load_state_dict(resume["discriminator_optimizer_state"])

    def step(self, generated: torch.Tensor, real: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Update the discriminator on (real, generated) audio (B, S), then return the vocoder's
        (adversarial, feature-matching) losses, with gradient, and the discriminator's loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        real_out = self.net(real)
        loss = discriminator_loss(real_out, self.net(generated.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            real_out = self.net(real)
        adversarial, matching = generator_losses(real_out, self.net(generated))
        return adversarial, matching, loss.item()

    def state(self) -> dict:
        return {"discriminator_state": self.net.state_dict(), "discriminator_optimizer_state": self.optimizer.state_dict()}


def export_hparams(hp: StarterVocoderHParams) -> dict:
    """Every model field (training settings stay in the run folder)."""
    return {k: v for k, v in asdict(hp).items() if k not in TRAINING_FIELDS}


main, cli = TrainCommand(build_parser, train).entry_points()


if __name__ == "__main__":
    raise SystemExit(cli())
