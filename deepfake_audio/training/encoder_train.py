"""Speaker-encoder training with the GE2E loss (Wan et al., 2018).

A batch holds `speakers_per_batch` speakers x `utterances_per_speaker` random
`partials_n_frames`-frame crops of their utterances. Each embedding is scored against
every speaker's centroid (its own computed without it), scaled by the learned
`similarity_weight` / `similarity_bias`, and the loss is the softmax cross-entropy of
those scores. The equal error rate of the same scores is logged as well.

    sv2tts-encoder-train data/encoder --run-dir runs/encoder
    torchrun --nproc_per_node 4 -m deepfake_audio.training.encoder_train data/encoder --run-dir runs/encoder
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio_core.hparams import differences
from deepfake_audio.training import TrainingError
from deepfake_audio.training.checkpoints import record_run, restore, save_checkpoint
from deepfake_audio.training.commands import TrainCommand, hparams_epilog, start_run, train_parser
from deepfake_audio.training.distributed import Distributed
from deepfake_audio.training.files import read_metadata
from deepfake_audio.training.loop import TrainSummary, batch_loader, run_loop
from deepfake_audio.training.run_logger import plot_matrix, plot_mels
from deepfake_audio.training.sampling import step_seed
from encoder.hparams import hparams as hp
from encoder.model import MODEL_HPARAMS, speaker_encoder_from_hparams

CHECKPOINT = "encoder.pt"
TRAIN_HPARAMS = ("partials_n_frames", "learning_rate_init", "speakers_per_batch", "utterances_per_speaker")
HPARAMS = {name: getattr(hp, name) for name in (*MODEL_HPARAMS, *TRAIN_HPARAMS)}
# Fields that do not size the network: a checkpoint records only the model fields it changes.
NOT_MODEL = tuple(name for name in vars(hp) if name not in MODEL_HPARAMS)


def ge2e_loss(embeds: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GE2E softmax loss of (speakers, utterances, dims) unit-norm embeddings.

    Returns the loss and the scaled similarity matrix (speakers * utterances, speakers).
    """
    n_speakers, n_utts, _ = embeds.shape
    centroids = embeds.mean(dim=1)
    centroids = centroids / (centroids.norm(dim=1, keepdim=True) + 1e-5)
    # Each utterance's own centroid leaves it out, so that it cannot simply match itself.
    exclusive = (embeds.sum(dim=1, keepdim=True) - embeds) / (n_utts - 1)
    exclusive = exclusive / (exclusive.norm(dim=2, keepdim=True) + 1e-5)
    sim = torch.einsum("sud,kd->suk", embeds, centroids)
    own = (embeds * exclusive).sum(dim=2, keepdim=True)
    same = torch.eye(n_speakers, dtype=torch.bool, device=embeds.device)[:, None, :]
    sim = torch.where(same, own, sim) * weight + bias
    sim = sim.reshape(n_speakers * n_utts, n_speakers)
    target = torch.arange(n_speakers, device=embeds.device).repeat_interleave(n_utts)
    return F.cross_entropy(sim, target), sim


def equal_error_rate(sim: np.ndarray, n_utts: int) -> float:
    """EER of verification trials "utterance vs speaker centroid" scored by `sim`."""
    n_speakers = sim.shape[1]
    labels = np.repeat(np.eye(n_speakers), n_utts, axis=0).reshape(-1)
    scores = sim.reshape(-1)
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    tpr = np.cumsum(labels) / max(labels.sum(), 1)
    fpr = np.cumsum(1 - labels) / max((1 - labels).sum(), 1)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


class SpeakerBatches(torch.utils.data.Dataset):
    """Item (speaker index, key) -> (utterances_per_speaker, partial_frames, 40) random crops.

    The crops and the choice of utterances are seeded by `key`, so a batch is a function
    of its step alone.
    """

    def __init__(self, records: list[dict], partial_frames: int, n_utts: int, seed: int):
        by_speaker = defaultdict(list)
        for r in records:
            if r["n_frames"] >= partial_frames:
                by_speaker[r["speaker"]].append(r)
        self.speakers = sorted(by_speaker)
        self.utterances = [by_speaker[s] for s in self.speakers]
        self.partial_frames = partial_frames
        self.n_utts = n_utts
        self.seed = seed

    def __len__(self) -> int:
        return len(self.speakers)

    def crops(self, index: int, key: int) -> list[tuple[dict, int]]:
        """(utterance record, first frame) of each crop of item (index, key)."""
        rng = np.random.default_rng(step_seed(self.seed, key, salt=index + 7))
        utts = self.utterances[index]
        chosen = rng.choice(len(utts), self.n_utts, replace=len(utts) < self.n_utts)
        return [(utts[k], int(rng.integers(0, utts[k]["n_frames"] - self.partial_frames + 1))) for k in chosen]

    def __getitem__(self, item: tuple[int, int]) -> np.ndarray:
        crops = []
        for record, start in self.crops(*item):
            frames = np.load(record["frames"], mmap_mode="r")
            crops.append(np.asarray(frames[start:start + self.partial_frames], dtype=np.float32))
        return np.stack(crops)


