"""Fixtures of the reliability tests; the helpers live in reliability_support (a unique module name)."""

from reliability_support import *  # noqa: F401,F403
