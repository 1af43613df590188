"""Train a voice in the studio: takes checked and kept as they come, imports, and the job queue that
tunes a voice beside the studio (runs, queues, cancels, resumes after a restart), owner by owner.

Takes are real speech: prompts read by flite (one speaker) and espeak-ng (another); the jobs
run the real fine-tuning command on the shipped starter synthesizer, capped at a few steps.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio_core.errors import AudioError, RequestError
from deepfake_audio_core.tuned import load_tuned_voice
from deepfake_audio.download import STARTER_MODELS_DIR
from deepfake_audio.studio import Studio, owners, takes as takes_module, tuning_jobs
from deepfake_audio.studio.library import VoiceError
from deepfake_audio.training.prompts import load_prompts
from training_corpus import tools_missing

A, B = owners.owner_id("a" * 24 + "-trainer"), owners.owner_id("b" * 24 + "-someone-else")
JOB_TIMEOUT = 240  # seconds; a 2-step job takes about 15 s on two busy cores

pytestmark = pytest.mark.skipif(bool(tools_missing()), reason="needs flite, espeak-ng and sox: scripts/setup.sh --dev")


def speak(path: Path, text: str, voice: str = "slt") -> Path:
    """`text` spoken by flite (`voice`) or espeak-ng ("espeak"), 16-bit 16 kHz mono at a 0.5 peak."""
    raw = path.with_suffix(".raw.wav")
    command = (["espeak-ng", "-v", "en-us+m3", "-w", str(raw), text] if voice == "espeak"
               else ["flite", "-voice", voice, "-t", text, "-o", str(raw)])
    subprocess.run(command, check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path), "norm", "-6"], check=True,
                   capture_output=True)
    raw.unlink()
    return path


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("takes-audio")
    prompts = load_prompts()
    out: dict = {k: speak(folder / f"take{k}.wav", prompts[k]) for k in range(6)}
    out["other"] = speak(folder / "other.wav", prompts[5], "espeak")
    sf.write(str(folder / "silent.wav"), np.zeros(32000), 16000, subtype="PCM_16")
    out["silent"] = folder / "silent.wav"
    wav, rate = sf.read(str(out[0]))
    sf.write(str(folder / "long.wav"), np.tile(wav, 12)[:int(40 * rate)], rate, subtype="PCM_16")
    out["too long"] = folder / "long.wav"
    return out


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    studio = Studio(STARTER_MODELS_DIR, tmp_path_factory.mktemp("training-data"), private=True)
    yield studio
    studio.training.jobs.close()


def record(studio: Studio, audio: dict, name: str, owner: str, prompts=range(5)) -> None:
    for k in prompts:
        studio.training.add_take(name, audio[k], k, owner=owner)


def wait_for(studio: Studio, job_id: str, owner: str, until, timeout: float = JOB_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = studio.training_status(job_id, owner)
        if until(status):
            return status
        time.sleep(0.5)
    log = studio.data_dir / job_record(studio, job_id)["folder"] / "log.txt"
    raise AssertionError(f"job {job_id} stayed {status['state']}: {status}\n{log.read_text()[-2000:]}")


def job_record(studio: Studio, job_id: str) -> dict:
    """The queue file's record of a job (its process id, folder)."""
    return next(j for j in json.loads((studio.data_dir / "tuning" / "jobs.json").read_text()) if j["id"] == job_id)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def test_takes_are_checked_redone_skipped_and_kept(studio, audio, monkeypatch):
    training = studio.training
    first = training.add_take("Checks", audio[0], 0, owner=A)
    assert first.used and not first.flagged and first.prompt == 0 and first.note.startswith("Good take")
    silent = training.add_take("Checks", audio["silent"], 1, owner=A)
    assert silent.problems[0] == "silent" and not silent.used and "No speech" in silent.note
    assert training.keep_take("Checks", 1, owner=A).used  # kept anyway
    redone = training.add_take("Checks", audio[1], 1, owner=A)  # a second take of a prompt replaces the first
    assert redone.number == silent.number and redone.used and not redone.kept and not redone.problems
    training.add_take("Checks", audio[2], 2, owner=A)
    training.redo_take("Checks", 2, owner=A)
    training.skip_prompt("Checks", 3, owner=A)
    takes, progress = training.takes("Checks", A)
    assert [t.prompt for t in takes] == [0, 1] and progress.next_prompt == 2 and progress.used == 2
    training.add_take("Checks", audio[2], 2, owner=A)
    assert training.takes("Checks", A)[1].next_prompt == 4  # 3 was skipped

    training.add_take("Checks", audio[4], 4, owner=A)
    odd = training.add_take("Checks", audio["other"], 5, owner=A)  # another speaker among four takes of one
    takes, progress = training.takes("Checks", A)
    outliers = [t.prompt for t in takes if t.outlier]
    assert outliers == [5] and not odd.problems and progress.used == 4 and progress.left_out == 1
    assert abs(progress.seconds - sum(t.seconds for t in takes if t.used)) < 0.01 and 0.1 < progress.minutes < 1

    # kept in the library as they come: a fresh studio on the same folder sees them; another owner does not
    again = Studio(STARTER_MODELS_DIR, studio.data_dir, private=True, pipeline=studio.pipeline)
    assert [t.number for t in again.training.takes("Checks", A)[0]] == [t.number for t in takes]
    assert training.takes("Checks", B)[0] == []
    with pytest.raises(AudioError, match="at most 30 s"):
        training.add_take("Checks", audio["too long"], 6, owner=A)
    monkeypatch.setattr(takes_module, "MAX_TAKES", 5)
    with pytest.raises(VoiceError, match="already has 5 takes"):
        training.add_take("Checks", audio[0], 7, owner=A)
    with pytest.raises(RequestError, match="no prompt 9999"):
        training.add_take("Checks", audio[0], 9999, owner=A)
    assert training.keep_take_number("Checks", odd.number, A).used  # kept anyway, from the takes table
    assert training.remove_take("Checks", odd.number, A).prompt == 5
    assert training.takes("Checks", A)[1].next_prompt == 5  # its prompt is offered again


