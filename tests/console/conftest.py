"""Fixtures of the console tests; the helpers live in console_support (a unique module name, so
test modules can import them without clashing with other directories' conftest modules)."""

from console_support import *  # noqa: F401,F403
