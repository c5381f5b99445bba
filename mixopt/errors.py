"""The one error type for bad user input.

Library code raises :class:`MixoptError` (a ``ValueError``) with a message that names what is
wrong and how to fix it; the CLI turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations


class MixoptError(ValueError):
    """Bad input from a user: one line naming the problem and the fix."""


class MixoptWarning(UserWarning):
    """Something suspicious that does not stop the run (renormalised rows, epoch caps, ...)."""