def test_takes_from_a_zip_and_from_one_long_recording(studio, audio, tmp_path):
    prompts = load_prompts()
    archive = tmp_path / "takes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for k in range(3):
            z.write(audio[k], f"session/take{k}.wav")
            z.writestr(f"session/take{k}.txt", prompts[k] + "\n")
        z.write(audio[3], "session/no_transcript.wav")
    taken, skipped = studio.training.import_zip("Imported", archive, A)
    assert sorted(t.text for t in taken) == sorted(prompts[:3]) and all(t.source == "zip" for t in taken)
    assert len(skipped) == 1 and "no_transcript" in skipped[0]
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(AudioError, match="not a ZIP"):
        studio.training.import_zip("Imported", tmp_path / "not.zip", A)

    pause = np.zeros(16000)
    pieces = [sf.read(str(audio[k]))[0] for k in range(3, 6)]
    long = tmp_path / "reading.wav"
    sf.write(str(long), np.concatenate([np.concatenate([p, pause]) for p in pieces]), 16000, subtype="PCM_16")
    taken, skipped = studio.training.import_long("Imported", long, " ".join(prompts[3:6]), A)
    assert [t.text for t in taken] == prompts[3:6]  # cut at the pauses, each with its own sentence
    assert skipped == [] and all(t.source == "long recording" and t.used for t in taken)
    with pytest.raises(RequestError, match="transcript"):
        studio.training.import_long("Imported", long, "  ", A)
    assert studio.training.takes("Imported", A)[1].used == 3 + len(taken)
    studio.training.discard_takes("Imported", A)
    assert studio.training.takes("Imported", A)[0] == [] and not studio.training.take_set("Imported", A).folder.exists()


@pytest.fixture(scope="module")
def trained(studio, audio) -> dict:
    """Alice, trained for 2 steps on five takes by owner A: the finished job's status."""
    record(studio, audio, "Alice", A)
    with pytest.raises(RequestError, match="speaker's permission"):
        studio.start_training("Alice", False, 10, A)
    job = studio.training.start("Alice", True, 1, A, steps=2)
    assert job["state"] == "queued" and job["takes"] == 5
    return wait_for(studio, job["id"], A, lambda s: s["state"] not in ("queued", "running"))


