"""Errors that are the user's to fix (bad input, bad files), as opposed to bugs.

Entry points turn a UserError into a short message and a non-zero exit; anything else keeps
its traceback.
"""


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and what is allowed."""


class Stopped(Exception):
    """Work stopped on request (a signal) before it finished; the message says what was kept.

    Not a failure of the user's or ours: jobs exit with their 'stopped' code.
    """
