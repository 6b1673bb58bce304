"""The real-sounds benchmark corpus builder (benchmarks/real_sounds.py), on a .deb the
test writes: selection, captions from names, per-file licences, duplicates, splits, pins, no network."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import real_sounds  # noqa: E402
from real_sounds import Package, build, caption_phrase, category  # noqa: E402

from modeling_supclap.data.readers import load_records  # noqa: E402

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
License: GPL-2+

Files: sounds/animals/*
License: CC0-1.0
"""


def _wav(seconds: float, seed: int, sr: int = 22050) -> bytes:
    buffer = io.BytesIO()
    tone = 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * np.arange(int(seconds * sr)) / sr)
    sf.write(buffer, tone.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def _deb(files: dict[str, bytes]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo("./" + path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return _ar([("debian-binary", b"2.0\n"), ("data.tar.xz", data.getvalue())])


@pytest.fixture()
def fake_package(tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("sound/ui/click1.wav", _wav(0.2, 4))
    bark = _wav(0.5, 1)
    files = {
        "usr/share/doc/fakesounds/copyright": COPYRIGHT.encode(),
        "usr/share/games/fake/sounds/animals/dog_bark1.wav": bark,
        "usr/share/games/fake/sounds/animals/dog_bark2.wav": bark,  # byte-identical copy: kept once
        "usr/share/games/fake/sounds/footsteps/snow3.wav": _wav(0.4, 2),
        "usr/share/games/fake/sounds/misc/breakglass04.wav": _wav(0.3, 3),
        "usr/share/games/fake/sounds/misc/long_music.wav": _wav(12.0, 5),  # over 10 s: left out
        "usr/share/games/fake/sounds/misc/speech_hello.wav": _wav(0.3, 6),  # excluded by name
        "usr/share/games/fake/readme.txt": b"not a sound",
        "usr/share/games/fake/sounds.zip": archive.getvalue(),
    }
    deb = _deb(files)
    (tmp_path / "debs").mkdir()
    (tmp_path / "debs" / "fakesounds_1.0_all.deb").write_bytes(deb)
    package = Package(
        "fakesounds",
        "1.0",
        "pool/main/f/fakesounds/fakesounds_1.0_all.deb",
        hashlib.sha256(deb).hexdigest(),
        include=r"(games/fake/sounds/.+\.wav|sounds\.zip!sound/.+\.wav)$",
        zips=("usr/share/games/fake/sounds.zip",),
        dep5_prefix=("usr/share/games/fake/", ""),
        exclude=r"speech",
    )
    return package, tmp_path / "debs"


def test_builds_an_audiofolder_with_captions_labels_and_per_file_licences(
    tmp_path, fake_package, monkeypatch
):
    package, debs = fake_package
    monkeypatch.setattr(real_sounds.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download"))
    root = build(tmp_path / "corpus", deb_dir=debs, packages=(package,))
    rows = [
        json.loads(line)
        for split in ("train", "validation", "test")
        for line in (root / split / "metadata.jsonl").read_text().splitlines()
    ]
    by_source = {row["source_path"].rsplit("/", 1)[-1]: row for row in rows}
    assert sorted(by_source) == ["breakglass04.wav", "click1.wav", "dog_bark1.wav", "snow3.wav"]
    assert by_source["snow3.wav"]["captions"][0] == "footsteps on snow"
    assert by_source["snow3.wav"]["label"] == "footsteps"
    assert by_source["breakglass04.wav"]["captions"] == ["glass breaking", "the sound of glass breaking"]
    assert by_source["dog_bark1.wav"]["license"] == "CC0-1.0"  # the later, more specific stanza
    assert by_source["snow3.wav"]["license"] == "GPL-2+"
    info = json.loads((root / "corpus_info.json").read_text())
    assert info["packages"]["fakesounds"]["clips"] == 4
    assert info["packages"]["fakesounds"]["licenses"] == {"GPL-2+": 3, "CC0-1.0": 1}
    records = [r for split in ("train", "validation", "test") for r in _records(root, split)]
    assert len(records) == 4
    for row in rows:
        split = next(s for s in ("train", "validation", "test") if (root / s / row["file_name"]).exists())
        data, rate = sf.read(root / split / row["file_name"])
        assert rate == 16000 and data.ndim == 1


def _records(root: Path, split: str) -> list:
    if not (root / split / "metadata.jsonl").read_text().strip():
        return []
    return load_records(root, split=split)


def test_the_build_is_deterministic_and_cached(tmp_path, fake_package):
    package, debs = fake_package
    first = build(tmp_path / "a", deb_dir=debs, packages=(package,))
    second = build(tmp_path / "b", deb_dir=debs, packages=(package,))
    for split in ("train", "validation", "test"):
        assert (first / split / "metadata.jsonl").read_text() == (
            second / split / "metadata.jsonl"
        ).read_text()
    stamp = (first / "corpus_info.json").stat().st_mtime_ns
    build(tmp_path / "a", deb_dir=debs, packages=(package,))  # already built: untouched
    assert (first / "corpus_info.json").stat().st_mtime_ns == stamp


def test_a_deb_that_is_not_the_pinned_one_is_refused(tmp_path, fake_package):
    package, debs = fake_package
    wrong = Package(**{**package.__dict__, "sha256": "0" * 64})
    with pytest.raises(ValueError, match="is not the pinned"):
        build(tmp_path / "corpus", deb_dir=debs, packages=(wrong,))
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize(
    ("path", "phrase", "label"),
    [
        ("x.pk3!sound/footsteps/gravel2.ogg", "footsteps on gravel", "footsteps"),
        (
            "games/minetest_game/mods/default/sounds/default_wood_footstep.1.ogg",
            "footsteps on wood",
            "footsteps",
        ),
        ("games/minetest_game/mods/doors/sounds/doors_steel_door_open.ogg", "steel door open", "door"),
        ("x.pk3!sound/soldiers/femalehurt02.ogg", "a woman crying out in pain", "human cry"),
        ("x.pk3!sound/weapons/bullet-smg-15x.ogg", "bullet submachine gun (weapons)", "gunfire"),
        ("x.pk3!sound/ui/beep1.ogg", "beep (interface)", "interface beep"),
        ("data/wav/misc/rooster.wav", "a rooster crowing", "animal"),
        ("x.pk3!sound/ambience/alienmachinery3.ogg", "alien machinery", "machine hum"),
    ],
)
def test_captions_and_categories_from_names(path, phrase, label):
    assert caption_phrase(path) == phrase
    assert category(phrase) == label


def test_no_reserved_package_is_used():
    assert not real_sounds.RESERVED & {p.name for p in real_sounds.PACKAGES}
    assert len(real_sounds.PACKAGES) == 5