def test_a_job_tunes_a_voice_that_clones(studio, trained):
    assert trained["state"] == "done", trained
    assert trained["voice"] == "Alice" and trained["step"] == 2 and trained["losses"] and trained["samples"] >= 2
    steps = [step for step, _ in trained["similarities"]]  # a sample before training, then after each piece
    assert steps[0] == 0 and steps[-1] == 2 and all(-1 <= v <= 1 for _, v in trained["similarities"] if v is not None)
    assert trained["kept_step"] in steps[1:]  # the voice is a trained piece, the one that validated best
    assert trained["timbre_only"] is False  # English takes: the whole speaker's share trains
    saved = studio.library(A).voices.get("Alice")
    assert load_tuned_voice(saved.tuned).training["steps"] == trained["kept_step"]
    assert saved.tuned is not None and saved.consent is not None and abs(saved.consent - time.time()) < 600
    out = studio.clone(None, "Alice", "My own voice, tuned in the studio.", 1, "griffinlim", owner=A)
    assert out.voice == "Alice" and out.result.duration > 0.3 and np.all(np.isfinite(out.result.wav))
    assert "Train a voice" not in out.reading  # a tuned voice is not told to tune a voice, whatever its score
    served = studio.training.sample_for_page(trained)
    assert served.parent.parent == studio.output_dir and sf.info(str(served)).duration > 0.3
    folder = studio.data_dir / job_record(studio, trained["id"])["folder"]
    assert not (folder / "work" / "run").exists() and not (folder / "work" / "data").exists()  # the big files went
    assert not list(folder.rglob("*.tuned.pt"))  # no copy of the voice's model outlives the library's
    assert (folder / "work" / "progress.json").is_file() and list((folder / "work" / "samples").glob("*.wav"))


def test_another_owner_cannot_see_use_cancel_or_delete_it(studio, trained):
    assert studio.training.latest(B) is None and studio.training.jobs.jobs(
        studio.training.take_set("x", B).library_folder) == []
    with pytest.raises(VoiceError, match="no training job"):
        studio.training_status(trained["id"], B)
    with pytest.raises(VoiceError, match="no training job"):
        studio.cancel_training(trained["id"], B)
    assert "Alice" not in studio.voice_names(B)
    with pytest.raises(VoiceError, match="no saved voice called 'Alice'"):
        studio.clone(None, "Alice", "Hello.", 1, "griffinlim", owner=B)
    with pytest.raises(VoiceError, match="no saved voice called 'Alice'"):
        studio.delete_voice("Alice", owner=B)
    assert studio.library(A).voices.get("Alice").tuned is not None


def test_one_job_runs_the_next_waits_and_both_cancel(studio, audio, trained):
    running = studio.training.start("Alice", True, 10, A, steps=10_000)  # trains Alice again: her voice is updated
    record(studio, audio, "Bob", B, prompts=range(3))
    waiting = studio.training.start("Bob", True, 10, B)
    assert waiting["state"] == "queued" and waiting["place"] == 1 and waiting["wait_s"] >= 600
    with pytest.raises(RequestError, match="already being trained"):
        studio.training.start("Alice", True, 10, A)
    first = wait_for(studio, running["id"], A, lambda s: s["state"] == "running")
    assert first["place"] == 0
    pid = job_record(studio, running["id"])["pid"]
    deadline = time.monotonic() + 30  # the job lowers its own priority as it starts
    while alive(pid) and os.getpriority(os.PRIO_PROCESS, pid) != 19 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(pid) and os.getpriority(os.PRIO_PROCESS, pid) == 19  # the lowest CPU priority
    with pytest.raises(VoiceError, match="no training job"):
        studio.cancel_training(running["id"], B)
    assert studio.cancel_training(running["id"], A)["state"] == "cancelled"
    assert not alive(pid)
    second = wait_for(studio, waiting["id"], B, lambda s: s["state"] == "running")
    assert second["place"] == 0
    assert studio.cancel_training(waiting["id"], B)["state"] == "cancelled"
    assert studio.training_status(running["id"], A)["state"] == "cancelled"
    assert studio.library(A).voices.get("Alice").tuned is not None  # the trained voice stays as it was


