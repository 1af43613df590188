"""Speed benchmarks: each stage and the whole clone, at the published model sizes.

    .venv/bin/python bench/run.py                  # CPU, 2 threads; writes bench/RESULTS.md
    .venv/bin/python bench/run.py --runs 3 --parity-runs 1 --out /tmp/results.md

The weights come from the reference weight formula (tests/weights.py): same shapes and
arithmetic as the published checkpoints, so the timings are theirs. Every measurement
runs in its own subprocess (clean peak memory, no warm caches shared between stages),
several times; the table gives the median and the range. A real-time factor is compute
time divided by the duration of the audio it makes (below 1: faster than real time).
On a machine with CUDA the GPU rows are added.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TEXT = "Hello world, this is a test."  # 5.0 s of speech once the synthesizer is capped at 400 frames
FRAMES = 401  # 200 * (401 - 1) samples = 5.0 s at 16 kHz
SECONDS = (FRAMES - 1) * 200 / 16000


def _models(folder: Path) -> Path:
    import weights
    if not (folder / "vocoder.pt").is_file():
        weights.write_checkpoints(folder, seed=1)
    return folder


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _mel():
    import numpy as np
    return np.load(ROOT / "tests" / "data" / "mel.npy")[:, :FRAMES]  # the synthesizer's output for TEXT, seed 1


# Each measurement: name -> function(models, device, runs) returning a dict of results.

def m_load(models: Path, device: str, runs: int) -> dict:
    from deepfake_audio.pipeline import Pipeline
    times, fast_times = [], []
    for _ in range(runs):
        start = time.perf_counter()
        pipe = Pipeline(models, device=device)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        pipe.vocoder.fast("fast")  # fuse the weights and script the loop (first fast call)
        fast_times.append(time.perf_counter() - start)
    return {"times": times, "fast_build": fast_times}


def m_encoder(models: Path, device: str, runs: int) -> dict:
    import numpy as np
    from encoder.inference import Encoder, default_weights_path, prepare_reference
    enc = Encoder(models / "encoder.pt" if (models / "encoder.pt").is_file() else default_weights_path(), device)
    ref = prepare_reference(ROOT / "tests" / "data" / "ref.wav")
    wav = np.tile(ref, int(np.ceil(10 * 16000 / len(ref))))[:10 * 16000]  # 10 s of speech
    enc.embed_utterance(wav)
    return {"times": _timed(lambda: enc.embed_utterance(wav), runs), "audio": 10.0}


def m_synthesizer(models: Path, device: str, runs: int, mode: str = "parity") -> dict:
    import numpy as np
    import torch
    from synthesizer import fast
    from deepfake_audio_core.modes import arithmetic
    from deepfake_audio_core.rng import make_generator
    from synthesizer.inference import Synthesizer
    synth = Synthesizer(models / "synthesizer.pt", device)
    kind = arithmetic(mode)
    cells = fast.lstm_cells(synth.model.decoder, kind) if kind in fast.CELLS and fast.available(device) else None

    def generate(*args):
        with fast.decoding(cells):  # as Synthesizer.synthesize_spectrograms runs it
            return synth.model.generate(*args, lstm_cells=cells)

    chars = torch.tensor([synth.text_ids(TEXT)], device=device)
    speaker = torch.from_numpy(np.load(ROOT / "tests" / "data" / "embed.npy"))[None].to(device)
    frames = []

    def run():
        mels, _, _ = generate(chars, speaker, FRAMES - 1, make_generator(1, device))
        if device == "cuda":
            torch.cuda.synchronize()
        frames.append(mels.shape[-1])

    run()
    times = _timed(run, runs)
    steps = frames[-1] // synth.r
    return {"times": times, "steps": steps, "ms_per_step": [1000 * t / steps for t in times]}


def m_vocoder(models: Path, device: str, runs: int, mode: str = "fast", precision: str | None = None,
              threads: int | None = None, native: bool = True, kernel: str | None = None) -> dict:
    if not native:
        os.environ["DEEPFAKE_AUDIO_NATIVE"] = "0"  # read when the first fast vocoder is built
    if kernel:
        os.environ["DEEPFAKE_AUDIO_INT8_KERNEL"] = kernel  # the int8 kernel of a CPU without VNNI
    import torch
    from vocoder.fast import FastWaveRNN, mode_precision
    from vocoder.inference import Vocoder
    if threads:
        torch.set_num_threads(threads)
    voc = Vocoder(models / "vocoder.pt", device)
    mel = _mel()
    if precision:  # a precision other than the mode's own
        voc._fast[mode_precision(mode, device, voc.model.rnn_dims)] = FastWaveRNN(voc.model, precision)
    if mode != "parity":
        voc.infer_waveform(mel[:, :30], seed=0, mode=mode)  # build and script the sampler
    times = _timed(lambda: voc.infer_waveform(mel, seed=1, mode=mode), runs)
    return {"times": times, "audio": SECONDS}


def _capped_pipeline(models: Path, device: str):
    from dataclasses import replace
    from deepfake_audio.pipeline import Pipeline
    pipe = Pipeline(models, device=device)
    pipe.synthesizer.hparams = replace(pipe.synthesizer.hparams, max_decoder_frames=FRAMES - 1)
    return pipe


def m_clone(models: Path, device: str, runs: int, mode: str = "fast", text: str = TEXT) -> dict:
    pipe = _capped_pipeline(models, device)
    ref = ROOT / "tests" / "data" / "ref.wav"
    pipe.clone(ref, "Hi.", seed=0, mode=mode)  # warm up (loads, scripts)
    results = [pipe.clone(ref, text, seed=1, mode=mode) for _ in range(runs)]
    return {"times": [sum(r.seconds.values()) for r in results], "audio": results[-1].duration,
            "stages": {k: [r.seconds[k] for r in results] for k in results[-1].seconds}}


# Twelve sentences; with the formula weights each is capped at 400 frames: 60 s of speech.
LONG_TEXT = " ".join(["Hello world, this is a test."] * 12)


def m_stream(models: Path, device: str, runs: int, mode: str = "fast", text: str = TEXT) -> dict:
    """Time to first audio, whole-stream real-time factor and the gaps a player would hear
    (`playback_gaps`: the player starts with the first piece and plays on, waiting for late ones);
    also whether the joined stream is `clone(rolling=True)`'s audio (watermark off, up to the stream's level)."""
    import numpy as np
    from deepfake_audio.streaming import playback_gaps, stream_clone
    pipe = _capped_pipeline(models, device)
    ref = ROOT / "tests" / "data" / "ref.wav"
    for _ in stream_clone(pipe, ref, "Hi.", seed=0, mode=mode):  # warm up
        pass
    voice = pipe.embed(ref)
    first, known, total, gaps, steps, audio = [], [], [], [], [], 0
    for _ in range(runs):
        start = time.perf_counter()
        chunks = list(stream_clone(pipe, ref, text, seed=1, mode=mode))
        total.append(time.perf_counter() - start)
        first.append(chunks[0].at)
        steps.append(chunks[0].decoder_steps)
        gaps.append(playback_gaps(chunks))
        audio = sum(len(c.audio) for c in chunks) / 16000
        if text == TEXT:  # a voice already embedded (the studio's library, `embedding=`)
            stream = stream_clone(pipe, text=text, seed=1, mode=mode, embedding=voice)
            known.append(next(stream).at)
            stream.close()
    pipe.watermark = False
    chunks = list(stream_clone(pipe, ref, text, seed=1, mode=mode))
    wav = pipe.clone(ref, text, seed=1, mode=mode, rolling=True).wav.astype(np.float64)
    worst = 0.0
    for c in chunks:  # each piece is clone's audio at its place, scaled by the stream's level
        a = c.audio.astype(np.float64)
        b = wav[c.start:c.start + len(a)]
        if np.any(a):
            worst = max(worst, float(np.abs(a * (a @ b) / (a @ a) - b).max()))
    return {"times": total, "first": first, "first_known": known, "audio": audio, "gaps": [sum(g) for g in gaps],
            "n_gaps": [len(g) for g in gaps], "first_steps": steps, "clone_difference": worst}


def m_vocoder_rolling(models: Path, device: str, runs: int, mode: str = "fast") -> dict:
    """The rolling folds that streams run, on the same 5 s mel as the lockstep rows."""
    from vocoder.inference import Vocoder
    voc = Vocoder(models / "vocoder.pt", device)
    mel = _mel()
    next(voc.rolling_waveform(mel[:, :30], seed=0, mode=mode))  # build and script the sampler
    times = _timed(lambda: next(voc.rolling_waveform(mel, seed=1, mode=mode)), runs)
    return {"times": times, "audio": SECONDS}


def m_quality(models: Path, device: str, runs: int) -> dict:
    """int8 (fast) and fp16 against the parity loop and each other: sampled-class histograms and spectra."""
    import numpy as np
    from scipy import signal
    from vocoder.inference import Vocoder
    voc = Vocoder(models / "vocoder.pt", device)
    mel = _mel()[:, :101]  # 1.25 s

    def classes(w):
        y = signal.lfilter([1, -0.97], [1], w)
        x = np.sign(y) * np.log1p(511 * np.abs(y)) / np.log(512)
        return np.clip(np.round((x + 1) * 511 / 2), 0, 511).astype(int)

    def class_tv(a, b):
        ha, hb = (np.bincount(classes(w) * 16 // 512, minlength=16) / len(w) for w in (a, b))
        return float(0.5 * np.abs(ha - hb).sum())

    def spectral_db(a, b):
        (_, pa), (_, pb) = signal.welch(a, nperseg=512), signal.welch(b, nperseg=512)
        return float(np.mean(np.abs(10 * np.log10(pa + 1e-12) - 10 * np.log10(pb + 1e-12))))

    waves = {(m, s): voc.infer_waveform(mel, seed=s, mode=m)[1000:-1000]
             for m in ("parity", "fp16", "int8") for s in (1, 2)}
    pairs = {"parity seed 1 vs seed 2": (("parity", 1), ("parity", 2)),
             "fp16 seed 1 vs seed 2": (("fp16", 1), ("fp16", 2)),
             "int8 seed 1 vs seed 2": (("int8", 1), ("int8", 2)),
             "parity vs fp16": (("parity", 1), ("fp16", 1)),
             "parity vs int8 (fast)": (("parity", 1), ("int8", 1)),
             "fp16 vs int8 (same seed)": (("fp16", 1), ("int8", 1))}
    return {"pairs": {name: {"class_tv": class_tv(waves[a], waves[b]), "spectral_db": spectral_db(waves[a], waves[b])}
                      for name, (a, b) in pairs.items()}}


def m_flops(models: Path, device: str, runs: int) -> dict:
    """What this CPU can do: a large fp32 matmul with 1 and 2 threads (multiply-adds per second)."""
    import torch
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        a @ b
        times = _timed(lambda: [a @ b for _ in range(10)], max(runs, 3))
        out[f"gmacs_{threads}"] = 10 * 1024 ** 3 / statistics.median(times) / 1e9
    return out


STARTER_TEXT = "The starter model speaks this sentence in about five seconds, give or take a little."


def _starter_models(models: Path) -> Path:
    """A folder with the shipped starter synthesizer and vocoder, or, before they are shipped, models
    of their size."""
    shipped = ROOT / "saved_models" / "starter" / "synthesizer.pt"
    folder = models / "starter"
    folder.mkdir(exist_ok=True)
    _starter_vocoder(folder / "starter_vocoder.pt")
    target = folder / "synthesizer.pt"
    if not target.exists():
        if shipped.is_file():
            target.symlink_to(shipped)
        else:
            import torch
            from deepfake_audio.training.fastspeech_train import export_hparams
            from synthesizer.fastspeech import FastSpeech, FastSpeechHParams
            torch.manual_seed(0)
            model = FastSpeech(FastSpeechHParams())
            with torch.no_grad():
                model.duration.proj.bias.fill_(1.9)  # ~6 frames per character, like the trained model
            torch.save({"architecture": "fastspeech", "model_state": model.state_dict(),
                        "hparams": export_hparams(model.hp)}, target)
    return folder


def _starter_vocoder(target: Path) -> None:
    shipped = ROOT / "saved_models" / "starter" / "starter_vocoder.pt"
    if target.exists():
        return
    if shipped.is_file():
        target.symlink_to(shipped)
        return
    import torch
    from deepfake_audio.training.starter_vocoder_train import export_hparams
    from vocoder.starter_model import ARCHITECTURE, StarterVocoderNet
    torch.manual_seed(0)
    model = StarterVocoderNet()
    torch.save({"architecture": ARCHITECTURE, "model_state": model.state_dict(),
                "hparams": export_hparams(model.hp)}, target)


def m_starter_vocoder(models: Path, device: str, runs: int) -> dict:
    """The starter vocoder on the 5 s mel the WaveRNN rows vocode."""
    from vocoder.starter import StarterVocoder
    vocoder = StarterVocoder(_starter_models(models) / "starter_vocoder.pt", device)
    mel = _mel()
    vocoder.infer_waveform(mel[:, :40], seed=0)  # warm up
    return {"times": _timed(lambda: vocoder.infer_waveform(mel, seed=1), runs), "audio": SECONDS}


def m_starter_stream(models: Path, device: str, runs: int, text: str = STARTER_TEXT) -> dict:
    """A streamed default clone on the starter models (starter synthesizer + starter vocoder): first
    audio from the call, with the 3 s reference embedded first, and the whole stream's real-time factor."""
    from deepfake_audio.pipeline import Pipeline
    from deepfake_audio.streaming import playback_gaps, stream_clone
    pipe = Pipeline(_starter_models(models), device=device)
    ref = ROOT / "tests" / "data" / "ref.wav"
    assert pipe.default_vocoder() == "starter"
    for _ in stream_clone(pipe, ref, "Hi.", seed=0):  # warm up
        pass
    first, total, gaps, audio = [], [], [], 0.0
    for _ in range(runs):
        start = time.perf_counter()
        chunks = list(stream_clone(pipe, ref, text, seed=1))
        total.append(time.perf_counter() - start)
        first.append(chunks[0].at)
        gaps.append(sum(playback_gaps(chunks)))
        audio = sum(len(c.audio) for c in chunks) / 16000
    return {"times": total, "first": first, "gaps": gaps, "audio": audio}


