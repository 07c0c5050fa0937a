"""The real-time endpoint: an ASGI app (/ping, /invocations) with a dynamic batcher, served by
uvicorn. HTTP knows nothing of /opt/ml: `sagemaker/serve.py` maps the container onto
ServeOptions, `sg2 serve` does the same for a local file."""
from __future__ import annotations

from sg2_container.errors import UserError

SERVE_EXTRA = "pip install 'sg2-container[serve]'"


def require_packages() -> None:
    """The server's packages are an extra: say which one when they are missing."""
    missing = []
    for name in ("starlette", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"serving needs {' and '.join(missing)}, which are not installed: "
                        f"{SERVE_EXTRA}")
