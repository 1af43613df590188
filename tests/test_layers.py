"""Imports point one way: base (deepfake_audio_core) <- stages <- pipeline <- training, studio, CLI <- studio's web page, app.

Every import of every module (including those inside functions) is read from its
syntax tree, so a lazy import that points upward fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("encoder", "synthesizer", "vocoder")
BASE = "deepfake_audio_core"  # a top-level package beside the stages

# layer -> the layers its modules may import (besides themselves and third-party packages)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "encoder": {"core"},
    "synthesizer": {"core"},
    "vocoder": {"core"},
    "pipeline": {"core", *STAGES},
    "training": {"core", *STAGES, "pipeline"},
    "studio": {"core", "pipeline"},  # the studio asks the pipeline; it never calls a stage itself
    "cli": {"core", "pipeline"},
    "http": {"core", "pipeline", "studio"},  # the OpenAI-compatible API uses the studio's voice libraries
    "ui": {"core", "pipeline", "studio", "http"},  # the studio's web page (studio.ui) serves the /v1 API beside it
    "app": {"core", "pipeline", "studio", "http", "ui"},
}


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
        return "pipeline"  # the package itself: the public API (Pipeline, errors)
    if parts[1:3] == ["studio", "ui"]:
        return "ui"
    return {"training": "training", "studio": "studio", "cli": "cli",
            "__main__": "cli", "http_api": "http"}.get(parts[1], "pipeline")


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
            found.append((node.lineno, target))
            # `from deepfake_audio import studio` imports the submodule itself
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if layer_of(f"{target}.{alias.name}") not in (None, layer_of(target))]
    return found


def upward_imports(modules: dict[str, Path]) -> list[str]:
    problems = []
    for module, path in modules.items():
        own = layer_of(module)
        for line, target in imports_of(module, path):
            theirs = layer_of(target)
            if theirs is None or theirs == own:
                continue
            if theirs not in ALLOWED[own]:
                problems.append(f"{path.name}:{line} ({own}) imports {target} ({theirs})")
    return problems


def test_every_import_points_down_the_layers():
    assert upward_imports(project_modules()) == []


def test_every_module_has_a_layer():
    modules = project_modules()
    assert {layer_of(m) for m in modules} == set(ALLOWED)
    assert "deepfake_audio_core.checkpoint" in modules and "deepfake_audio.training.loop" in modules


@pytest.mark.parametrize("source, target", [
    ("synthesizer/inference.py", "vocoder.inference"),  # a stage importing another stage
    ("vocoder/model.py", "deepfake_audio.training.loop"),  # a stage importing training
    ("deepfake_audio_core/checkpoint.py", "deepfake_audio.download"),  # the base importing the pipeline layer
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
    # run deepfake_audio/__init__.py, which imports the pipeline and so every stage.
    import subprocess
    import sys
    code = ("import sys, deepfake_audio_core.errors, encoder.inference, synthesizer.inference, vocoder.inference\n"
            "assert 'deepfake_audio' not in sys.modules, 'a stage or the base loaded deepfake_audio'\n"
            "import deepfake_audio\n"
            "assert 'Pipeline' in vars(deepfake_audio) and deepfake_audio.Pipeline.__module__ == 'deepfake_audio.pipeline'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