STARTER_LONG_TEXT = " ".join([STARTER_TEXT] * 6)


def m_starter_synthesizer(models: Path, device: str, runs: int) -> dict:
    """The FastSpeech starter: one sentence, all frames in one pass."""
    import numpy as np
    from synthesizer.inference import Synthesizer
    synth = Synthesizer(_starter_models(models) / "synthesizer.pt", device)
    embed = np.load(ROOT / "tests" / "data" / "embed.npy")
    mel = synth.synthesize_spectrograms([STARTER_TEXT], embed)[0]
    times = _timed(lambda: synth.synthesize_spectrograms([STARTER_TEXT], embed), runs)
    return {"times": times, "audio": mel.shape[1] * 200 / 16000}


def m_starter_clone(models: Path, device: str, runs: int, vocoder: str = "starter") -> dict:
    """Encoder + starter synthesizer + the starter vocoder (the offline default) or fast Griffin-Lim."""
    from deepfake_audio.pipeline import Pipeline
    pipe = Pipeline(_starter_models(models), device=device)
    ref = ROOT / "tests" / "data" / "ref.wav"
    pipe.clone(ref, "Hi.", seed=0, vocoder=vocoder)  # warm up
    results = [pipe.clone(ref, STARTER_TEXT, seed=1, vocoder=vocoder) for _ in range(runs)]
    return {"times": [sum(r.seconds.values()) for r in results], "audio": results[-1].duration,
            "stages": {k: [r.seconds[k] for r in results] for k in results[-1].seconds}}


