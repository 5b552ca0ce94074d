"""Fixtures shared with the task tests."""

from tests.tasks.conftest import pretrained, pretrained_once  # noqa: F401
