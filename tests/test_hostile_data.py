"""Data jobs on prepared bad files: odd tar member names, decompression bombs, escaping paths, damaged shards.

Every case here broke or merged samples before; each must now be read as the user meant, or skipped,
counted and named, while the rest of the job goes on.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from spatialgen.curate import curate, list_shards, read_shard
from spatialgen.curate.keys import MAX_KEY, KeyAllocator, sample_key
from spatialgen.scenes import make_sample, scene_seed
from spatialgen.tar_records import index_tar


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG whose header declares side x side pixels (400 MP: over twice PIL's limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:  # GNU: long names allowed on the input side
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def picture() -> bytes:
    return _png(make_sample(scene_seed(4, 0), 32).rgb)


def test_member_names_with_dot_slash_dots_and_great_length_stay_separate_samples(tmp_path: Path, picture) -> None:
    source = tmp_path / "wds"
    source.mkdir()
    long_stem = "a red cube to the left of a blue sphere " * 4  # 160 characters, spaces included
    members = [("./0001.jpg", picture), ("./0002.jpg", picture), ("./0003.jpg", picture)]
    members += [("photo.2020.png", picture), ("photo.2020.txt", b"first"), ("photo.2021.png", picture)]
    members += [(f"{long_stem}.png", picture), (f"{long_stem}.txt", b"long")]
    _tar(source / "000000.tar", members)
    items = [item for shard in list_shards(source) for item in read_shard(shard)]
    assert len(items) == 6 and all(item.error is None for item in items)
    assert [i.key for i in items[:3]] == ["0001", "0002", "0003"]
    dotted = {i.source_key: i for i in items if i.source_key and i.source_key.startswith("photo")}
    assert set(dotted) == {"photo.2020", "photo.2021"} and dotted["photo.2020"].captions == ["first"]
    assert all("." not in i.key and len(i.key) <= MAX_KEY for i in items)
    report = curate(source, tmp_path / "out")
    assert report["counts"]["items"] == 6  # no shard job died on a name tar cannot hold
    for shard in (tmp_path / "out" / "shards").glob("*.tar"):
        index_tar(shard)  # our own shards read back, one sample per key


def test_a_decompression_bomb_and_a_truncated_tar_are_counted_and_the_rest_goes_on(tmp_path: Path, picture) -> None:
    from spatialgen.extraction import ExtractionSettings, extract_dataset

    source = tmp_path / "wds"
    source.mkdir()
    _tar(source / "000000.tar", [("bomb.png", _bomb_png()), ("ok.png", picture), ("ok.txt", b"a cube")])
    _tar(source / "000001.tar", [("first.png", picture), ("second.png", picture)])
    first_member = 512 + -(-len(picture) // 512) * 512  # header + data padded to 512-byte blocks
    data = (source / "000001.tar").read_bytes()
    (source / "000001.tar").write_bytes(data[: first_member + 512 + 100])  # cut inside the second member's data
    report = curate(source, tmp_path / "curated")
    assert any("bomb" in u and "more pixels" in u for u in report["unreadable"])
    assert any("000001" in u and "corrupt shard" in u for u in report["unreadable"])
    extracted = extract_dataset(
        source,
        tmp_path / "extracted",
        ExtractionSettings(resolution=32, depth="scenes", normal="from-depth", segmentation="none", lines="edges"),
    )
    assert extracted["counts"]["kept"] == 2  # ok.png and the member before the damage
    assert any(s.startswith("bomb") for s in extracted["skipped"])


def test_a_parquet_path_cannot_leave_its_folder(tmp_path: Path, picture) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    secret = tmp_path / "secret.png"
    secret.write_bytes(picture)
    (tmp_path / "pq").mkdir()
    (tmp_path / "pq" / "inside.png").write_bytes(picture)
    rows = [{"path": str(secret)}, {"path": "../secret.png"}, {"path": "inside.png"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pq" / "part-0.parquet")
    items = [item for shard in list_shards(tmp_path / "pq") for item in read_shard(shard)]
    assert [i.error is None for i in items] == [False, False, True]
    assert all("leaves the parquet file's folder" in i.error for i in items[:2])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=300), min_size=1, max_size=20))
def test_sample_keys_are_safe_bounded_and_never_merge_two_sources(sources: list[str]) -> None:
    allocate = KeyAllocator()
    keys = [allocate(s) for s in sources]
    assert len(set(keys)) == len(keys)  # even for repeated sources: -2, -3
    for source, key in zip(sources, keys, strict=True):
        assert key and len(key) <= MAX_KEY + 4 and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
        assert sample_key(source) == sample_key(source)  # stable across runs and processes


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_as_a_shard_are_refused_in_words_never_a_crash(tmp_path_factory, blob: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "x.tar").write_bytes(blob)
    for item in read_shard(list_shards(folder)[0]):
        assert item.error is None or item.error.startswith(("corrupt shard", "no image", "unreadable caption"))


def test_visor_ids_cannot_name_paths_or_collide() -> None:
    from spatialgen.output_layouts import VisorLayout

    layout = VisorLayout(2, 1)
    with pytest.raises(ValueError, match="must be 1-64 letters"):
        layout.check([{"prompt": "a", "index": "../../escape"}])
    with pytest.raises(ValueError, match="repeat \\(7\\)"):
        layout.check([{"prompt": "a", "index": "7"}, {"prompt": "b", "index": 7}])
    layout.check([{"prompt": "a", "index": "visor-12"}, {"prompt": "b", "index": 13}])


def test_a_run_folder_with_another_runs_images_is_refused(tmp_path: Path) -> None:
    from spatialgen.generation_run import RUN_RECORD, open_run_folder

    out = tmp_path / "run"
    open_run_folder(out, {"method": "ildm"}, resume=False, main_process=True)
    (out / "seed0.png").write_bytes(b"png")
    open_run_folder(out, {"method": "ildm"}, resume=False, main_process=True)  # the same run again: fine
    for resume in (False, True):
        with pytest.raises(ValueError, match="holds images made with other settings"):
            open_run_folder(out, {"method": "infsplign"}, resume=resume, main_process=True)
    assert json.loads((out / RUN_RECORD).read_text()) == {"method": "ildm"}  # the record was not rewritten
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "holiday.png").write_bytes(b"png")
    with pytest.raises(ValueError, match="no spatialgen run recorded"):
        open_run_folder(stray, {"method": "sd"}, resume=False, main_process=True)


def _kill_after_first_report(command: list[str], out: Path, timeout: float = 120.0) -> None:
    """Run a data job in a child process and SIGKILL it as soon as its first shard is reported done."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-m", "spatialgen", *command], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not any((out / "reports").glob("*.json")):
            assert child.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no shard was finished in time"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # mid-way through the next shard
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill") / "photos"
    root.mkdir()
    for i in range(12):
        sample = make_sample(scene_seed(6, i), 32)
        Image.fromarray(sample.rgb).save(root / f"p{i:02d}.png")
        (root / f"p{i:02d}.txt").write_text(sample.captions.get("relation2d", sample.captions["attributes"]))
    return root


@pytest.mark.parametrize("job", ["extract", "curate"])
def test_a_data_job_killed_mid_shard_resumes_to_the_bytes_of_an_uninterrupted_run(
    job: str, photo_folder: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from spatialgen.cli import app

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    if job == "extract":
        flags = ["--resolution", "32", "--depth", "scenes", "--normal", "from-depth", "--lines", "edges"]
        command = ["intrinsics", "extract", "--source", str(photo_folder), "--chunk", "4", *flags]
    else:
        command = ["curate", "--source", str(photo_folder), "--chunk", "4"]
    runner = CliRunner()
    assert runner.invoke(app, [*command, "--out", str(whole)]).exit_code == 0
    resume = lambda: runner.invoke(app, [*command, "--out", str(killed)])  # noqa: E731 - the same command again
    command = [*command, "--out", str(killed)]
    _kill_after_first_report(command, killed)
    assert len(_shard_bytes(killed)) < 3  # the kill came before the job was done
    assert resume().exit_code == 0
    assert _shard_bytes(killed) == _shard_bytes(whole) and len(_shard_bytes(whole)) == 3
