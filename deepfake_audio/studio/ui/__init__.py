"""The studio's web page (Gradio 6), one module a part; `app.py` only parses settings and serves it.

- `blocks.build_ui`: the Blocks, assembled from the tabs;
- one module per tab (`clone_tab`, `voices_tab`, `train_tab`, `batch_tab`, `history_tab`,
  `check_tab`, `models_tab`): each lays out its components and wires its own events;
- `handlers.Handlers`: what every event does; its public methods are the Gradio API
  (/clone, /save_voice, /voices, ...), their parameters in the API's order (the Train a
  voice tab's are `train_handlers.TrainHandlers`: /train_add_take, /train_start, ...);
- `errors`: a failed request in words the user can act on, without server paths;
- `page`: the HTML head (PWA tags, Ctrl/Cmd+Enter) and CSS; `live`: the live player's chunks;
- `server.create_app`: FastAPI with the PWA shell, the /v1 speech API and the studio mounted.
"""
from deepfake_audio.studio.ui.blocks import build_ui
from deepfake_audio.studio.ui.server import create_app

__all__ = ["build_ui", "create_app"]
