"""The studio through its API: `gradio_client` against a real server, plus the library underneath.

The server is the real app (`app.create_app`) served by uvicorn on 127.0.0.1 in a
thread. Its synthesizer and vocoder are the quick seed-1 test checkpoints (`quick_dir`:
every sentence stops at the decoder's minimum of 14 frames instead of running to the
2000-frame cap). There is no encoder.pt, so the encoder is the official one bundled
with resemblyzer, as in a fresh install.
"""
from __future__ import annotations

import concurrent.futures
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


SAMPLE_RATE = 16000
MIN_FRAMES = 14  # the decoder never stops before frame 12; r = 2 gives 14 frames
HOP = 200


def models_folder(folder: Path, quick_dir: Path, names=("synthesizer.pt", "vocoder.pt")) -> Path:
    """`folder` with links to the quick checkpoints `names`; without encoder.pt the bundled encoder is used."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(quick_dir / name)
    return folder


def speechlike_wav(path: Path, seconds: float = 4.0, sample_rate: int = 22050, f0: float = 130.0) -> Path:
    """A voiced, syllable-rate modulated harmonic signal that the VAD keeps as speech (16-bit WAV)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 + 0.2 * f0 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = (0.5 * (1 + np.sin(2 * np.pi * 4 * t - np.pi / 2))) ** 1.5
    wav = voiced * syllables
    sf.write(str(path), 0.3 * wav / np.max(np.abs(wav)), sample_rate, subtype="PCM_16")
    return path


def expected_samples(n_sentences: int) -> int:
    """Griffin-Lim output of n sentences of 14 frames each, joined by 0.15 s pauses."""
    return n_sentences * HOP * (MIN_FRAMES - 1) + (n_sentences - 1) * int(0.15 * SAMPLE_RATE)


class StudioServer:
    """The studio app served by uvicorn in a background thread."""

    def __init__(self, app):
        import uvicorn
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="studio-server", daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_studio(models: Path, data: Path, **kwargs):
    """(studio, server) for the app on `models` and `data`; use the server as a context manager."""
    import app as studio_app
    from deepfake_audio.studio import Studio
    studio = Studio(models, data, private=kwargs.pop("private", False))
    return studio, StudioServer(studio_app.create_app(studio, **kwargs))


@pytest.fixture(scope="module")
def fast_models(quick_dir, tmp_path_factory) -> Path:
    return models_folder(tmp_path_factory.mktemp("fast-models"), quick_dir)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("studio-audio")
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 7)
    (folder / "notes.txt").write_text("not audio")
    sf.write(str(folder / "silent.wav"), np.zeros(3 * 16000), 16000, subtype="PCM_16")
    return {"voice": speechlike_wav(folder / "voice.wav"),
            "other": speechlike_wav(folder / "other.wav", seconds=3.0, sample_rate=16000, f0=210.0),
            "short": speechlike_wav(folder / "short.wav", seconds=0.4),
            "silent": folder / "silent.wav", "corrupt": corrupt, "text": folder / "notes.txt"}


@pytest.fixture(scope="module")
def server(fast_models, tmp_path_factory):
    studio, server = start_studio(fast_models, tmp_path_factory.mktemp("studio-data"), queue_size=16)
    with server:
        server.studio = studio
        yield server


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server.url, verbose=False)


def clone(client, reference, text="Hello there. This is a test.", seed=3, vocoder="griffinlim", voice="",
          stream=False, consent=True, owner=None):
    """/clone's first six outputs (WAV, score, reading, status, two figures); the seventh is the live stream."""
    from gradio_client import handle_file
    out = client.predict(handle_file(str(reference)) if reference else None, voice, text, seed, vocoder, stream,
                         consent, owner, api_name="/clone")
    assert len(out) == 7
    return out[:6]


def check_similarity(studio, reference: Path, wav_path, score) -> None:
    """The score shown is the encoder's similarity of the reference and the result (recomputed here)."""
    wav, rate = sf.read(str(wav_path), dtype="float32")
    voice = studio.pipeline.embed(reference)  # the result is compared at the level of the reference's speech
    expected = studio.pipeline.similarity(voice, studio.pipeline.embed_output(wav, rate, like=voice))
    assert float(score) == pytest.approx(expected, abs=0.01)  # the file is 16-bit; the studio scored the floats


def check_wav(path) -> tuple[np.ndarray, int]:
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, SAMPLE_RATE)
    wav, rate = sf.read(str(path), dtype="float32")
    assert np.all(np.isfinite(wav)) and 0.5 < np.max(np.abs(wav)) <= 1.0
    return wav, rate


