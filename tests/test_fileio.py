from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spatialgen.fileio import atomic_write_bytes, replace_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        with replace_dir(tmp_path / "folder") as tmp:
            (tmp / "sub").mkdir()
            atomic_write_bytes(tmp / "sub" / "b.bin", b"y")
    finally:
        os.umask(mask)
    assert _mode(tmp_path / "a.bin") == 0o644
    assert _mode(tmp_path / "folder") == 0o755 and _mode(tmp_path / "folder" / "sub" / "b.bin") == 0o644


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("precious")
    with pytest.raises(RuntimeError), replace_dir(target) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("crash while writing")
    assert (target / "weights").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_writes_never_set_the_umask_another_thread_relies_on(tmp_path: Path, monkeypatch) -> None:
    def forbidden(mask: int) -> int:
        raise AssertionError("the process umask was changed while threads may be creating files")

    monkeypatch.setattr(os, "umask", forbidden)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    with replace_dir(tmp_path / "folder") as tmp:
        (tmp / "w").write_text("1")
    assert (tmp_path / "folder" / "w").read_text() == "1"


def test_a_folder_is_swapped_in_one_step_and_the_old_one_leaves_no_trace(tmp_path: Path, monkeypatch) -> None:
    import sys

    import spatialgen.fileio as fileio

    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    swaps: list[bool] = []
    real_exchange = fileio._exchange
    monkeypatch.setattr(fileio, "_exchange", lambda a, b: swaps.append(real_exchange(a, b)) or swaps[-1])
    monkeypatch.setattr(fileio.os, "replace", lambda *a: pytest.fail("a two-step swap leaves the folder missing"))
    with replace_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model"]
    assert swaps == [True] and sys.platform == "linux"  # the atomic exchange on this project's platform
