"""The demo app: a Gradio page (and its API) that serves a model to people.

``service.py`` answers the questions (no page), ``inputs.py`` checks what people give it, ``ui.py`` is the
page and its endpoints, ``launch.py`` serves it, ``assets.py`` builds what it serves when given nothing
(the demo model, an index of the demo corpus's test split).
The command line is ``cli/app.py`` (``supclap-app``); the top-level ``app.py`` is what a Space runs.
"""

from .assets import ensure_demo_index, ensure_demo_model
from .inputs import UserFacingError
from .launch import serve
from .service import DemoService
from .ui import build_page

__all__ = ["DemoService", "UserFacingError", "build_page", "ensure_demo_index", "ensure_demo_model", "serve"]