def test_clone_endpoint_returns_wav_score_and_plots(client, server, audio):
    wav_path, score, reading, status, mel_plot, embedding_plot = clone(client, audio["voice"])
    wav, _ = check_wav(wav_path)
    assert len(wav) == expected_samples(2)
    assert Path(wav_path).name == "recording-seed3.wav"
    check_similarity(server.studio, audio["voice"], wav_path, score)
    assert reading.split()[0] in ("Very", "Close", "Somewhat", "Different")
    assert abs(float(re.search(r"\((\d\.\d\d)\):", reading).group(1)) - float(score)) <= 0.0051
    # a clone that is not close points to the Train a voice tab; a close one does not
    assert ("**Train a voice**" in reading) == (float(score) < 0.75), (score, reading)
    assert "real-time factor" in status and "Seed 3" in status and "2 sentences" in status
    for plot in (mel_plot, embedding_plot):
        assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")

    again, *_ = clone(client, audio["voice"])  # same seed, same everything: same audio
    assert np.array_equal(sf.read(again)[0], sf.read(wav_path)[0])


def test_clone_with_wavernn(client, server, audio):
    wav_path, score, _, status, *_ = clone(client, audio["voice"], text="Hi.", seed=5, vocoder="wavernn")
    wav, _ = check_wav(wav_path)
    assert len(wav) == HOP * (MIN_FRAMES - 1)
    assert "WaveRNN vocoder" in status
    check_similarity(server.studio, audio["voice"], wav_path, score)


