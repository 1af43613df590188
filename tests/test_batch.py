"""Batches: a text file or a CSV in, a ZIP of audio files and a manifest out."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import DATA
from deepfake_audio.batch import BatchError, read_batch, run_batch
from deepfake_audio.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent


def test_reading_text_and_csv(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Chapter one begins.\nIt goes on.\n\n\nChapter two.\n", encoding="utf-8")
    items = read_batch(story)
    assert [(i.text, i.voice, i.name) for i in items] == [("Chapter one begins.\nIt goes on.", None, "001"),
                                                          ("Chapter two.", None, "002")]
    table = tmp_path / "lines.csv"
    table.write_text("voice,text,file\nAlice,Hello Bob.,hello\n,Narration here.,\ndefault,The end.,end\n")
    items = read_batch(table)
    assert [(i.voice, i.name, i.where) for i in items] == [("Alice", "hello", "row 2"), (None, "002", "row 3"),
                                                           (None, "end", "row 4")]
    for text, message in [("speaker,text\nA,Hi.\n", "missing: voice"), ("voice,words\nA,Hi.\n", "missing: text"),
                          ("voice,text\nA,\n", "row 2: the text is empty"),
                          ("voice,text,file\nA,Hi.,../../x\n", "row 2: the file name '../../x'"),
                          ("voice,text,file\nA,Hi.,same\nB,Ho.,same\n", "row 3: the file name 'same' is used twice")]:
        table.write_text(text)
        with pytest.raises(BatchError, match=message.replace(".", r"\.")):
            read_batch(table)
    with pytest.raises(BatchError, match="is a .txt"):
        read_batch(tmp_path / "lines.xlsx")


def test_a_csv_becomes_a_zip_with_a_manifest(quick_dir, tmp_path):
    pipe = Pipeline(quick_dir, device="cpu")
    alice = pipe.embed(DATA / "ref.wav")
    table = tmp_path / "lines.csv"
    table.write_text("voice,text,file\nAlice,Hello there Bob.,hello\n,Narration in my voice.,\n"
                     "Alice,\"Two sentences. [pause 0.5] With a pause.\",pause\n")
    done = []
    out = run_batch(pipe, read_batch(table), tmp_path / "out.zip", embedding=np.roll(alice, 3),
                    voices={"Alice": alice}, seed=1, vocoder="griffinlim", file_format="flac",
                    progress=lambda k, n: done.append((k, n)))
    assert done == [(1, 3), (2, 3), (3, 3)]
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["002.flac", "hello.flac", "manifest.csv", "pause.flac"]
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        for row in manifest:
            wav, rate = sf.read(io.BytesIO(archive.read(row["file"])))
            assert rate == 16000 and len(wav) / rate == pytest.approx(float(row["seconds"]), abs=0.01)
    assert [(r["voice"], r["seed"]) for r in manifest] == [("Alice", "1"), ("default", "2"), ("Alice", "3")]
    with pytest.raises(BatchError, match="row 2: unknown voice 'Carol'"):
        table.write_text("voice,text\nCarol,Hi.\n")
        run_batch(pipe, read_batch(table), tmp_path / "bad.zip", embedding=alice, voices={"Alice": alice})
    assert not (tmp_path / "bad.zip").exists()


def test_clone_batch_command(quick_dir, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("First paragraph.\n\nSecond paragraph.\n")
    out = tmp_path / "story.zip"
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone-batch", "--input", str(story), "--out",
                           str(out), "--voice", str(DATA / "ref.wav"), "--models", str(quick_dir), "--vocoder",
                           "griffinlim", "--format", "mp3", "--pitch", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["001.mp3", "002.mp3", "manifest.csv"]
    table = tmp_path / "bad.csv"
    table.write_text("who,text\nA,Hi.\n")
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone-batch", "--input", str(table), "--out",
                           str(tmp_path / "bad.zip"), "--models", str(quick_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: bad.csv needs a header row")
    assert "Traceback" not in done.stderr and not (tmp_path / "bad.zip").exists()
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone-batch", "--input", str(story), "--out",
                           str(tmp_path / "high.zip"), "--models", str(quick_dir), "--voice", str(DATA / "ref.wav"),
                           "--pitch", "13"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "pitch must be from -12 to 12" in done.stderr and "Traceback" not in done.stderr
