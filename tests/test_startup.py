"""selip.startup: a command's heavy imports run with the cyclic collector paused, and the
commands that need no torch do not load it."""

from __future__ import annotations

import gc
import subprocess
import sys
import types

from selip.startup import imports_without_gc


def test_the_collector_is_paused_inside_and_enabled_after():
    assert gc.isenabled()
    with imports_without_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_what_a_new_import_built_is_frozen_and_nothing_without_one(monkeypatch):
    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    with imports_without_gc():
        pass  # nothing imported: a notebook's second command; its garbage stays collectable
    assert frozen == []
    with imports_without_gc():
        monkeypatch.setitem(sys.modules, "selip_test_new_module", types.ModuleType("m"))
    assert frozen == [1]


def test_a_collector_the_caller_disabled_stays_disabled():
    gc.disable()
    try:
        with imports_without_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_in_the_block_still_enables_the_collector():
    try:
        with imports_without_gc():
            raise ImportError("no such module")
    except ImportError:
        pass
    assert gc.isenabled()


def test_what_every_command_reads_first_and_the_importer_load_no_torch():
    """Every ``selip`` command translates legacy similarity keys and silences named
    third-party noise before it starts; that and ``selip import`` (DICOM/BIDS to NIfTI)
    need no torch, seconds of every start."""
    probe = ("import sys; import selip.cli, selip.similarity.legacy_keys, "
             "selip.training.quiet, selip.similarity.settings, selip.importer.command; "
             "from selip.similarity import TableSizing; TableSizing(mode='table'); "
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", result.stdout