@pytest.mark.parametrize("case, expected", [
    ("no audio", "No reference voice"),
    ("silent", "is silent"),
    ("short", "s of speech after removing silence"),
    ("corrupt", "Could not decode corrupt.wav"),
    ("text", "Unsupported audio format '.txt'"),
    ("empty text", "The text is empty"),
    ("long text", "the limit is 5000"),
    ("unspeakable text", "no speakable characters"),
    ("bad seed", "The seed must be a whole number"),
    ("bad vocoder", "'hifigan' (type: <class 'str'>) is not in the list of choices"),
    ("unknown voice", "There is no saved voice called 'Nobody'"),
])
def test_bad_input_gives_its_message(client, audio, case, expected):
    from gradio_client.exceptions import AppError
    args = {"reference": audio["voice"], "text": "Hello.", "seed": 1, "vocoder": "griffinlim", "voice": ""}
    args.update({"no audio": {"reference": None}, "silent": {"reference": audio["silent"]},
                 "short": {"reference": audio["short"]}, "corrupt": {"reference": audio["corrupt"]},
                 "text": {"reference": audio["text"]}, "empty text": {"text": "   "},
                 "long text": {"text": "word " * 1001}, "unspeakable text": {"text": "?!... --"},
                 "bad seed": {"seed": -4}, "bad vocoder": {"vocoder": "hifigan"},
                 "unknown voice": {"voice": "Nobody"}}[case])
    with pytest.raises(AppError) as caught:
        clone(client, **args)
    assert expected in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_voice_library_endpoints(client, server, audio, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from deepfake_audio.studio.library import VoiceLibrary

    choices, message, name_box, _files, _clips = client.predict(" Test  voice ", handle_file(str(audio["voice"])), True,
                                                api_name="/save_voice")
    assert message == "Saved **Test voice** from 1 recording." and name_box == ""
    assert "Test voice" in client.predict(api_name="/voices")
    with pytest.raises(AppError, match="already exists"):
        client.predict("test VOICE", handle_file(str(audio["other"])), True, api_name="/save_voice")
    with pytest.raises(AppError, match="Give the voice a name"):
        client.predict("", handle_file(str(audio["other"])), True, api_name="/save_voice")
    with pytest.raises(AppError, match="is silent"):
        client.predict("Quiet", handle_file(str(audio["silent"])), True, api_name="/save_voice")

    # A saved voice clones without any recording, and persists on disk.
    wav_path, score, *_ = clone(client, None, text="Saved voices need no upload.", voice="Test voice")
    check_wav(wav_path)
    assert Path(wav_path).name == "test-voice-seed3.wav"
    reopened = VoiceLibrary(server.studio.voices.root)
    saved = reopened.get("test voice")
    assert saved.embedding.shape == (256,) and sf.info(str(saved.preview)).duration <= 8.0
    # its score compares the result with the voice at the level of the voice's saved recording
    pipe, (wav, rate) = server.studio.pipeline, sf.read(str(wav_path), dtype="float32")
    assert pipe.heard_level(saved.embedding) == pytest.approx(pipe.reference_level(saved.preview))
    expected = pipe.similarity(saved.embedding, pipe.embed_output(wav, rate, like=saved.embedding))
    assert float(score) == pytest.approx(expected, abs=0.01)

    # A damaged entry is skipped, not fatal, and never deleted.
    broken = server.studio.voices.root / "broken-000000"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    assert client.predict(api_name="/voices") == ["Test voice"]
    assert broken.is_dir()

    client.predict("Test voice", api_name="/delete_voice")
    assert client.predict(api_name="/voices") == []
    with pytest.raises(AppError, match="no saved voice called 'Test voice'"):
        client.predict("Test voice", api_name="/delete_voice")


def test_voice_map_uses_umap_from_four_points(client, server, audio):
    from gradio_client import handle_file
    for name, key in (("Alpha", "voice"), ("Beta", "other")):
        client.predict(name, handle_file(str(audio[key])), True, api_name="/save_voice")
    clone(client, None, text="From alpha.", voice="Alpha")
    clone(client, audio["other"], text="From a recording.")
    figure, table = client.predict(api_name="/voice_map")
    assert figure["type"] == "matplotlib"
    rows = table["data"]
    kinds = [row[1] for row in rows]
    assert kinds.count("saved voice") == 2 and "generated result" in kinds and "unsaved reference" in kinds
    assert len(rows) >= 4  # so the projection was UMAP
    client.predict(api_name="/clear_results")
    _, table = client.predict(api_name="/voice_map")
    assert [row[1] for row in table["data"]] == ["saved voice", "saved voice"]


def test_concurrent_clients_are_all_answered(server, audio):
    from gradio_client import Client
    n = 4
    clients = [Client(server.url, verbose=False) for _ in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(clone, c, audio["voice"], f"Request number {k}.", 100 + k)
                   for k, c in enumerate(clients)]
        results = [f.result(timeout=300) for f in futures]
    for k, (wav_path, score, _, status, *_) in enumerate(results):
        check_wav(wav_path)
        assert f"Seed {100 + k}" in status


def test_streamed_clone_gives_what_was_heard(client, server, audio):
    pieces, final = [], None
    for item in server.studio.clone_stream(audio["voice"], None, "One. Two. Three.", 4, "wavernn", consent=True):
        if isinstance(item, np.ndarray):
            assert final is None and item.dtype == np.float32 and len(item) > 0
            pieces.append(item)
        else:
            final = item
    heard = np.concatenate(pieces)
    whole = server.studio.pipeline.clone(audio["voice"], "One. Two. Three.", seed=4, vocoder="wavernn")
    assert len(pieces) >= 3 and len(heard) == len(whole.wav)  # same layout as the one-shot clone
    saved, _ = sf.read(str(final.wav_path), dtype="float32")
    # The WAV is the stream at the one-shot clone's 0.97 peak (to 16-bit rounding).
    assert np.abs(saved - heard * (0.97 / np.abs(heard).max())).max() < 2 / 32767
    assert "first audio after" in final.status and len(final.result.mels) == 3
    # Through the web API: the same request, streamed, ends with the same WAV.
    if server.studio.can_stream:
        wav_path, _, _, status, *_ = clone(client, audio["voice"], "One. Two. Three.", 4, "wavernn", stream=True)
        assert np.array_equal(sf.read(wav_path, dtype="float32")[0], saved)
        assert "first audio after" in status


def test_progress_reports_each_stage(server, audio):
    seen = []
    server.studio.clone(audio["voice"], None, "One. Two.", 1, "griffinlim", consent=True,
                        report=lambda fraction, desc: seen.append(desc))
    assert seen[0] == "Encoding the reference voice"
    for expected in ("Synthesizing 2 sentences", "Synthesizing sentence 2 of 2",
                     "Vocoding with Griffin-Lim: sentence 1 of 2", "Vocoding with Griffin-Lim: sentence 2 of 2"):
        assert expected in seen


def test_missing_weights(quick_dir, tmp_path, audio):
    from deepfake_audio_core.errors import MissingWeightsError
    from deepfake_audio.studio import Studio
    from deepfake_audio.pipeline import Pipeline
    empty = tmp_path / "no-weights"
    empty.mkdir()
    bare = Studio(data_dir=tmp_path / "data", pipeline=Pipeline(empty, starter=False))
    notice = bare.weights_notice()
    assert notice.count("\n\n") == 1  # one line each for the synthesizer and the vocoder
    assert "No synthesizer weights" in notice and "python -m deepfake_audio download --models" in notice
    assert bare.vocoder_choices() == [("Griffin-Lim (fast, robotic)", "griffinlim")]
    with pytest.raises(MissingWeightsError, match="synthesizer.pt is missing"):
        bare.clone(audio["voice"], None, "Hello.", 1, "griffinlim", consent=True)
    assert bare.save_voice("Still works", audio["voice"], consent=True) == "Still works"  # the encoder is always there
    from deepfake_audio.studio.ui import build_ui
    shown = [c["props"].get("value") for c in build_ui(bare).get_config_file()["components"]
             if c["props"].get("elem_id") == "weights-notice"]
    assert shown == [notice]

    partial = Studio(data_dir=tmp_path / "data2", pipeline=Pipeline(
        models_folder(tmp_path / "no-vocoder", quick_dir, ["synthesizer.pt"]), starter=False))
    assert "Griffin-Lim stands in" in partial.weights_notice() and "synthesizer" not in partial.weights_notice()
    out = partial.clone(audio["voice"], None, "Hello.", 1, "wavernn", consent=True)
    assert "Griffin-Lim was used" in out.status and "Griffin-Lim vocoder" in out.status


def test_host_and_port(monkeypatch):
    import app as studio_app
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "HOST", "PORT", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(studio_app, "in_container", lambda: False)
    assert studio_app.server_address(None, None) == ("127.0.0.1", 7860)
    assert studio_app.server_address("0.0.0.0", 9000) == ("0.0.0.0", 9000)
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("HOST", "::")
    assert studio_app.server_address(None, None) == ("::", 8080)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "10.0.0.2")
    assert studio_app.server_address(None, None) == ("10.0.0.2", 7000)
    monkeypatch.undo()
    for name in ("GRADIO_SERVER_NAME", "HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/voice-studio")
    assert studio_app.server_address(None, 7860)[0] == "0.0.0.0"
    args = studio_app.build_parser().parse_args(["--host", "h", "--port", "1", "--models", "m", "--data", "d"])
    assert (args.host, args.port, str(args.models), str(args.data)) == ("h", 1, "m", "d")