PACES = (0.5, 0.75, 1.25, 1.5, 2.0)
PACE_TEXTS = ("Hello world, this is a test.", "The birch canoe slid on the smooth planks.",
              "Please call Stella and ask her to bring these things with her from the store.")


def m_pace(models: Path, device: str, runs: int) -> dict:
    """Speaking rate as asked against as made: duration at pace 1 over duration at pace p.

    Starter (durations scaled) and Tacotron (mel time-scaled, here the formula weights capped
    at 400 frames); Griffin-Lim, so only the synthesizer decides the length. The HTTP API's
    `speed` is this same `pace`. Sentence pauses (0.15 s each) do not scale.
    """
    from deepfake_audio.pipeline import Pipeline
    ref = ROOT / "tests" / "data" / "ref.wav"
    out = {}
    for name, pipe in (("starter", Pipeline(_starter_models(models), device=device)),
                       ("tacotron", _capped_pipeline(models, device))):
        embedding = pipe.embed(ref)
        rates = {p: [] for p in PACES}
        for text in PACE_TEXTS:
            base = pipe.clone(embedding=embedding, text=text, seed=1, vocoder="griffinlim").duration
            for p in PACES:
                made = pipe.clone(embedding=embedding, text=text, seed=1, vocoder="griffinlim", pace=p).duration
                rates[p].append(base / made)
        out[name] = {str(p): v for p, v in rates.items()}
    return {"times": [0.0], "rates": out}