def test_a_restarted_studio_resumes_the_running_job(studio, trained):
    tuned_before = studio.library(A).voices.get("Alice").tuned.stat().st_mtime_ns
    job = studio.training.start("Alice", True, 5, A, steps=12)
    wait_for(studio, job["id"], A, lambda s: s["phase"] == "training")
    record_before = job_record(studio, job["id"])
    studio.training.jobs.close(stop_job=False)  # the studio stops: its job's process goes with it
    deadline = time.monotonic() + 10
    while alive(record_before["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(record_before["pid"]) and studio.training_status(job["id"], A)["state"] == "running"

    restarted = Studio(STARTER_MODELS_DIR, studio.data_dir, private=True, pipeline=studio.pipeline)
    try:
        assert restarted.training.jobs.resume()
        done = wait_for(restarted, job["id"], A, lambda s: s["state"] not in ("queued", "running"))
    finally:
        restarted.training.jobs.close()
    assert done["state"] == "done" and done["step"] == 12 and done["started"] == record_before["started"], done
    assert restarted.library(A).voices.names() == ["Alice"]  # updated, not duplicated
    assert restarted.library(A).voices.get("Alice").tuned.stat().st_mtime_ns > tuned_before


def test_a_hung_job_is_stopped_and_fails_with_a_reason(tmp_path, monkeypatch):
    """A job whose process stops making progress, or runs far past its budget, is stopped; the queue goes on."""
    monkeypatch.setattr(tuning_jobs.TuningJobs, "command",  # a process that hangs, silent
                        lambda self, job: [sys.executable, "-m", "timeit", "-n", "1", "import time; time.sleep(300)"])
    jobs = tuning_jobs.TuningJobs(tmp_path, None, lambda job, tuned: job.name, poll_seconds=0.1)
    library = tmp_path / "owners" / "someone"
    try:
        for name, setting in (("Stalled", "STALL_SECONDS"), ("Overrun", "OVERRUN_SECONDS")):
            monkeypatch.setattr(tuning_jobs, setting, 2.0)
            folder = jobs.new_folder(library)
            (folder / "takes").mkdir()
            job = jobs.submit(library, name, folder / "takes", minutes=0.001, consent=time.time(), takes=1,
                              recorded_s=1.0, preview="")
            deadline, pid = time.monotonic() + 60, None
            while jobs.status(library, job["id"])["state"] in ("queued", "running") and time.monotonic() < deadline:
                rows = json.loads((tmp_path / "tuning" / "jobs.json").read_text())
                pid = next(j for j in rows if j["id"] == job["id"])["pid"] or pid  # seen while it ran
                time.sleep(0.1)
            status = jobs.status(library, job["id"])
            assert status["state"] == "failed" and ("stopped making progress" if name == "Stalled" else
                                                    "past its 0.001-minute budget") in status["error"], status
            assert pid and not alive(pid)
            monkeypatch.setattr(tuning_jobs, setting, 3600.0)
    finally:
        jobs.close()


def test_every_train_endpoint_from_a_script(audio, tmp_path, tmp_path_factory, monkeypatch):
    """The README's /train_* endpoints, called by gradio_client as a script would: takes in, kept, redone,
    skipped, imported, removed; a job started, followed to its saved voice; another cancelled; takes discarded."""
    from gradio_client import Client, handle_file
    from test_studio_api import start_studio
    monkeypatch.setenv("DEEPFAKE_AUDIO_TUNE_STEPS", "2")
    prompts = load_prompts()
    studio, server = start_studio(STARTER_MODELS_DIR, tmp_path_factory.mktemp("train-api-data"))
    with server:
        client = Client(server.url, verbose=False)
        prompt, number, progress, _ = client.predict("Scripted", api_name="/train_takes")
        assert number == 0 and prompts[0] in prompt and "0 takes" in progress
        for k in range(3):
            note, *_ = client.predict("Scripted", handle_file(str(audio[k])), k, api_name="/train_add_take")
        client.predict("Scripted", 0, api_name="/train_keep")
        client.predict("Scripted", 2, api_name="/train_redo")
        client.predict("Scripted", handle_file(str(audio[2])), 2, api_name="/train_add_take")
        client.predict("Scripted", 3, api_name="/train_skip")
        archive = tmp_path / "more.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.write(audio[4], "take4.wav")
            z.writestr("take4.txt", prompts[4] + "\n")
        imported, *_ = client.predict("Scripted", handle_file(str(archive)), None, "", api_name="/train_import")
        assert "1" in imported
        takes, _ = studio.training.takes("Scripted", None)
        assert len(takes) == 4 and [t.prompt for t in takes[:3]] == [0, 1, 2]
        client.predict("Scripted", takes[-1].number, api_name="/train_keep_take")
        client.predict("Scripted", takes[-1].number, api_name="/train_remove_take")
        assert len(studio.training.takes("Scripted", None)[0]) == 3

        text, job = client.predict("Scripted", True, 10, api_name="/train_start")
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            text, losses, sample, details = client.predict(job, api_name="/train_status")
            if details["state"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert details["state"] == "done", (text, details)
        assert sample and Path(sample).is_file()
        assert "Scripted" in client.predict(api_name="/voices")
        assert studio.libraries.of(None).voices.get("Scripted").tuned is not None

        for k in range(3):
            client.predict("Other", handle_file(str(audio[k])), k, api_name="/train_add_take")
        monkeypatch.setenv("DEEPFAKE_AUDIO_TUNE_STEPS", "100000")
        _, other = client.predict("Other", True, 10, api_name="/train_start")
        cancelled = client.predict(other, api_name="/train_cancel")
        assert "ancel" in cancelled
        client.predict("Other", api_name="/train_discard")
        assert studio.training.takes("Other", None)[0] == []
    studio.training.jobs.close()


def test_the_training_status_says_how_near_the_samples_sound():
    from deepfake_audio.studio.ui.train_handlers import status_text
    running = {"name": "Alice", "state": "running", "phase": "training", "step": 40, "left_s": 300.0,
               "budget_s": 600.0, "samples": 2, "similarities": [[0, 0.71], [40, 0.84]]}
    text = status_text(running)
    assert "2 samples so far" in text and "The latest is 0.84 similar to your takes (before training: 0.71)." in text
    assert "(the first: 0.71)" in status_text({**running, "similarities": [[20, 0.71], [40, 0.84]]})  # a resumed job
    assert "similar" not in status_text({**running, "similarities": [[0, None], [40, None]]})  # silent: no number
    alone = status_text({**running, "samples": 1, "similarities": [[0, 0.8]]})
    assert "Before training it is 0.80 similar to your takes." in alone


def test_the_done_status_says_which_piece_the_voice_is():
    from deepfake_audio.studio.ui.train_handlers import status_text
    done = {"name": "Alice", "voice": "Alice", "state": "done", "takes": 30, "step": 400, "kept_step": 400}
    assert "tuned on 30 takes (400 steps)" in status_text(done)
    drifted = status_text({**done, "kept_step": 180})
    assert "(step 180 of 400, the piece nearest your held-back takes)" in drifted
    assert "English" not in drifted and "English" not in status_text({**done, "timbre_only": False})
    russian = status_text({**done, "timbre_only": True})  # takes whose letters are not English ones
    assert "Only the voice's colour was trained (your takes are not in English)" in russian
    training = status_text({"name": "Olga", "state": "running", "phase": "training", "step": 40, "left_s": 60,
                            "budget_s": 180, "samples": 0, "timbre_only": True})
    assert "Your takes are not in English, so only the voice's colour trains" in training
    # the last part of the budget tunes the starter vocoder; the voice says whether it kept it
    vocoder = status_text({"name": "Alice", "state": "running", "phase": "vocoder", "step": 400, "left_s": 120,
                           "budget_s": 600, "samples": 5})
    assert "**Tuning the vocoder** to *Alice*'s takes: 2 min 00 s left of 10 min 00 s" in vocoder
    assert "kept only if it brings the clones nearer your takes" in vocoder
    assert "It speaks with its own vocoder" in status_text({**done, "vocoder": "kept"})
    assert "own vocoder" not in status_text({**done, "vocoder": "not kept"})


def test_the_recording_advice_follows_what_was_measured():
    """Three takes (about 10 s) already bring most of the likeness (bench/RESULTS.md, "Ten seconds of
    takes"); about 5 minutes also make the words clearer; and the page offers a 3-minute training."""
    from deepfake_audio.studio.takes import TakeProgress
    from deepfake_audio.studio.ui.train_handlers import BUDGET_CHOICES, NO_JOB, progress_text
    assert "at least 3 takes" in NO_JOB and "10 seconds" in NO_JOB
    assert "Record at least 3 takes" in progress_text(TakeProgress(2, 7.0, 0, 2, 2))
    assert "Enough to bring the voice closer" in progress_text(TakeProgress(3, 10.0, 0, 3, 3))
    assert "plenty" in progress_text(TakeProgress(70, 320.0, 0, 70, 70))
    assert [minutes for _, minutes in BUDGET_CHOICES][:2] == [3, 10] and tuning_jobs.BUDGETS[0] == 3


def test_takes_in_another_language_reach_the_command(studio, audio, monkeypatch):
    """The Train tab's "another language" box becomes the job's `--takes-language other`; unticked,
    the command decides by the transcripts' letters (`auto`, its default)."""
    from dataclasses import replace
    from deepfake_audio.training import finetune
    record(studio, audio, "Olga", B, prompts=range(3))
    seen = {}
    monkeypatch.setattr(studio.training.jobs, "submit", lambda *a, **k: seen.update(k) or {"id": "x"})
    studio.start_training("Olga", True, 10, B, other_language=True)
    assert seen["takes_language"] == "other"
    studio.start_training("Olga", True, 10, B)
    assert seen["takes_language"] == "auto"
    job = tuning_jobs.TuningJob("j1", "lib", "Olga", 10, 1.0, 1.0, "jobs/j1", takes_language="other")
    command = studio.training.jobs.command(job)
    assert command[command.index("--takes-language") + 1] == "other"
    assert finetune.build_parser().parse_args(command[3:]).takes_language == "other"  # the CLI takes it
    assert "--takes-language" not in studio.training.jobs.command(replace(job, takes_language="auto"))
    studio.training.discard_takes("Olga", B)
