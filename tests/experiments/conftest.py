"""Fixtures shared with the task tests."""

from tests.tasks.conftest import pretrained  # noqa: F401
