"""Every Python example in the README runs, as written, against a real studio and pipeline.

The only changes made to an example before it runs: the studio's address is the test
server's, `Pipeline()` loads the test's small checkpoints (so that WaveRNN is there), and
`play` is a function that keeps what it is given. The files the examples name (me.wav,
bob.wav, lines.csv, suspect.mp3) are made in the folder they run in.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_studio_api import models_folder, speechlike_wav, start_studio

ROOT = Path(__file__).resolve().parents[1]
README_URL = "http://127.0.0.1:7860"


def python_examples() -> list[str]:
    """The README's ```python blocks, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def kind_of(example: str) -> str:
    if "gradio_client" in example:
        return "studio"
    if "from openai" in example:
        return "openai"
    if "from deepfake_audio import Pipeline" in example:
        return "python"
    raise AssertionError(f"a README example this test does not know how to run:\n{example}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    speechlike_wav(folder / "me.wav", seconds=4.0, f0=120.0)
    speechlike_wav(folder / "bob.wav", seconds=4.0, f0=200.0)
    (folder / "lines.csv").write_text("voice,text\n,First line of the batch.\n,Second line.\n", encoding="utf-8")
    from deepfake_audio_core.audio_io import write_audio
    import soundfile as sf
    wav, rate = sf.read(str(folder / "me.wav"), dtype="float32")
    write_audio(folder / "suspect.mp3", wav, rate)
    return folder


@pytest.fixture(scope="module")
def models(quick_dir, tmp_path_factory) -> Path:
    return models_folder(tmp_path_factory.mktemp("readme-models"), quick_dir)


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    _, server = start_studio(models, tmp_path_factory.mktemp("readme-data"))
    with server:
        yield server


def run_example(example: str, folder: Path, monkeypatch, **replace: str) -> dict:
    for old, new in replace.items():
        assert old in example, f"the README example no longer contains {old!r}"
        example = example.replace(old, new)
    monkeypatch.chdir(folder)
    played: list[np.ndarray] = []
    namespace = {"play": lambda audio, rate: played.append(audio), "__name__": "readme_example"}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    namespace["played"] = played
    return namespace


def test_the_readme_has_the_examples_this_file_runs():
    assert sorted(kind_of(e) for e in python_examples()) == ["openai", "python", "studio"]


def test_the_studio_and_openai_examples(server, workdir, monkeypatch):
    """The gradio_client example (every endpoint it names), then the OpenAI client on the voice it saved."""
    examples = {kind_of(e): e for e in python_examples()}
    url = server.url.rstrip("/")
    done = run_example(examples["studio"], workdir, monkeypatch, **{README_URL: url})
    assert Path(done["wav_path"]).is_file() and -1.0 <= float(done["similarity"]) <= 1.0
    with zipfile.ZipFile(done["zip_path"]) as archive:  # both lines of lines.csv, and the manifest
        names = archive.namelist()
    assert "manifest.csv" in names and len([n for n in names if n.endswith(".wav")]) == 2
    assert done["rows"]["data"] and done["verdict"]
    done = run_example(examples["openai"], workdir, monkeypatch, **{README_URL: url})
    assert (workdir / "hello.mp3").stat().st_size > 1000


def test_the_python_api_example(models, workdir, monkeypatch):
    example = next(e for e in python_examples() if kind_of(e) == "python")
    done = run_example(example, workdir, monkeypatch, **{"Pipeline()": f"Pipeline({str(models)!r})"})
    assert done["result"].sample_rate == 16000 and len(done["result"].wav)
    assert (workdir / "slow.mp3").is_file() and (workdir / "lines.zip").is_file()
    assert len(done["chunks"]) == len(done["played"]) > 0
    assert done["wav"].ndim == 1 and len(done["talk"].sentences) == 2


def test_every_endpoint_the_readme_names_is_called_by_a_test():
    """A Gradio endpoint the README documents (`/name` or api_name="/name") is called by some test as
    api_name="/name", so renaming or breaking one cannot go unnoticed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`/([a-z_]+)`", readme)) | set(re.findall(r'api_name="/([a-z_]+)"', readme))
    ui = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "deepfake_audio" / "studio" / "ui").glob("*.py"))
    registered = set(re.findall(r'api_name="([a-z_]+)"', ui))
    documented = named & registered
    assert {"clone", "save_voice", "batch", "train_start", "train_status"} <= documented
    tests = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    called = set(re.findall(r'api_name="/([a-z_]+)"', tests))
    assert sorted(documented - called) == []
