"""The studio stays in small pieces: app.py only starts the server, and no studio function is long.

A function's length is counted from its `def` line to the last line of its body
(decorators not included), for every function and method, nested ones too, of every
module under deepfake_audio/studio/ (the web page in studio/ui included).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDIO = ROOT / "deepfake_audio" / "studio"
MAX_APP_LINES = 200
MAX_FUNCTION_LINES = 80


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'file:line name (n lines)' for each function in the file longer than `limit` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_app_only_parses_settings_and_starts_the_server():
    lines = len((ROOT / "app.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_APP_LINES, f"app.py has {lines} lines; the page belongs in deepfake_audio/studio/ui"


def test_no_studio_function_is_over_80_lines():
    modules = sorted(STUDIO.rglob("*.py"))
    assert STUDIO / "ui" / "handlers.py" in modules and STUDIO / "service.py" in modules
    assert [problem for path in modules for problem in long_functions(path)] == []


def test_the_check_counts_from_def_to_the_last_line(tmp_path):
    # A method of 1 def line and 80 body lines is too long (its decorator does not count); 79 are not.
    body = [f"        x{k} = {k}\n" for k in range(80)]
    long_one = tmp_path / "long.py"
    long_one.write_text("class Page:\n    @staticmethod\n    def build():\n" + "".join(body))
    short_one = tmp_path / "short.py"
    short_one.write_text("class Page:\n    @staticmethod\n    def build():\n" + "".join(body[:79]))
    assert long_functions(long_one) == ["long.py:3 build (81 lines)"]
    assert long_functions(short_one) == []


def test_api_clients_need_no_heartbeat(tmp_path):
    """No gr.State (or unload/stream event) on the page: with one, every gradio_client holds a heartbeat
    connection open, and a studio being stopped waits for those clients forever."""
    from gradio import utils
    from deepfake_audio.download import STARTER_MODELS_DIR
    from deepfake_audio.studio import Studio
    from deepfake_audio.studio.ui.blocks import build_ui
    demo = build_ui(Studio(STARTER_MODELS_DIR, tmp_path / "data"))
    config = demo.get_config_file()
    assert utils.connect_heartbeat(config, demo.blocks.values(), demo.fns.values()) is False
