"""The real-time endpoint: an ASGI app (/ping, /invocations) with a dynamic batcher, served by
uvicorn. HTTP knows nothing of /opt/ml: `sagemaker/serve.py` maps the container onto
ServeOptions, `sg2 serve` does the same for a local file."""
from __future__ import annotations

from sg2_container.errors import UserError, install_hint


def require_packages() -> None:
    """The server's packages are an extra: say which one when they are missing."""
    missing = []
    for name in ("starlette", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"serving needs {' and '.join(missing)}, which "
                        f"{'is' if len(missing) == 1 else 'are'} not installed: "
                        f"{install_hint(missing[0])}")
