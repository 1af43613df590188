"""The study and policy files: CITATION.cff validates, SECURITY.md covers the threat model, examples are licensed."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CFFCONVERT = ROOT / ".tools" / "cffconvert" / "bin" / "cffconvert"


def _validate(path: Path) -> subprocess.CompletedProcess:
    assert CFFCONVERT.is_file(), "cffconvert is installed by scripts/setup.sh --dev"
    return subprocess.run([str(CFFCONVERT), "--validate", "-i", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_citation_file_is_valid_and_cites_the_papers():
    proc = _validate(ROOT / "CITATION.cff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    for arxiv in ("1806.04558", "1710.10467", "1703.10135", "1802.08435"):  # SV2TTS, GE2E, Tacotron, WaveRNN
        assert arxiv in text


def test_the_validator_rejects_a_broken_citation(tmp_path):
    broken = tmp_path / "CITATION.cff"
    broken.write_text("cff-version: 1.2.0\ntitle: No authors and no message\n", encoding="utf-8")
    assert _validate(broken).returncode != 0


def test_security_policy_covers_reporting_and_the_threat_model():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    for topic in ("Reporting a vulnerability", "weights_only", "50 MB", "private", "watermark",
                  "does not protect against", "The API key", "/gradio_api/", "Limits"):
        assert topic in text
    # the limits it states are the ones the code applies
    from deepfake_audio.http_api import DEFAULT_QUEUE, DEFAULT_WAIT_SECONDS
    from deepfake_audio.studio import limits
    mb = limits.MB
    for stated in (f"{limits.MAX_UPLOAD_BODY // mb} MB for an upload", f"{limits.MAX_BODY // mb} MB for anything else",
                   f"{limits.MAX_UPLOADS_IN_FLIGHT // mb} MB arriving at once",
                   f"{limits.MAX_UPLOADED_PER_WINDOW // mb} MB within an hour",
                   f"`DEEPFAKE_AUDIO_API_QUEUE` ({DEFAULT_QUEUE})", f"`DEEPFAKE_AUDIO_API_WAIT` ({DEFAULT_WAIT_SECONDS:g})"):
        assert stated in text, stated


def test_example_voices_are_short_licensed_and_listed():
    folder = ROOT / "examples" / "voices"
    listing = json.loads((folder / "voices.json").read_text(encoding="utf-8"))
    assert 4 <= len(listing) <= 6
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for entry in listing:
        info = sf.info(str(folder / entry["file"]))
        assert info.samplerate == 16000 and info.channels == 1 and 4.0 <= info.duration <= 10.0
        assert entry["licence"] and entry["file"] in readme
    assert sorted(p.name for p in folder.glob("*.wav")) == sorted(e["file"] for e in listing)


def test_a_clone_started_as_an_example_loads_gets_the_example():
    """Clicking an example sets the page's audio to the example's file name before the file itself
    (seen once in a browser test, on a phone layout with Ctrl+Enter): that name means the example,
    and only an exact shipped name does."""
    from deepfake_audio.studio.examples import example_reference, example_voices
    first = example_voices()[0]
    assert example_reference(first.path.name) == first.path
    for other in ("unknown.wav", f"../{first.path.name}", f"voices/{first.path.name}", "", None):
        assert example_reference(other) == other
    real = str(first.path)  # a file that exists stays itself
    assert example_reference(real) == real


def test_the_package_list_names_every_package():
    # pyproject.toml lists the packages by hand: one left out installs without its modules
    # (a plain `pip install .`, or the editable install's static map, would not find it).
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("deepfake_audio", "deepfake_audio_core", "encoder", "synthesizer", "vocoder")
             for init in (ROOT / top).rglob("__init__.py")}
    assert listed == found
    assert not (ROOT / "deepfake_audio" / "core").exists()  # the base is the top-level deepfake_audio_core
