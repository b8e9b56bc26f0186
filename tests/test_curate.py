"""`spatialgen curate`: captions kept only when they hold, synthesised where none does, every rejection counted,
resumable by shard, and byte-identical on the local engine and on Ray Data."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialgen.curate import CurationSettings, curate, list_shards, read_shard
from spatialgen.scenes import DatasetParams, make_dataset, make_sample, scene_seed
from spatialgen.scenes.held_out import is_held_out_caption
from spatialgen.scenes.shards import SceneShards
from spatialgen.triplets import parse_triplet

N_SCENES, CHUNK = 96, 64  # two input shards


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("curate") / "scenes"
    make_dataset(root, DatasetParams(n=N_SCENES, resolution=64, seed=9, shard_size=100))
    return root


@pytest.fixture(scope="module")
def curated(scenes: Path) -> tuple[Path, dict]:
    out = scenes.parent / "curated"
    return out, curate(scenes, out, chunk=CHUNK)


def _records(out: Path) -> dict[str, dict]:
    records = {}
    for path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    records[member.name[:-5]] = json.loads(tar.extractfile(member).read())
    return records


def test_curated_scene_captions_hold_and_are_counted(scenes: Path, curated: tuple[Path, dict]) -> None:
    out, report = curated
    counts = report["counts"]
    assert counts["items"] == N_SCENES and counts["kept_items"] + counts["dropped_items"] == N_SCENES
    assert counts["verified_captions"] > 0 and counts["synthesised_captions"] > 0
    assert counts.get("caption_without_relation", 0) > 0  # attribute captions are read and set aside
    records = _records(out)
    assert len(records) == counts["kept_items"]
    shards = SceneShards(scenes)
    agree = total = 0
    for key, record in records.items():
        sample = shards[int(key.split("-")[1])]
        assert set(record["verified"]) <= set(sample.captions.values())  # verified: the scene's own captions
        assert all(parse_triplet(c) is not None for c in record["captions"])
        # ground truth per object: visible centroid (x, y) and median metric depth
        truth = {f"{o.colour} {o.shape}": (*o.centroid, o.depth) for o in sample.objects if o.centroid is not None}
        for caption in record["synthesised"]:
            t = parse_triplet(caption)
            a, b = truth.get(t.a.text), truth.get(t.b.text)
            if a is None or b is None:
                continue
            axis = {"left of": 0, "right of": 0, "above": 1, "below": 1, "in front of": 2, "behind": 2}[t.relation]
            total += 1
            agree += (a[axis] < b[axis]) == (t.relation in ("left of", "above", "in front of"))
    assert total >= 5 and agree / total >= 0.9, (agree, total)  # synthesised relations match the ground truth
    relations = report["relations"]
    assert relations.get("in front of", 0) + relations.get("behind", 0) > 0  # depth orders are synthesised too
    left, right = report["balance"]["left of / right of"]
    assert left + right == report["relations"].get("left of", 0) + report["relations"].get("right of", 0)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_bad_input_is_skipped_counted_and_listed(tmp_path: Path) -> None:
    source = tmp_path / "wds"
    source.mkdir()
    sample = next(s for s in (make_sample(scene_seed(4, i), 64) for i in range(50)) if "relation2d" in s.captions)
    with tarfile.open(source / "000000.tar", "w") as tar:
        _add(tar, "good.png", _png(sample.rgb))
        _add(tar, "good.txt", sample.captions["relation2d"].encode())
        _add(tar, "broken.png", b"\x89PNG not really")
        _add(tar, "broken.txt", b"a red cube to the left of a blue sphere")
        _add(tar, "french.png", _png(sample.rgb))
        _add(tar, "french.json", json.dumps({"caption": "un cube rouge"}).encode())
        _add(tar, "lonely.txt", b"a caption without an image")
    (source / "000001.tar").write_bytes(b"this is not a tar file at all" * 20)
    report = curate(source, tmp_path / "out")
    counts = report["counts"]
    assert counts["items"] == 5 and counts["unreadable"] == 3
    assert any("broken" in u for u in report["unreadable"]) and any("000001" in u for u in report["unreadable"])
    assert any("lonely" in u and "no image" in u for u in report["unreadable"])
    records = _records(tmp_path / "out")
    assert sample.captions["relation2d"] in records["good"]["verified"]
    assert records["good"]["source_captions"] == [sample.captions["relation2d"]]


def test_a_killed_job_resumes_without_redoing_or_changing_finished_shards(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sample = curate(scenes, out, chunk=CHUNK, max_shards=1)  # a sample first; the full job continues it
    assert sample["shards"] == 1 and sample["counts"]["items"] == CHUNK
    assert curate(scenes, out, chunk=CHUNK)["counts"]["items"] == N_SCENES
    with pytest.raises(ValueError, match="max_shards must be positive"):
        curate(scenes, out, chunk=CHUNK, max_shards=0)
    first, second = sorted((out / "shards").glob("*.tar"))
    before = first.read_bytes(), first.stat().st_mtime_ns, second.read_bytes()
    second.unlink()
    (out / "reports" / f"{second.stem}.json").unlink()  # as if killed while curating the second shard
    report = curate(scenes, out, chunk=CHUNK)
    assert first.stat().st_mtime_ns == before[1] and first.read_bytes() == before[0]  # not redone
    assert second.read_bytes() == before[2]  # redone, the same bytes
    assert report["counts"]["items"] == N_SCENES
    with pytest.raises(ValueError, match="other settings"):
        curate(scenes, out, CurationSettings(depth="none"), chunk=CHUNK)


def test_local_and_ray_engines_write_identical_shards(scenes: Path, tmp_path: Path) -> None:
    local = curate(scenes, tmp_path / "local", engine="local", chunk=CHUNK)
    distributed = curate(scenes, tmp_path / "ray", engine="ray", workers=2, chunk=CHUNK)
    assert local == distributed
    names = sorted(p.name for p in (tmp_path / "local" / "shards").glob("*.tar"))
    assert names == sorted(p.name for p in (tmp_path / "ray" / "shards").glob("*.tar")) and len(names) == 2
    for name in names:
        assert (tmp_path / "local" / "shards" / name).read_bytes() == (tmp_path / "ray" / "shards" / name).read_bytes()


def test_parquet_and_folder_sources_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sample = make_sample(scene_seed(4, 0), 64)
    rows = [{"image": {"bytes": _png(sample.rgb)}, "caption": "a red cube to the left of a blue sphere"}]
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pq" / "part-0.parquet")
    items = [item for shard in list_shards(tmp_path / "pq") for item in read_shard(shard)]
    assert len(items) == 1 and items[0].captions == [rows[0]["caption"]] and items[0].error is None
    (tmp_path / "folder").mkdir()
    Image.fromarray(sample.rgb).save(tmp_path / "folder" / "x.png")
    (tmp_path / "folder" / "x.txt").write_text("one\ntwo\n")
    items = [item for shard in list_shards(tmp_path / "folder") for item in read_shard(shard)]
    assert [(i.key, i.captions) for i in items] == [("x", ["one", "two"])]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="holds no webdataset"):
        list_shards(tmp_path / "nothing")


def test_a_spatial_lora_trains_on_curated_output(curated: tuple[Path, dict]) -> None:
    from spatialgen.esplora.training import load_pairs

    records = _records(curated[0])
    everything = load_pairs([str(curated[0])], 64, None, False)
    assert len(everything) == len(records) and everything.images.shape[1:] == (3, 64, 64)
    assert sorted(map(tuple, everything.captions)) == sorted(tuple(r["captions"]) for r in records.values())
    # curation states held-out triplets as often as the world does; training never reads them
    held_out = [c for r in records.values() for c in r["captions"] if is_held_out_caption(c)]
    assert held_out, "the fixture should curate some held-out triplet"
    pairs = load_pairs([str(curated[0])], 64, None, True)
    kept = [tuple(c for c in r["captions"] if not is_held_out_caption(c)) for r in records.values()]
    assert sorted(map(tuple, pairs.captions)) == sorted(k for k in kept if k)
    assert pairs.skipped == sum(not k for k in kept) and len(pairs) + pairs.skipped == len(records)


def test_a_scene_source_without_spatial_captions_makes_curation_synthesise_them(scenes: Path, tmp_path: Path) -> None:
    report = curate(scenes, tmp_path / "synth", chunk=CHUNK, scene_captions=("attributes", "count"))
    counts = report["counts"]
    assert counts.get("verified_captions", 0) == 0 and counts["synthesised_captions"] > 0
    for pair in report["balance"].values():  # a relation and its inverse: synthesis phrases toward balance
        assert sum(pair) > 0 and abs(pair[0] - pair[1]) <= max(2, 0.1 * sum(pair)), report["balance"]
    for record in _records(tmp_path / "synth").values():
        assert not record["verified"] and all(parse_triplet(c) is None for c in record["source_captions"])
    with pytest.raises(ValueError, match="scene caption kinds must be some of attributes"):
        list_shards(scenes, CHUNK, ("relations",))
    with pytest.raises(ValueError, match="other settings"):  # the same folder with all captions is another job
        curate(scenes, tmp_path / "synth", chunk=CHUNK)
