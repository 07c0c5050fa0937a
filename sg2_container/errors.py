"""Errors that are the user's to fix (bad input, bad files), as opposed to bugs.

Entry points turn a UserError into a short message and a non-zero exit; anything else keeps
its traceback.
"""


def kind_of(value: object) -> str:
    """A value's type with its article, for messages: "an int", "a list"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def shortened(text: str, limit: int = 60) -> str:
    """User input as a message echoes it, cut at `limit` characters with its full length: a
    seed text, a number or a request line may hold megabytes."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and what is allowed."""


class Stopped(Exception):
    """Work stopped on request (a signal) before it finished; the message says what was kept.

    Not a failure of the user's or ours: jobs exit with their 'stopped' code.
    """


# Third-party packages imported only by the commands that need them, by import name: "[extra]"
# for those a pip extra installs (setup.py's extras_require), else the requirement of every
# install (setup.py's install_requires; missing only from a broken install). One table, so that
# each message names the real extra.
LAZY_PACKAGES: dict[str, str] = {
    "starlette": "[serve]", "uvicorn": "[serve]",  # sg2 serve, sg2-sagemaker serve
    "sagemaker": "[pipeline]", "boto3": "[pipeline]", "botocore": "[pipeline]",  # sg2 pipeline
    "imageio": "imageio", "imageio_ffmpeg": "imageio-ffmpeg",  # MP4s of interpolate, project
    "lpips": "lpips==0.1.4", "torch_fidelity": "torch-fidelity==0.4.0", "tqdm": "tqdm",
}


def install_hint(package: str) -> str:
    """How to install a package of LAZY_PACKAGES: the extra holding it, or itself."""
    requirement = LAZY_PACKAGES[package]
    if requirement.startswith("["):
        return f"pip install 'sg2-container{requirement}'"
    return (f"pip install '{requirement}' (a dependency of every sg2-container install: this "
            "one is incomplete)")


def missing_package(error: BaseException, needed_by: str) -> UserError | None:
    """The UserError for an ImportError of a package of LAZY_PACKAGES (or a library's own
    ImportError raised from one): which package, what needed it, how to install it. None for
    any other error: a bug."""
    seen: BaseException | None = error
    while isinstance(seen, ImportError):
        name = (seen.name or "") if isinstance(seen, ModuleNotFoundError) else ""
        package = name.partition(".")[0]
        if package in LAZY_PACKAGES:
            state = "is not installed" if name == package else f"cannot be imported ({seen})"
            return UserError(f"{needed_by} needs {package}, which {state}: "
                             f"{install_hint(package)}")
        seen = seen.__cause__ or seen.__context__
    return None