class SpeakerSampler:
    """Per step and rank: `n_speakers` distinct speakers, drawn from a (seed, step, rank) generator."""

    def __init__(self, total: int, n_speakers: int, start_step: int, end_step: int | None, seed: int,
                 rank: int, fixed: bool):
        self.total, self.n_speakers = total, n_speakers
        self.start_step, self.end_step = start_step, end_step
        self.seed, self.rank, self.fixed = seed, rank, fixed

    def __iter__(self):
        step = self.start_step
        while self.end_step is None or step < self.end_step:
            key = 0 if self.fixed else step
            g = torch.Generator().manual_seed(step_seed(self.seed, key, self.rank, salt=2))
            speakers = torch.randperm(self.total, generator=g)[:self.n_speakers].tolist()
            yield [(s, key * 1_000_000 + self.rank * 10_000 + k) for k, s in enumerate(speakers)]
            step += 1

    def __len__(self) -> int:
        return (self.end_step - self.start_step) if self.end_step is not None else 2**31


def _collate(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(items))


def build_parser() -> argparse.ArgumentParser:
    return train_parser(
        "sv2tts-encoder-train",
        "Train the speaker encoder (GE2E loss) on the output of sv2tts-encoder-preprocess. The checkpoint "
        "<run>/encoder.pt has the published layout (step, model_state, optimizer_state) and loads in the "
        "engine. Runs on several GPUs or machines under torchrun (DistributedDataParallel); each process "
        "takes its own batch of speakers.",
        "folder written by sv2tts-encoder-preprocess", save_every=500, sample_every=1000,
        epilog=hparams_epilog(HPARAMS))


def train(args, dist: Distributed) -> TrainSummary:
    run = start_run(args, hp, CHECKPOINT, TRAIN_HPARAMS)
    settings = run.hp
    model_overrides = differences(settings, hp, skip=NOT_MODEL)
    n_speakers, n_utts = settings.speakers_per_batch, settings.utterances_per_speaker
    partial_frames = settings.partials_n_frames
    if n_speakers < 2 or n_utts < 2:
        raise TrainingError("GE2E needs at least 2 speakers per batch and 2 utterances per speaker.")

    torch.manual_seed(args.seed)
    model = speaker_encoder_from_hparams(model_overrides).to(dist.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate_init)
    restore(run, args, model, optimizer, "speaker encoder")
    start_step = int(run.resume.get("step", 0)) if run.resume is not None else 0
    for group in optimizer.param_groups:
        group["lr"] = settings.learning_rate_init

    dataset = SpeakerBatches(read_metadata(args.data, ("frames", "speaker", "n_frames")), partial_frames, n_utts,
                             args.seed)
    if len(dataset) < n_speakers:
        raise TrainingError(f"{args.data} has {len(dataset)} speakers with utterances of at least "
                            f"{partial_frames} frames, but a batch needs {n_speakers}: add speakers or lower "
                            "--hparams speakers_per_batch=N.")
    end_step = args.steps
    sampler = SpeakerSampler(len(dataset), n_speakers, start_step, end_step, args.seed, dist.rank,
                             args.overfit_batch)
    loader = batch_loader(dataset, sampler, _collate, args, dist)
    record_run(args, dist, {k: getattr(settings, k) for k in HPARAMS})
    ddp = dist.wrap(model)
    model.train()
    last = {}

    def train_step(frames: torch.Tensor, step: int) -> dict:
        frames = frames.to(dist.device, non_blocking=True)
        embeds = ddp(frames.reshape(-1, *frames.shape[2:])).view(n_speakers, n_utts, -1)
        loss, sim = ge2e_loss(embeds, model.similarity_weight, model.similarity_bias)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # As in GE2E: the similarity scale and bias learn 100x slower, and gradients are clipped.
        model.similarity_weight.grad *= 0.01
        model.similarity_bias.grad *= 0.01
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        sim_np = sim.detach().cpu().numpy()
        last.update(sim=sim_np)
        return {"loss": loss.item(), "eer": equal_error_rate(sim_np, n_utts), "grad_norm": float(grad_norm),
                "similarity_weight": float(model.similarity_weight.item())}

    def save(step: int) -> None:
        save_checkpoint(run.checkpoint, model, optimizer, model_overrides, step=step, backup_every=args.backup_every,
                        current_step=step)

    def sample(_batch, step: int, logger) -> None:
        from encoder.audio import preprocess_wav
        logger.figure(step, "encoder/similarity", plot_matrix(
            last["sim"], f"scaled similarity, step {step}", "speaker centroid", "utterance"))
        # One partial utterance as the encoder sees it: its mel and the audio it covers.
        record, start = dataset.crops(step % len(dataset), step)[0]
        frames = np.load(record["frames"])[start:start + partial_frames].T
        logger.figure(step, "encoder/mel", plot_mels({f"partial of {record['id']} (log10 power mel)":
                                                      np.log10(frames + 1e-6)}))
        try:
            wav = preprocess_wav(record["source"])
        except DeepfakeAudioError:  # the corpus may have moved since preprocessing; the plots still help
            return
        hop = int(hp.sampling_rate * hp.mel_window_step / 1000)
        logger.audio(step, "encoder/partial", wav[start * hop:(start + partial_frames) * hop], hp.sampling_rate)

    return run_loop(loader, train_step, save, sample, start_step, end_step, args, dist, "encoder", model,
                    run.checkpoint)


main, cli = TrainCommand(build_parser, train).entry_points()

if __name__ == "__main__":
    raise SystemExit(cli())