MEASUREMENTS = {
    "flops": m_flops, "load": m_load, "encoder": m_encoder, "synthesizer": m_synthesizer,
    "synthesizer-fp16": lambda m, d, r: m_synthesizer(m, d, r, "fp16"),
    "synthesizer-int8": lambda m, d, r: m_synthesizer(m, d, r, "int8"),
    "vocoder-parity": lambda m, d, r: m_vocoder(m, d, r, "parity"),
    "vocoder-fast": lambda m, d, r: m_vocoder(m, d, r, "fast"),
    "vocoder-fast-1thread": lambda m, d, r: m_vocoder(m, d, r, "fast", threads=1),
    "vocoder-fast-torchscript": lambda m, d, r: m_vocoder(m, d, r, "fast", native=False),
    "vocoder-fast-fp32": lambda m, d, r: m_vocoder(m, d, r, "fast", precision="fp32"),
    "vocoder-int8": lambda m, d, r: m_vocoder(m, d, r, "int8"),
    "vocoder-fp16": lambda m, d, r: m_vocoder(m, d, r, "fp16"),
    "vocoder-int8-avx2": lambda m, d, r: m_vocoder(m, d, r, "int8", kernel="avx2"),
    "vocoder-rolling-fp16": lambda m, d, r: m_vocoder_rolling(m, d, r, "fp16"),
    "clone-fp16": lambda m, d, r: m_clone(m, d, r, "fp16"),
    "stream-fp16": lambda m, d, r: m_stream(m, d, r, "fp16"),
    "stream-long-fp16": lambda m, d, r: m_stream(m, d, r, "fp16", LONG_TEXT),
    "clone-fast": m_clone, "clone-int8": lambda m, d, r: m_clone(m, d, r, "int8"),
    "clone-parity": lambda m, d, r: m_clone(m, d, r, "parity"),
    "stream": m_stream, "stream-int8": lambda m, d, r: m_stream(m, d, r, "int8"), "quality": m_quality,
    "stream-long": lambda m, d, r: m_stream(m, d, r, "fast", LONG_TEXT),
    "stream-long-int8": lambda m, d, r: m_stream(m, d, r, "int8", LONG_TEXT),
    "clone-long": lambda m, d, r: m_clone(m, d, r, "fast", LONG_TEXT),
    "clone-long-int8": lambda m, d, r: m_clone(m, d, r, "int8", LONG_TEXT), "vocoder-rolling": m_vocoder_rolling,
    "vocoder-rolling-int8": lambda m, d, r: m_vocoder_rolling(m, d, r, "int8"),
    "pace": m_pace, "starter-synthesizer": m_starter_synthesizer, "starter-clone": m_starter_clone,
    "starter-clone-griffinlim": lambda m, d, r: m_starter_clone(m, d, r, "griffinlim"),
    "starter-vocoder": m_starter_vocoder, "starter-stream": m_starter_stream,
    "starter-stream-long": lambda m, d, r: m_starter_stream(m, d, r, STARTER_LONG_TEXT),
    # torch's own kernels held to AVX2 (ATEN_CPU_CAPABILITY), as on a CPU without AVX-512
    "starter-vocoder-avx2": m_starter_vocoder, "starter-stream-avx2": m_starter_stream,
}
# Extra environment of a measurement's process.
MEASUREMENT_ENV = {"starter-vocoder-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
                   "starter-stream-avx2": {"ATEN_CPU_CAPABILITY": "avx2"}}


