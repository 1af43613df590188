"""Corpus readers and the resumable, parallel preprocessing."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio.training.datasets import DatasetError, detect_format, read_corpora, read_corpus
from deepfake_audio.training.files import read_jsonl
from training_fixtures import encoder_data, speech_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return speech_corpus(tmp_path_factory)


def _wav(corpus: Path, k: int = 0) -> Path:
    return corpus / "flite_slt" / f"utt{k}.wav"


def _flac(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data, sr = sf.read(str(src))
    sf.write(str(dst), data, sr, format="FLAC")


def test_generic_layout(corpus):
    read = read_corpus(corpus)
    assert detect_format(corpus) == "generic"
    assert len(read.utterances) == 16 and len(read.speakers) == 4
    first = read.utterances[0]
    assert first.text and first.text[0].isupper() and first.audio.suffix == ".wav"
    assert len({u.id for u in read.utterances}) == 16


def test_librispeech_layout(corpus, tmp_path):
    root = tmp_path / "LibriSpeech" / "train-clean-100"
    chapter = root / "19" / "198"
    for k in range(2):
        _flac(_wav(corpus, k), chapter / f"19-198-000{k}.flac")
    (chapter / "19-198.trans.txt").write_text("19-198-0000 THE BIRCH CANOE\n19-198-0001 GLUE THE SHEET\n"
                                              "19-198-0002 A LINE WITHOUT AUDIO\n")
    read = read_corpus(tmp_path / "LibriSpeech")
    assert detect_format(tmp_path / "LibriSpeech") == "librispeech"
    assert [u.text for u in read.utterances] == ["THE BIRCH CANOE", "GLUE THE SHEET"]
    assert {u.speaker for u in read.utterances} == {"LibriSpeech_19"}
    assert len(read.skipped) == 1 and "19-198-0002" in read.skipped[0][0]


def test_libritts_layout(corpus, tmp_path):
    chapter = tmp_path / "LibriTTS" / "84" / "121123"
    chapter.mkdir(parents=True)
    shutil.copy(_wav(corpus), chapter / "84_121123_000007_000001.wav")
    (chapter / "84_121123_000007_000001.normalized.txt").write_text("The birch canoe slid.")
    (chapter / "84_121123_000007_000001.original.txt").write_text("The birch canoe slid!")
    shutil.copy(_wav(corpus, 1), chapter / "84_121123_000008_000000.wav")
    (chapter / "84_121123_000008_000000.original.txt").write_text("Only the original.")
    read = read_corpus(tmp_path / "LibriTTS", "auto")
    assert [u.text for u in read.utterances] == ["The birch canoe slid.", "Only the original."]
    assert read.utterances[0].speaker == "LibriTTS_84"


@pytest.mark.parametrize("version", ["0.80", "0.92"])
def test_vctk_layout(corpus, tmp_path, version):
    root = tmp_path / "VCTK"
    for k, spk in enumerate(["p225", "p226"]):
        if version == "0.80":
            target = root / "wav48" / spk / f"{spk}_001.wav"
            target.parent.mkdir(parents=True)
            shutil.copy(_wav(corpus, k), target)
        else:
            for mic in ("mic1", "mic2"):
                _flac(_wav(corpus, k), root / "wav48_silence_trimmed" / spk / f"{spk}_001_{mic}.flac")
        if spk == "p225":  # p226 has no transcript, like p315 in the real corpus
            (root / "txt" / spk).mkdir(parents=True)
            (root / "txt" / spk / f"{spk}_001.txt").write_text("Please call Stella.\n")
    read = read_corpus(root)
    assert detect_format(root) == "vctk"
    assert len(read.utterances) == 2  # the mic2 copies are not read twice
    with_text = read.with_transcripts()
    assert [u.text for u in with_text.utterances] == ["Please call Stella."]
    (path, reason), = with_text.skipped
    assert "p226" in path and "no transcript" in reason and "p226_001.txt" in reason


def test_ljspeech_layout(corpus, tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    shutil.copy(_wav(corpus), root / "wavs" / "LJ001-0001.wav")
    shutil.copy(_wav(corpus, 1), root / "wavs" / "LJ001-0002.wav")
    (root / "metadata.csv").write_text('LJ001-0001|Printing, in 1912 "x"|Printing, in nineteen twelve "x"\n'
                                       "LJ001-0002|Two columns only\nLJ001-0003|missing audio|missing audio\n")
    read = read_corpus(root)
    assert [u.text for u in read.utterances] == ['Printing, in nineteen twelve "x"', "Two columns only"]
    assert len(read.speakers) == 1
    assert read.skipped[0][0].endswith("LJ001-0003.wav")


def test_voxceleb_layout(corpus, tmp_path):
    root = tmp_path / "vox1"
    for spk, video in [("id10001", "1zcIwhmdeo4"), ("id10002", "xTV-jFAUKcw")]:
        (root / "wav" / spk / video).mkdir(parents=True)
        shutil.copy(_wav(corpus), root / "wav" / spk / video / "00001.wav")
    (root / "wav" / "id10002" / "xTV-jFAUKcw" / "00002.m4a").write_bytes(b"\0")
    read = read_corpus(root, "voxceleb")
    assert len(read.utterances) == 2 and read.speakers == ["vox1_id10001", "vox1_id10002"]
    assert all(u.text is None for u in read.utterances)
    assert "m4a" in read.skipped[0][0] and "convert" in read.skipped[0][1]


def test_format_prefix_and_errors(corpus, tmp_path):
    assert len(read_corpora([f"generic:{corpus}"]).utterances) == 16
    with pytest.raises(DatasetError, match="not found"):
        read_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No audio found"):
        read_corpus(tmp_path / "empty")
    with pytest.raises(DatasetError, match="same utterance ids"):
        read_corpora([str(corpus), str(corpus)])


def test_encoder_preprocess_output(tmp_path_factory):
    out = encoder_data(tmp_path_factory)
    records = read_jsonl(out / "metadata.jsonl")
    assert len(records) == 16 and len({r["speaker"] for r in records}) == 4
    frames = np.load(out / records[0]["frames"])
    assert frames.dtype == np.float32 and frames.shape == (records[0]["n_frames"], 40)


def test_preprocess_skips_bad_files_and_resumes(corpus, tmp_path):
    from deepfake_audio.training import encoder_preprocess as preprocess
    data = tmp_path / "corpus"
    shutil.copytree(corpus / "flite_slt", data / "slt")
    shutil.copytree(corpus / "espeak_m3", data / "m3")
    (data / "m3" / "broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--workers", "2", "--min-frames", "50", "--quiet"]
    records = preprocess.main(args)
    assert len(records) == 8
    skipped = (out / "skipped.txt").read_text()
    assert "broken.wav" in skipped and "unreadable audio" in skipped
    # A second run has nothing to do; a lost output is made again, and only it.
    journal_lines = len((out / "journal.jsonl").read_text().splitlines())
    lost = out / records[3]["frames"]
    before = lost.read_bytes()
    lost.unlink()
    assert len(preprocess.main(args)) == 8
    new_lines = (out / "journal.jsonl").read_text().splitlines()[journal_lines:]
    assert sorted(line.split('"')[3] for line in new_lines) == sorted([records[3]["id"], "corpus_m3_broken"])
    assert lost.read_bytes() == before


def test_a_folder_with_nothing_usable_says_why(tmp_path):
    """When every file is skipped, the training command's error names the files and their reasons
    rather than only pointing at skipped.txt."""
    from deepfake_audio.training import encoder_preprocess as preprocess
    from deepfake_audio.training import TrainingError
    from deepfake_audio.training.files import read_metadata
    data = tmp_path / "corpus" / "me"
    data.mkdir(parents=True)
    for k in range(4):
        (data / f"take{k}.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    out = tmp_path / "out"
    assert preprocess.main([str(data.parent), "--out", str(out), "--workers", "1", "--quiet"]) == []
    with pytest.raises(TrainingError) as failure:
        read_metadata(out)
    message = str(failure.value)
    assert "kept nothing" in message and "4 file(s) were skipped" in message
    # three of the four named with their reason (in the order the files were read), then the count of the rest
    assert sum(f"take{k}.wav: unreadable audio" in message for k in range(4)) == 3 and "(and 1 more)" in message


def test_in_process_preprocessing_leaves_torch_threads_alone():
    """With one worker the pool's initializer (one torch thread per worker process) runs in this
    process: it must not leave a notebook or a server at one thread."""
    import torch
    from deepfake_audio.training.preprocessing import _worker_threads, parallel_map
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert list(parallel_map(abs, [-1, -2], 1, "test", quiet=True, initializer=_worker_threads)) == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
