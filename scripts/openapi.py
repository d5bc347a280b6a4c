"""Write the server's OpenAPI document to docs/openapi.json (committed; a test keeps it true).

.venv/bin/python scripts/openapi.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from deployer.server.app import create_app
from deployer.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as home:
        app = create_app(Settings(home=Path(home), cache=Path(home) / "cache"))
        text = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
    (ROOT / "docs" / "openapi.json").write_text(text)
    print(f"wrote docs/openapi.json ({len(text)} bytes)")
