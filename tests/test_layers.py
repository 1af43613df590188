"""Imports point one way: base (deepfake_audio_core) <- stages <- services <- pipeline <- runners
<- training <- studio, CLI <- the speech API <- the studio's web page <- app.

Every import of every module (including those inside functions) is read from its
syntax tree, so a lazy import that points upward fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("encoder", "synthesizer", "vocoder")
BASE = "deepfake_audio_core"  # a top-level package, so importing it runs no deepfake_audio/__init__.py
ABOVE_RUNNERS = {"core", "services", "pipeline", "runners"}

# layer -> the layers its modules may import (besides themselves and third-party packages)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "encoder": {"core"},
    "synthesizer": {"core"},
    "vocoder": {"core"},
    "services": {"core", "encoder"},  # download finds the encoder weights bundled with resemblyzer
    "pipeline": {"core", *STAGES, "services"},
    "runners": {"core", "services", "pipeline"},  # streaming and batch go through the pipeline
    "training": {*STAGES, *ABOVE_RUNNERS},
    # The studio asks the pipeline; it never calls a stage itself. Its "Train a voice" checks takes and
    # follows a tuning job with the training package's functions (the job runs in its own process).
    "studio": {*ABOVE_RUNNERS, "training"},
    "cli": ABOVE_RUNNERS,
    "http": {*ABOVE_RUNNERS, "studio"},  # the OpenAI-compatible API uses the studio's voice libraries
    "ui": {*ABOVE_RUNNERS, "training", "studio", "http"},  # the web page (studio.ui) serves the /v1 API beside it
    "app": {*ABOVE_RUNNERS, "training", "studio", "http", "ui"},
}

# Imports that break the layers on purpose: module -> exactly the modules it may import besides ALLOWED.
# None now: streaming gets its rolling parts from the pipeline (`Pipeline.rolling_parts`).
EXCEPTIONS: dict[str, set[str]] = {}

# deepfake_audio's modules and subpackages -> their layer. A module missing here has no layer
# (UNASSIGNED) and fails test_every_module_has_a_layer until it is given one.
PACKAGE_LAYERS: dict[str, str] = {
    "": "pipeline",  # the package itself: the public API (Pipeline, errors)
    "pipeline": "pipeline", "assembly": "pipeline",
    "download": "services", "watermark": "services", "script": "services", "perth_compat": "services",
    "streaming": "runners", "batch": "runners",
    "training": "training",
    "studio": "studio",
    "studio.ui": "ui",
    "cli": "cli", "__main__": "cli",
    "http_api": "http",
}
UNASSIGNED = "unassigned"


def is_module(name: str) -> bool:
    """Whether a dotted name is a module or package of this project (rather than a name one defines)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of this project, None for anything else."""
    parts = module.split(".")
    if parts[0] in STAGES:
        return parts[0]
    if parts[0] == BASE:
        return "core"
    if parts[0] == "app":
        return "app"
    if parts[0] != "deepfake_audio":
        return None
    if len(parts) == 1:
        return PACKAGE_LAYERS[""]
    for n in range(len(parts) - 1, 0, -1):  # the longest listed prefix: studio.ui before studio
        if ".".join(parts[1:n + 1]) in PACKAGE_LAYERS:
            return PACKAGE_LAYERS[".".join(parts[1:n + 1])]
    if is_module(".".join(parts[:2])):
        return UNASSIGNED
    return PACKAGE_LAYERS[""]  # a name the package itself defines: deepfake_audio.Pipeline


def project_modules() -> dict[str, Path]:
    files = [ROOT / "app.py"]
    for package in ("deepfake_audio", BASE, *STAGES):
        files += sorted((ROOT / package).rglob("*.py"))
    modules = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from deepfake_audio import studio` imports the submodule itself, and the package
            # first: that counts too, unless the importing module is inside the package (and so
            # loaded it already)
            subs = [f"{target}.{alias.name}" for alias in node.names if is_module(f"{target}.{alias.name}")]
            found += [(node.lineno, sub) for sub in subs]
            if len(subs) < len(node.names) or not module.startswith(f"{target}."):
                found.append((node.lineno, target))
    return found


def upward_imports(modules: dict[str, Path]) -> list[str]:
    problems = []
    for module, path in modules.items():
        own = layer_of(module)
        for line, target in imports_of(module, path):
            theirs = layer_of(target)
            if theirs is None or theirs == own or target in EXCEPTIONS.get(module, ()):
                continue
            if theirs not in ALLOWED.get(own, ()):
                problems.append(f"{path.name}:{line} ({own}) imports {target} ({theirs})")
    return problems


def test_every_import_points_down_the_layers():
    assert upward_imports(project_modules()) == []


def test_every_module_has_a_layer():
    modules = project_modules()
    assert [m for m in modules if layer_of(m) == UNASSIGNED] == []
    assert {layer_of(m) for m in modules} == set(ALLOWED)
    assert {f"deepfake_audio.{name}".rstrip(".") for name in PACKAGE_LAYERS} <= set(modules)  # none is gone
    assert f"{BASE}.checkpoint" in modules and "deepfake_audio.training.loop" in modules
    assert layer_of("deepfake_audio.studio.ui.server") == "ui" and layer_of("deepfake_audio.Pipeline") == "pipeline"


def test_a_module_left_out_of_the_list_has_no_layer(tmp_path, monkeypatch):
    (tmp_path / "deepfake_audio").mkdir()
    (tmp_path / "deepfake_audio" / "newcomer.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert layer_of("deepfake_audio.newcomer") == UNASSIGNED


def test_every_exception_is_still_needed():
    # An exception a module no longer uses comes out of EXCEPTIONS, so the layer holds for it again.
    modules = project_modules()
    for module, allowed in EXCEPTIONS.items():
        used = {target for _, target in imports_of(module, modules[module])}
        assert allowed <= used, f"{module} no longer imports {sorted(allowed - used)}: remove them from EXCEPTIONS"


@pytest.mark.parametrize("source, target", [
    ("synthesizer/inference.py", "vocoder.inference"),  # a stage importing another stage
    ("vocoder/model.py", "deepfake_audio.training.loop"),  # a stage importing training
    ("deepfake_audio_core/checkpoint.py", "deepfake_audio.download"),  # the base importing a service
    ("deepfake_audio_core/errors.py", "deepfake_audio"),  # the base importing the package (the old cycle)
    ("deepfake_audio/download.py", "deepfake_audio.pipeline"),  # a service importing the pipeline
    ("deepfake_audio/watermark.py", "deepfake_audio.streaming"),  # a service importing a runner
    ("deepfake_audio/script.py", "synthesizer.text"),  # a service importing a stage
    ("deepfake_audio/pipeline.py", "deepfake_audio.streaming"),  # the pipeline importing a runner
    ("deepfake_audio/pipeline.py", "deepfake_audio.batch"),
    ("deepfake_audio/batch.py", "vocoder.inference"),  # a runner calling a stage itself
    ("deepfake_audio/streaming.py", "vocoder.inference"),  # ... beyond streaming's listed exceptions
    ("deepfake_audio/batch.py", "deepfake_audio.cli"),  # a runner importing a front end
    ("deepfake_audio/pipeline.py", "deepfake_audio.studio.library"),  # the pipeline importing a front end
    ("deepfake_audio/training/loop.py", "deepfake_audio.cli"),  # training importing the CLI
    ("deepfake_audio/studio/service.py", "encoder.inference"),  # the studio calling a stage itself
    ("deepfake_audio/studio/clones.py", "deepfake_audio.studio.ui.handlers"),  # the studio importing its page
    ("deepfake_audio/http_api.py", "deepfake_audio.studio.ui.server"),  # the speech API importing the page
])
def test_the_check_catches_an_upward_import(tmp_path, source, target):
    # The same walk over a copy of one module with one bad (lazy) import added must fail.
    bad = tmp_path / Path(source).name
    bad.write_text((ROOT / source).read_text(encoding="utf-8") + f"\n\ndef _late():\n    import {target}\n")
    problems = upward_imports({source[:-3].replace("/", "."): bad})
    assert len(problems) == 1 and problems[0].endswith(f"imports {target} ({layer_of(target)})")


def test_the_base_and_the_stages_load_without_the_package():
    # The cycle the move to a top-level base removed: loading a stage (and so the base) must not
    # run deepfake_audio/__init__.py, whose names lead to the pipeline and so to every stage.
    import subprocess
    import sys
    code = ("import sys, deepfake_audio_core.errors, encoder.inference, synthesizer.inference, vocoder.inference\n"
            "assert 'deepfake_audio' not in sys.modules, 'a stage or the base loaded deepfake_audio'\n"
            "import deepfake_audio\n"
            "assert deepfake_audio.Pipeline.__module__ == 'deepfake_audio.pipeline'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