def test_saved_voices_default_to_studio_data_in_the_repository(monkeypatch, tmp_path):
    """As the README says (and .gitignore expects): studio_data/ at the top, else $DEEPFAKE_AUDIO_DATA."""
    from deepfake_audio.studio import default_data_dir
    for name in ("DEEPFAKE_AUDIO_DATA", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert default_data_dir() == Path(__file__).resolve().parents[1] / "studio_data"
    monkeypatch.setenv("DEEPFAKE_AUDIO_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path


def test_fetch_missing_weights_asks_only_for_what_is_absent(tmp_path, monkeypatch):
    import deepfake_audio.download as download
    import encoder.inference
    from deepfake_audio_core.errors import MissingWeightsError
    from deepfake_audio.studio import fetch_missing_weights
    asked = []
    monkeypatch.setattr(download, "download_models", lambda folder, files: asked.append((Path(folder), list(files))))
    (tmp_path / "vocoder.pt").write_bytes(b"x")
    assert fetch_missing_weights(tmp_path) == ["synthesizer.pt"]

    def no_resemblyzer():
        raise MissingWeightsError("resemblyzer is not installed")
    monkeypatch.setattr(encoder.inference, "default_weights_path", no_resemblyzer)
    assert fetch_missing_weights(tmp_path) == ["encoder.pt", "synthesizer.pt"]
    assert asked == [(tmp_path, ["synthesizer.pt"]), (tmp_path, ["encoder.pt", "synthesizer.pt"])]


def test_queue_is_bounded_and_models_run_one_at_a_time(server):
    blocks = server.app.state.blocks
    assert blocks._queue.max_size == 16
    limits = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in blocks.fns.values()}
    assert limits["clone"] == limits["save_voice"] == ("models", 1)


def test_check_audio_endpoint_and_no_server_paths_on_the_page(client, server, audio, tmp_path):
    import urllib.request
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from deepfake_audio.watermark import embed_watermark
    wav, rate = sf.read(str(audio["voice"]), dtype="float32")
    marked = tmp_path / "marked.wav"
    sf.write(str(marked), embed_watermark(wav, rate), rate, subtype="PCM_16")
    verdict, score = client.predict(handle_file(str(marked)), api_name="/detect")
    assert verdict.startswith("**Watermarked") and score > 0.9
    verdict, score = client.predict(handle_file(str(audio["voice"])), api_name="/detect")
    assert verdict.startswith("**No watermark") and score < 0.5
    with pytest.raises(AppError, match="corrupt"):
        client.predict(handle_file(str(audio["corrupt"])), api_name="/detect")
    # Neither the page nor its configuration names the server's folders.
    page = "".join(urllib.request.urlopen(server.url + path, timeout=30).read().decode() for path in ("", "config"))
    for folder in (server.studio.data_dir, server.studio.pipeline.models_dir, server.studio.output_dir, Path.cwd()):
        assert str(folder) not in page


def test_error_messages_hide_server_paths():
    from deepfake_audio.studio.ui.errors import hide_server_paths
    shown = hide_server_paths("Checkpoint synthesizer.pt is missing: it goes in /srv/models/ "
                              "(expected at /srv/models/synthesizer.pt). Fetch it with: "
                              "python -m deepfake_audio download --models /srv/models")
    assert "/srv" not in shown and "synthesizer.pt" in shown and "python -m deepfake_audio download" in shown


def test_studio_mode_applies_to_every_request(fast_models, tmp_path, audio):
    """`app.py --mode fp16` (or $DEEPFAKE_AUDIO_MODE): that arithmetic for every request,
    streamed or not; an unknown mode is refused with the choices."""
    from deepfake_audio_core.errors import RequestError
    from deepfake_audio.studio import Studio
    with pytest.raises(RequestError, match="Unknown mode 'turbo': choose fast, int8, fp16, parity"):
        Studio(fast_models, tmp_path / "data", mode="turbo")
    studio = Studio(fast_models, tmp_path / "data", mode="fp16")
    out = studio.clone(audio["voice"], None, "One. Two.", 4, "wavernn", consent=True)
    fast = Studio(fast_models, tmp_path / "data", pipeline=studio.pipeline)
    assert not np.array_equal(sf.read(str(out.wav_path))[0],
                              sf.read(str(fast.clone(audio["voice"], None, "One. Two.", 4, "wavernn",
                                                     consent=True).wav_path))[0])
    items = list(studio.clone_stream(audio["voice"], None, "One. Two.", 4, "wavernn", consent=True))
    heard = np.concatenate(items[:-1])
    assert len(heard) == len(out.result.wav) and "first audio after" in items[-1].status
    from app import build_parser
    assert build_parser().parse_args(["--mode", "fp16"]).mode == "fp16"


def test_documented_endpoints_work_from_fresh_clients(server, audio, tmp_path):
    """Each README endpoint called by a client that has done nothing else first (no tab opened,
    no earlier call): /batch takes a saved voice by name, /history_file a number."""
    import zipfile

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    def fresh():
        return Client(server.url, verbose=False)

    fresh().predict("Scripted", handle_file(str(audio["voice"])), True, api_name="/save_voice")
    assert "Scripted" in fresh().predict(api_name="/voices")
    lines = tmp_path / "lines.csv"
    lines.write_text("voice,text,file\n,Rows without a voice use the one named.,first\n", encoding="utf-8")
    archive, status = fresh().predict(handle_file(str(lines)), "Scripted", "wav", None, 1.0, api_name="/batch")
    assert "is ready" in status
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["first.wav", "manifest.csv"]
    with pytest.raises(AppError, match="no saved voice called 'Nobody'"):
        fresh().predict(handle_file(str(lines)), "Nobody", "wav", None, 1.0, api_name="/batch")
    huge = tmp_path / "huge.csv"
    huge.write_text("voice,text\n,\"" + "a" * 140_000 + "\"\n", encoding="utf-8")
    with pytest.raises(AppError, match="row 2: a field is longer than 131,072 characters"):
        fresh().predict(handle_file(str(huge)), "Scripted", "wav", None, 1.0, api_name="/batch")

    clone(fresh(), None, text="A result for the history.", voice="Scripted")
    rows, _ = fresh().predict(api_name="/history")
    number = rows["data"][0][0]
    check_wav(fresh().predict(number, api_name="/history_file"))
    check_wav(fresh().predict(f"#{number}", api_name="/history_file"))
    with pytest.raises(AppError, match="picked by its number"):
        fresh().predict("latest", api_name="/history_file")
    verdict, _score = fresh().predict(handle_file(str(audio["voice"])), api_name="/detect")  # a recording: no mark
    assert "watermark" in verdict.lower()
    figure, table = fresh().predict(api_name="/voice_map")
    assert any("Scripted" in str(row) for row in table["data"])
    fresh().predict(api_name="/clear_results")
    fresh().predict("Scripted", api_name="/delete_voice")
    assert "Scripted" not in fresh().predict(api_name="/voices")