def child(name: str, models: Path, device: str, runs: int, threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    result = MEASUREMENTS[name](models, device, runs)
    result["peak_mb"] = _peak_mb()
    print("RESULT " + json.dumps(result))


def run_child(name: str, models: Path, device: str, runs: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--models", str(models), "--device", device,
           "--runs", str(runs), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **MEASUREMENT_ENV.get(name, {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def machine(device: str) -> str:
    import torch
    cpu = "unknown CPU"
    flags = set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in info.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    simd = ", ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags)
    text = (f"{cpu}, {os.cpu_count()} logical CPUs ({simd}); {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__} "
            f"(CPU kernels: {torch.backends.cpu.get_cpu_capability()})")
    if device == "cuda":
        text += f"; GPU: {torch.cuda.get_device_name(0)}"
    return text


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    med = statistics.median(values) * scale
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values) * scale:.{digits}f}–{max(values) * scale:.{digits}f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    parser.add_argument("--parity-runs", type=int, default=3, help="runs of the slow parity vocoder (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="cpu, cuda, or all (cuda only where available; the default)")
    parser.add_argument("--only", nargs="*", choices=sorted(MEASUREMENTS), help="run only these measurements")
    parser.add_argument("--models", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.models, args.device, args.runs, args.threads)
        return 0
    import torch
    devices = ["cpu"] + (["cuda"] if args.device != "cpu" and torch.cuda.is_available() else [])
    if args.device == "cuda":
        devices = devices[1:]
    header = "# Benchmarks\n\nWritten by `bench/run.py`; see its docstring for the method.\n\n"
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(args.models or Path(tmp))
        sections: list[str] = []
        for device in devices:
            names = args.only or [n for n in MEASUREMENTS if device == "cpu" or n not in (
                "vocoder-int8", "vocoder-fast-1thread", "vocoder-fast-torchscript", "flops", "quality", "clone-int8",
                "synthesizer-fp16", "synthesizer-int8", "stream-int8", "stream-long-int8", "clone-long-int8",
                "vocoder-rolling-int8", "vocoder-fp16", "vocoder-int8-avx2", "vocoder-rolling-fp16", "clone-fp16",
                "stream-fp16", "stream-long-fp16")]
            results, load = {}, [os.getloadavg()[0]]
            for name in names:
                runs = args.parity_runs if "parity" in name else args.runs
                print(f"[{device}] {name} ({runs} runs)...", file=sys.stderr, flush=True)
                try:
                    results[name] = run_child(name, models, device, runs, args.threads)
                except RuntimeError as exc:  # one broken measurement must not lose the others
                    print(exc, file=sys.stderr)
                    results.setdefault("failed", []).append(name)
                load.append(os.getloadavg()[0])
                # Written after every measurement, so a run cut short still leaves its table.
                args.out.write_text(header + "\n".join(sections + [report(device, results, args, load)]))
            sections.append(report(device, results, args, load))
    text = header + "\n".join(sections)
    args.out.write_text(text)
    print(text)
    return 0


def report(device: str, r: dict, args, load: list[float]) -> str:
    lines = [f"## {device.upper()}, {args.threads} threads\n", f"Machine: {machine(device)}.",
             f"Load average (1 min) during the run: {min(load):.1f} to {max(load):.1f}. "
             f"{args.runs} runs per row ({args.parity_runs} for parity rows): median (min–max).\n"]
    if "flops" in r:
        f = r["flops"]
        lines.append(f"fp32 matmul throughput of this CPU (1024³): {f['gmacs_1']:.0f} G multiply-adds/s with "
                     f"1 thread, {f['gmacs_2']:.0f} with 2.\n")
    lines += ["| stage | measure | result | peak memory |", "|---|---|---|---|"]

    def row(stage, measure, value, key):
        if key in r:
            lines.append(f"| {stage} | {measure} | {value} | {r[key]['peak_mb']:.0f} MB |")

    def watermark_row(what, c, key):
        if "watermarking" in c["stages"]:
            share = [w / t for w, t in zip(c["stages"]["watermarking"], c["times"])]
            row(f"watermark in the {what}", "share of the clone's time (target < 5 %)",
                spread(share, 100, digits=1) + " %", key)

    if "load" in r:
        row("model load", "all three stages, s", spread(r["load"]["times"]), "load")
        row("fast vocoder build", "first fast call: fuse + script, s", spread(r["load"]["fast_build"]), "load")
    if "encoder" in r:
        row("encoder", "10 s of speech, s", spread(r["encoder"]["times"], digits=3), "encoder")
    if "synthesizer" in r:
        s = r["synthesizer"]
        row("synthesizer (parity)", f"ms per decoder step (batch 1, {s['steps']} steps)",
            spread(s["ms_per_step"]), "synthesizer")
    if "synthesizer-fp16" in r:
        s = r["synthesizer-fp16"]
        row("synthesizer (fp16 LSTMs)", f"ms per decoder step (batch 1, {s['steps']} steps)",
            spread(s["ms_per_step"]), "synthesizer-fp16")
    if "synthesizer-int8" in r:
        s = r["synthesizer-int8"]
        row("synthesizer (fast: int8 LSTMs)", f"ms per decoder step (batch 1, {s['steps']} steps)",
            spread(s["ms_per_step"]), "synthesizer-int8")
    for key, label in [("vocoder-parity", "WaveRNN parity (reference loop, batched 8000/800)"),
                       ("vocoder-fast", "WaveRNN fast (int8), lockstep folds (`Vocoder.infer_waveform`)"),
                       ("vocoder-fast-torchscript", "WaveRNN fast, TorchScript loop (no C compiler)"),
                       ("vocoder-fast-1thread", "WaveRNN fast, 1 thread"),
                       ("vocoder-fast-fp32", "WaveRNN fast, fp32 weights"),
                       ("vocoder-rolling", "WaveRNN fast (int8), rolling folds (streams)"),
                       ("vocoder-int8", "WaveRNN int8"),
                       ("vocoder-int8-avx2", "WaveRNN int8, AVX2 kernel (a CPU without VNNI)"),
                       ("vocoder-rolling-int8", "WaveRNN int8, rolling folds (streams)"),
                       ("vocoder-fp16", "WaveRNN fp16, lockstep folds"),
                       ("vocoder-rolling-fp16", "WaveRNN fp16, rolling folds (streams)")]:
        if key in r:
            row(label, f"real-time factor, {r[key]['audio']:.1f} s mel", spread(r[key]["times"], 1 / r[key]["audio"]),
                key)
    for key, label in [("clone-fast", "clone end to end (fast, the default: int8)"),
                       ("clone-int8", "clone end to end (int8)"), ("clone-fp16", "clone end to end (fp16)"),
                       ("clone-parity", "clone end to end (parity)")]:
        if key in r:
            c = r[key]
            stages = ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in c["stages"].items())
            row(label, f"real-time factor, {c['audio']:.1f} s of speech ({stages})",
                spread(c["times"], 1 / c["audio"]), key)
            watermark_row(f"{key.split('-')[1]} clone", c, key)
    if "starter-synthesizer" in r:
        s = r["starter-synthesizer"]
        row("starter synthesizer (FastSpeech, fp32)", f"real-time factor, one {s['audio']:.1f} s sentence "
            f"(target <= 0.02: 50x real time)", spread(s["times"], 1 / s["audio"], digits=4), "starter-synthesizer")
    if "starter-clone" in r:
        c = r["starter-clone"]
        stages = ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in c["stages"].items())
        row("starter clone (encoder + starter synthesizer + starter vocoder)", f"real-time factor, {c['audio']:.1f} s "
            f"of speech ({stages}; target <= 0.2)", spread(c["times"], 1 / c["audio"], digits=3), "starter-clone")
        watermark_row("starter clone", c, "starter-clone")
    if "starter-clone-griffinlim" in r:
        c = r["starter-clone-griffinlim"]
        row("starter clone with Griffin-Lim", f"real-time factor, {c['audio']:.1f} s of speech",
            spread(c["times"], 1 / c["audio"], digits=3), "starter-clone-griffinlim")
    for key, label in (("starter-vocoder", ""), ("starter-vocoder-avx2", ", torch held to AVX2")):
        if key in r:
            row(f"starter vocoder{label}", "real-time factor, 5 s mel (target <= 0.05)",
                spread(r[key]["times"], 1 / r[key]["audio"], digits=4), key)
    for key, label in (("starter-stream", ""), ("starter-stream-long", ""),
                       ("starter-stream-avx2", ", torch held to AVX2")):
        if key in r:
            c = r[key]
            row(f"streamed starter clone{label}", f"first audio from the call (3 s reference), s (target <= 0.25); "
                f"{c['audio']:.0f} s of speech", spread(c["first"], digits=3), key)
            row(f"streamed starter clone{label}", "real-time factor; playback gaps, s",
                f"{spread(c['times'], 1 / c['audio'], digits=3)}; {spread(c['gaps'], digits=2)}", key)
    for key, label in [("clone-long", "clone end to end (fast), 60 s text"),
                       ("clone-long-int8", "clone end to end (int8), 60 s text")]:
        if key in r:
            c = r[key]
            stages = ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in c["stages"].items())
            row(label, f"real-time factor, {c['audio']:.1f} s of speech ({stages})", spread(c["times"], 1 / c["audio"]),
                key)
    for key, label in [("stream", "streamed clone (fast: int8)"), ("stream-int8", "streamed clone (int8)"),
                       ("stream-fp16", "streamed clone (fp16)"),
                       ("stream-long", "streamed clone (fast: int8), 60 s text"),
                       ("stream-long-int8", "streamed clone (int8), 60 s text"),
                       ("stream-long-fp16", "streamed clone (fp16), 60 s text")]:
        if key in r:
            s_ = r[key]
            row(label, "time to first audio, s, from the call with a 3 s reference recording (target <= 0.5)",
                spread(s_["first"]), key)
            if s_.get("first_known"):
                row(label, "time to first audio, s, with the voice already embedded", spread(s_["first_known"]), key)
            if "first_steps" in s_:
                row(label, "decoder steps the first piece needed", spread(s_["first_steps"], digits=0), key)
            row(label, f"real-time factor, {s_['audio']:.1f} s (target <= 1.0)", spread(s_["times"], 1 / s_["audio"]),
                key)
            if "gaps" in s_:
                row(label, "gaps at the player: total s (count)",
                    f"{spread(s_['gaps'])} ({spread(s_['n_gaps'], digits=0)})", key)
                row(label, "largest difference from `clone(rolling=True)`'s audio (same seed, up to level)",
                    f"{s_['clone_difference']:.1e}", key)
    if "pace" in r:
        lines += ["", "Speaking rate (`pace`, the HTTP API's `speed`): rate made = duration at pace 1 / "
                  f"duration at the pace asked, over {len(PACE_TEXTS)} sentences (median, min–max).", "",
                  "| synthesizer | " + " | ".join(f"pace {p}" for p in PACES) + " |",
                  "|---|" + "---|" * len(PACES)]
        for name, rates in r["pace"]["rates"].items():
            label = {"starter": "starter FastSpeech (durations scaled)",
                     "tacotron": "Tacotron (mel time-scaled)"}[name]
            lines.append(f"| {label} | " + " | ".join(spread(rates[str(p)], digits=3) for p in PACES) + " |")
    if r.get("failed"):
        lines += ["", f"Failed (see the log): {', '.join(r['failed'])}."]
    if "quality" in r:
        lines += ["", "Sound of the fast paths (1.25 s, formula weights): total-variation distance between "
                  "the histograms of sampled classes (16 bins) and mean absolute difference of the Welch "
                  "spectra. Two seeds of the same path set the noise floor.", "",
                  "| pair | class histogram distance | spectral distance (dB) |", "|---|---|---|"]
        for name, q in r["quality"]["pairs"].items():
            lines.append(f"| {name} | {q['class_tv']:.3f} | {q['spectral_db']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
