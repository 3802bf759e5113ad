"""The catalog at scale: appends instead of rewrites, a parse cache, many concurrent writers, no lost entry.

Timing is measured in ``benchmarks/bench_catalog.py``; these tests check behaviour only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from actstore import Catalog
from actstore.catalog_io import CatalogFiles
from actstore.errors import CatalogError, UnsafeNameError


def _entry(i: int) -> dict:
    return {"path": f"coresets/c{i}.json", "fingerprint": "f" * 16, "key": f"{i:016x}",
            "provenance": {"method": "random", "rate": 0.1, "seed": i}}


def test_twenty_processes_adding_five_entries_each_keep_all_hundred(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    script = textwrap.dedent(f"""
        import sys
        from actstore import Catalog
        w = int(sys.argv[1])
        for i in range(5):
            Catalog.load({str(path)!r}).add("coresets", f"w{{w}}-{{i}}",
                {{"path": f"c/{{w}}-{{i}}.json", "fingerprint": "f", "key": f"{{w}}{{i}}"}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(20)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 20
    names = set(Catalog.load(path).entries("coresets"))
    assert names == {f"w{w}-{i}" for w in range(20) for i in range(5)}
    Catalog.load(path).compact()
    on_disk = yaml.safe_load(path.read_text())  # the YAML alone, once compacted, holds them all
    assert set(on_disk["coresets"]) == names


def test_adds_append_to_a_journal_and_large_catalogs_are_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    data = {"version": 1, "coresets": {f"c{i}": _entry(i) for i in range(3000)}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = path.read_bytes()
    cat = Catalog.load(path)
    cat.add("coresets", "new", _entry(99999))
    assert path.read_bytes() == before, "one add must not rewrite a large catalog"
    journal = path.with_name("catalog.yaml.journal").read_text().splitlines()
    assert len(journal) == 1 and json.loads(journal[0])["name"] == "new"
    again = Catalog.load(path)
    assert len(again.entries("coresets")) == 3001 and again.get("coresets", "new")["key"] == f"{99999:016x}"
    again.remove("coresets", "c0")
    assert "c0" not in Catalog.load(path).entries("coresets")
    again.compact()
    assert not path.with_name("catalog.yaml.journal").exists()
    assert set(yaml.safe_load(path.read_text())["coresets"]) == set(again.entries("coresets"))


def test_small_catalogs_stay_plain_yaml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    cat = Catalog.load(path)
    cat.add("coresets", "a", _entry(1))
    assert yaml.safe_load(path.read_text())["coresets"]["a"]["key"] == f"{1:016x}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.yaml", "catalog.yaml.lock"]


def test_a_replayed_journal_after_a_crash_mid_compaction_changes_nothing(tmp_path: Path) -> None:
    """Compaction rewrites the YAML, then empties the journal; a crash in between replays changes the
    YAML already holds: the contents are the same."""
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "coresets": {f"c{i}": _entry(i) for i in range(3000)}}))
    cat = Catalog.load(path)
    cat.add("coresets", "x", _entry(1))
    cat.add("coresets", "x", _entry(2))
    cat.remove("coresets", "c5")
    journal = path.with_name("catalog.yaml.journal").read_bytes()
    expected = Catalog.load(path).data
    files = CatalogFiles(path)
    files.compact(expected)
    path.with_name("catalog.yaml.journal").write_bytes(journal)  # "crashed" before emptying it
    assert Catalog.load(path).data == expected


def test_the_cache_never_hides_a_hand_edit(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    filler = {f"c{i}": _entry(i) for i in range(3000)}  # large enough to be cached
    path.write_text(yaml.safe_dump({"version": 1, "datasets": {"d": {"spec": "digits:val"}}, "coresets": filler}))
    assert Catalog.load(path).get("datasets", "d")["spec"] == "digits:val"
    assert path.with_name(".catalog.yaml.cache.json").exists()
    path.write_text(yaml.safe_dump({"version": 1, "datasets": {"d": {"spec": "digits:train"}}, "coresets": filler}))
    assert Catalog.load(path).get("datasets", "d")["spec"] == "digits:train"
    cache = path.with_name(".catalog.yaml.cache.json")
    blob = json.loads(cache.read_text())
    blob["data"]["datasets"]["d"]["spec"] = "tampered"  # a cache for other bytes is never used
    blob["sha256"] = "0" * 64
    cache.write_text(json.dumps(blob))
    assert Catalog.load(path).get("datasets", "d")["spec"] == "digits:train"


def test_duplicate_keys_are_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("stores:\n  s1: {path: a.zarr, fingerprint: f}\n  s1: {path: b.zarr, fingerprint: g}\n")
    with pytest.raises(CatalogError, match=r"duplicate key 's1' at line 3"):
        Catalog.load(path)
    path.write_text("models:\n  m: {builder: resnet18, builder: vgg16}\n")
    with pytest.raises(CatalogError, match="duplicate key 'builder'"):
        Catalog.load(path)


def test_an_unfinished_journal_line_is_ignored_and_a_bad_one_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    Catalog.load(path).add("datasets", "d", {"spec": "digits:val"})
    journal = path.with_name("catalog.yaml.journal")
    journal.write_text('{"op": "add", "kind": "datasets", "name": "e", "entry": {"spec": "digits:train"}}\n'
                       '{"op": "add", "kind": "datas')  # a writer died mid-line
    assert set(Catalog.load(path).entries("datasets")) == {"d", "e"}
    journal.write_text('{"op": "add", "kind": "datasets", "name": "e"}\n')
    with pytest.raises(CatalogError, match="line 1 is not a change record"):
        Catalog.load(path)


def test_names_that_could_be_paths_are_refused(tmp_path: Path) -> None:
    cat = Catalog.load(tmp_path / "catalog.yaml")
    for name in ("../../evil", "/abs", "a/b", ".hidden", "", "..", "x" * 300):
        with pytest.raises(UnsafeNameError):
            cat.add("stores", name, {"path": "x.zarr", "fingerprint": "f"})
    assert not (tmp_path / "catalog.yaml").exists()


def test_catalog_ls_lists_a_large_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "coresets": {f"c{i}": _entry(i) for i in range(2000)}}))
    env = {**os.environ, "ACTSTORE_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", "catalog", "ls", "coresets", "--catalog", str(path),
                           "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["entries"]) == 2000


def test_reading_a_catalog_writes_nothing_beside_it(tmp_path: Path) -> None:
    """The checkout's own catalog.yaml is read by every run: reading must never create files there."""
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "coresets": {f"c{i}": _entry(i) for i in range(10)}}))
    Catalog.load(path)
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.yaml"]
