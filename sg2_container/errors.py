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
