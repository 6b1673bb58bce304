#!/usr/bin/env python
"""A small benchmark corpus of *real recorded* sound effects, from five freely licensed Debian packages.

The demo corpus is synthetic; this one is recordings shipped by Debian (bookworm, main) game packages
whose file names say what they are (``footsteps/snow3.ogg``, ``misc/breakglass04.ogg``,
``doors_steel_door_open.ogg``, ``misc/rooster.wav``). It is a benchmark corpus only: the demo never
trains on it. Every package is pinned (version, pool path, SHA-256 of the .deb), so the corpus is the
same wherever it is built::

    python benchmarks/real_sounds.py .cache/supclap/real_sounds      # downloads 84 MB once, then cached

| package | version | clips | licences of the clips (DEP-5 copyright, matched per file) |
| --- | --- | --- | --- |
| ufoai-sound | 2.5-2 | ~322 | CC-BY-SA-3.0, GPL-2, GPL-2+, public domain |
| minetest-data | 5.6.1+dfsg+~1.9.0mt8+dfsg-2 | ~108 | CC-BY-SA-3.0, CC-BY-3.0, CC0-1.0, Expat |
| scorched3d-data | 44+dfsg-8 | ~107 | GPL-2+, CC-BY-SA-3 |
| btanks-data | 0.9.8083-9 | ~62 | Battle-Tanks-License (GPL-2 with an exception) |
| simutrans-pak64 | 121.0-1 | ~23 | Artistic-1.0 |

Kept: sound effects of at most 10 s (voice packs and music are not in the selected folders; one file
named like speech is left out), decoded, downmixed and resampled to 16 kHz mono 16-bit WAV;
byte-identical recordings once. Captions come from the folder and file name through a small
dictionary of the games' words (``breakglass`` -> "glass breaking", ``malehurt`` -> "a man crying out
in pain", ``ptl`` -> "particle beam"); variant numbers are dropped, so several clips may share a
caption ("footsteps on snow"). The label (for zero-shot) is one of 14 coarse categories found by
keywords, or none. Splits are 70/15/15 by a hash of package and path. ``corpus_info.json`` records
every package (version, SHA-256, licences and their counts) and ``metadata.jsonl`` every clip's
source path and licence. A ``.deb`` is read as an ``ar`` archive with Python (no dpkg needed);
``--deb_dir`` reads .debs already at hand instead of downloading.

The reserved packages (tuxpaint-stamps-default, gcompris-qt-data, sonic-pi-samples, hydrogen-drumkits,
sound-theme-freedesktop, oxygen-sounds, sound-icons) are never used.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeling_supclap.data.audio import decode_audio  # noqa: E402
from modeling_supclap.files import publish_folder, temporary_sibling  # noqa: E402

CORPUS_VERSION = 1
SAMPLING_RATE = 16000
MAX_SECONDS = 10.0
MIRROR = "http://deb.debian.org/debian/"
RESERVED = frozenset(
    {"tuxpaint-stamps-default", "gcompris-qt-data", "sonic-pi-samples", "hydrogen-drumkits",
     "sound-theme-freedesktop", "oxygen-sounds", "sound-icons"}
)  # fmt: skip


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    pool_path: str  # under MIRROR
    sha256: str
    include: str  # regex on the path of a sound (inside a zip: "<zip path>!<member>")
    zips: tuple[str, ...] = ()  # archives inside the package whose members are sounds
    dep5_prefix: tuple[str, str] = ("", "")  # installed path prefix -> path in the copyright's Files:
    exclude: str = r"$^"


PACKAGES = (
    Package("ufoai-sound", "2.5-2", "pool/main/u/ufoai-music/ufoai-sound_2.5-2_all.deb",
            "0224308c10e1265581d1829f19eaef031175390fd0eafeb4a1d558ac6561ed4e",
            include=r"0snd\.pk3!sound/.+\.ogg$", zips=("usr/share/games/ufoai/base/0snd.pk3",),
            dep5_prefix=("usr/share/games/ufoai/base/0snd.pk3!", "base/")),
    Package("minetest-data", "5.6.1+dfsg+~1.9.0mt8+dfsg-2",
            "pool/main/m/minetest/minetest-data_5.6.1+dfsg+~1.9.0mt8+dfsg-2_all.deb",
            "91371dd2bd51cfcd4fa60c138667989a47047dfe1a47f7523b9ad1782d397585",
            include=r"games/minetest_game/mods/[^/]+/sounds/[^/]+\.ogg$",
            dep5_prefix=("usr/share/games/minetest/games/minetest_game/", "mtg/")),
    Package("scorched3d-data", "44+dfsg-8", "pool/main/s/scorched3d/scorched3d-data_44+dfsg-8_all.deb",
            "b0be0a6d561966a62b1f135e0e6f5681c85f12e34ecad5777cb1af9fbcb7f1da",
            include=r"data/globalmods/(apoc|none)/data/wav/.+\.wav$",
            dep5_prefix=("usr/share/games/scorched3d/", ""), exclude=r"fight4life"),
    Package("btanks-data", "0.9.8083-9", "pool/main/b/btanks/btanks-data_0.9.8083-9_all.deb",
            "fbe1a476d95c68fe73d87715f4f0aecc1bc5428a979cd19451722665c9dbb5ae",
            include=r"btanks/data/sounds/.+\.ogg$", dep5_prefix=("usr/share/games/btanks/", "")),
    Package("simutrans-pak64", "121.0-1", "pool/main/s/simutrans-pak64/simutrans-pak64_121.0-1_all.deb",
            "46c8420e162941e6d87382b43c508b1dbf48015fcd782f0c4425952ba72745cc",
            include=r"simutrans/pak/sound/.+\.wav$"),
)  # fmt: skip
assert not RESERVED & {p.name for p in PACKAGES}

# --------------------------------------------------------------------------------------------------
# Captions and labels from paths
# --------------------------------------------------------------------------------------------------

# Whole names (folder/stem tokens joined) the games use -> plain English.
_PHRASES = {
    "breakglass": "glass breaking", "breakwood": "wood breaking", "breakmetal": "metal breaking",
    "breakelectric": "electrical equipment breaking", "malehurt": "a man crying out in pain",
    "maledeath": "a man's dying scream", "femalehurt": "a woman crying out in pain",
    "femaledeath": "a woman's dying scream", "civfemscream": "a woman screaming",
    "civfemdeath": "a woman's dying scream", "civmaledeath": "a man's dying scream",
    "civmalehurt": "a man crying out in pain", "birdchirp": "a bird chirping", "carhorn": "a car horn",
    "policecar": "a police car siren", "firetruck": "a fire truck siren", "beamup": "a teleporter beam",
    "nuclearloop": "a nuclear reactor hum", "lightningbolt": "a lightning bolt", "beesting": "a bee sting",
    "empsmall": "a small electromagnetic pulse", "riftcollapse": "a rift collapsing",
    "laserdeath": "a laser blast", "lockon": "a lock-on beep", "extralife": "an extra-life jingle",
    "humanflyby": "a person flying past", "alienflyby": "an alien craft flying past",
    "ufospotted": "an alert chime", "ufolost": "an alert chime", "basealert": "an alarm",
    "newmission": "an alert chime", "tvstatic": "television static", "windturbine": "a wind turbine",
    "cricketloop": "crickets chirping", "hitground": "a body hitting the ground", "gull": "seagulls",
    "cows": "cows mooing", "moo": "a cow mooing", "dog": "a dog barking", "wolf": "a wolf howling",
    "rooster": "a rooster crowing", "sheep": "sheep bleating", "bats": "bats squeaking",
    "bees": "bees buzzing", "horse": "a horse", "seagulls": "seagulls", "thunder": "thunder",
    "apache": "a helicopter", "helicopter": "a helicopter", "t38": "a jet plane flying past",
    "f16": "a jet plane flying past", "f18": "a jet plane flying past", "klaxon": "a klaxon horn",
    "klaxonfunny": "a funny klaxon horn", "laugh": "a man laughing", "deadman": "a man dying",
    "zombie": "a zombie groaning", "zombiedead": "a zombie dying", "zombiestrike": "a zombie attacking",
    "screaming": "a person screaming", "scream": "a person screaming",
}  # fmt: skip
# Single tokens -> words (None: drop the token).
_WORDS = {
    "ptl": "particle beam", "ugv": "robot vehicle", "hmg": "heavy machine gun", "smg": "submachine gun",
    "tnt": "dynamite", "node": "block", "dug": "dug up", "dig": "digging", "choppy": "wood chopping",
    "cracky": "stone cracking", "snappy": "twigs snapping", "crumbly": "dirt crumbling",
    "oddly": None, "breakable": None, "by": None, "hand": None, "immediate": None, "default": None,
    "env": None, "sounds": None, "sound": None, "misc": None, "seq": None, "geoscape": None,
    "xpanes": None, "carts": None, "doors": None, "fire": "fire", "taman": "alien creature",
    "ortnok": "alien creature", "shevaar": "alien creature", "bloodspider": "alien spider",
    "hovernet": "alien hover drone", "aliens": None, "civilians": None, "soldiers": None, "ambience": None,
    "apoc": None, "none": None, "menu": "menu", "ui": "interface", "ambient": "ambient",
    "flamer": "flamethrower", "needler": "needle gun", "heavyneedler": "heavy needle gun",
    "medikit": "medical kit", "taserdouble": "double taser", "fencegate": "fence gate",
    "mtg": None, "x": None, "dispersion": "dispersion", "machinegunner": "machine gunner",
    "hard": "a hard floor", "splash": "splashing", "com": "communicator", "base": "base",
}  # fmt: skip
# label -> keywords of the caption (first match wins, in this order).
CATEGORIES = (
    ("footsteps", ("footstep",)),
    ("explosion", ("explo", "nuke", "dynamite", "blast", "shockwave", "meteor", "quake")),
    ("glass or wood breaking", ("breaking", "cracking", "snapping", "crumbling", "dug up", "digging")),
    ("door", ("door", "gate", "chest")),
    ("gunfire", ("bullet", "gun", "rifle", "pistol", "shotgun", "cannon", "sniper", "shot", "rocket",
                 "missile", "grenade", "laser", "plasma", "flamethrower", "reload", "launch", "tracer")),
    ("water", ("water", "splash", "lava", "bubble", "steam")),
    ("fire", ("fire", "flame", "burn", "ignite", "furnace")),
    ("animal", ("dog", "cow", "sheep", "rooster", "wolf", "bird", "seagull", "bats", "bees", "horse",
                "cricket")),
    ("vehicle", ("car", "truck", "bus", "engine", "diesel", "helicopter", "tank", "boat", "submarine",
                 "jet", "cart", "hover", "robot vehicle", "siren", "klaxon", "horn")),
    ("human cry", ("scream", "crying out", "dying", "laughing", "groan")),
    ("alien creature", ("alien creature", "alien spider")),
    ("interface beep", ("click", "beep", "interface", "item", "popup", "chime", "alarm", "jingle", "menu")),
    ("thunder", ("thunder", "lightning")),
    ("machine hum", ("machine", "hum", "drone", "static", "spark", "electr", "jackhammer", "saw", "turbine")),
)  # fmt: skip


def _tokens(text: str) -> list[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [t for t in re.split(r"[\s_\-.]+", text.lower()) if t]


def caption_phrase(path: str) -> str:
    """The phrase a sound's folder and file name say ("sound/footsteps/snow3.ogg" -> "footsteps on snow")."""
    parts = path.replace("!", "/").split("/")
    stem, folder = Path(parts[-1]).stem, parts[-2] if len(parts) > 1 else ""
    if folder == "sounds" and len(parts) > 3 and parts[-4] == "mods":  # minetest: <mod>_<name>.<n>
        mod = parts[-3]
        stem = stem[len(mod) + 1 :] if stem.startswith(mod + "_") else stem
        folder = ""
    tokens = [re.sub(r"\d+[a-z]?$", "", t) if not re.fullmatch(r"[a-z]\d+", t) else t for t in _tokens(stem)]
    tokens = [t for t in tokens if t and not re.fullmatch(r"\d+x?", t)]
    # "alienmachinery", "alienbase": the games glue "alien" to the next word.
    tokens = [w for t in tokens for w in (["alien", t[5:]] if t.startswith("alien") and len(t) > 6 else [t])]
    joined = "".join(tokens)
    if joined in _PHRASES:
        phrase = _PHRASES[joined]
    else:
        words = []
        for token in tokens:
            word = (
                _PHRASES.get(token, _WORDS.get(token, token))
                if token in _PHRASES or token in _WORDS
                else token
            )
            if word:
                words.append(word)
        phrase = " ".join(words)
    # "footsteps/snow", "gravel footstep": footsteps on a surface.
    if folder == "footsteps" and phrase not in ("crouch", "stand") and "ground" not in phrase:
        phrase = f"footsteps on {phrase.replace('_', ' ')}"
    elif re.search(r"\bfootstep\b", phrase):
        phrase = "footsteps on " + phrase.replace("footstep", "").strip()
    elif folder == "footsteps":
        phrase = {"crouch": "a person crouching", "stand": "a person standing up"}.get(phrase, phrase)
    context = _WORDS.get(folder, folder)
    if context and context not in phrase and folder not in ("footsteps",):
        phrase = f"{phrase} ({context})"
    return re.sub(r"\s+", " ", phrase).strip() or stem


def category(phrase: str) -> str | None:
    """The first category with a keyword starting a word of ``phrase`` ("beep" is not "bees")."""
    for label, keywords in CATEGORIES:
        if any(re.search(rf"\b{re.escape(keyword)}", phrase) for keyword in keywords):
            return label
    return None


def captions_for(phrase: str) -> list[str]:
    bare = re.sub(r"\s*\(.*\)$", "", phrase)
    return list(dict.fromkeys([phrase, f"the sound of {bare}"]))


# --------------------------------------------------------------------------------------------------
# Reading .deb files (ar archives holding data.tar.*) without dpkg
# --------------------------------------------------------------------------------------------------


def deb_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of every regular file of a .deb's data archive."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not a .deb (ar) archive")
    position = 8
    while position + 60 <= len(data):
        header = data[position : position + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[position + 60 : position + 60 + size]
        position += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                for member in tar:
                    if member.isfile():
                        handle = tar.extractfile(member)
                        if handle is not None:
                            yield member.name.lstrip("./"), handle.read()
            return
    raise ValueError("no data.tar member in the .deb")


def _licences(copyright_text: str) -> list[tuple[list[str], str]]:
    """(Files: patterns, License) of each DEP-5 stanza, in order (the last match wins)."""
    rules = []
    for stanza in copyright_text.split("\n\n"):
        files = re.search(r"^Files:(.*?)(?=^\S|\Z)", stanza, re.S | re.M)
        licence = re.search(r"^License:\s*(.+)$", stanza, re.M)
        if files and licence:
            rules.append((files.group(1).split(), licence.group(1).strip()))
    return rules


def licence_of(path: str, package: Package, rules: list[tuple[list[str], str]]) -> str:
    source, target = package.dep5_prefix
    relative = target + path[len(source) :] if path.startswith(source) else path
    found = "unknown"
    for patterns, licence in rules:
        if any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
            found = licence
    return found


def package_sounds(package: Package, deb: bytes) -> Iterator[tuple[str, bytes, str]]:
    """``(path, audio bytes, licence)`` of every sound of ``package`` the corpus takes."""
    files = dict(deb_members(deb))
    rules = _licences(files.get(f"usr/share/doc/{package.name}/copyright", b"").decode("utf-8", "replace"))
    candidates: list[tuple[str, bytes]] = sorted(files.items())
    for archive in package.zips:
        with zipfile.ZipFile(io.BytesIO(files[archive])) as zipped:
            candidates += [(f"{archive}!{name}", zipped.read(name)) for name in sorted(zipped.namelist())]
    for path, data in candidates:
        if re.search(package.include, path) and not re.search(package.exclude, path):
            yield path, data, licence_of(path, package, rules)


def fetch_deb(package: Package, cache: Path, deb_dir: Path | None) -> bytes:
    """The package's .deb: from ``deb_dir``, the cache, or the Debian mirror; SHA-256 checked."""
    name = Path(package.pool_path).name
    for folder in (deb_dir, cache):
        if folder is not None and (folder / name).is_file():
            data = (folder / name).read_bytes()
            break
    else:
        with urllib.request.urlopen(MIRROR + package.pool_path, timeout=300) as response:
            data = response.read()
        cache.mkdir(parents=True, exist_ok=True)
        (cache / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != package.sha256:
        raise ValueError(f"{name}: SHA-256 {digest} is not the pinned {package.sha256}")
    return data


def split_of(key: str) -> str:
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else "validation" if bucket < 85 else "test"


def build(root: Path, deb_dir: Path | None = None, packages: tuple[Package, ...] = PACKAGES) -> Path:
    """Build (or reuse) the corpus in ``root`` (an audiofolder with train/validation/test)."""
    root = Path(root).absolute()
    pins = [{"package": p.name, "version": p.version, "sha256": p.sha256} for p in packages]
    info_path = root / "corpus_info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("version") == CORPUS_VERSION and info.get("packages_pinned") == pins:
            return root
    tmp = temporary_sibling(root, "build")
    try:
        rows: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
        seen: set[str] = set()
        per_package: dict[str, dict] = {}
        for package in packages:
            deb = fetch_deb(package, root.parent / "debs", deb_dir)
            licences: Counter = Counter()
            kept = 0
            for path, data, licence in package_sounds(package, deb):
                try:
                    audio = decode_audio(data, SAMPLING_RATE, f"{package.name}:{path}")
                except ValueError:
                    continue
                if len(audio) > MAX_SECONDS * SAMPLING_RATE or not np.abs(audio).max() > 1e-4:
                    continue
                fingerprint = hashlib.sha256(data).hexdigest()
                if fingerprint in seen:  # a byte-identical copy of a recording already taken
                    continue
                seen.add(fingerprint)
                phrase = caption_phrase(path)
                split = split_of(f"{package.name}/{path}")
                file_name = f"{package.name}_{kept:04d}.wav"
                (tmp / split).mkdir(parents=True, exist_ok=True)
                sf.write(tmp / split / file_name, audio, SAMPLING_RATE, subtype="PCM_16")
                rows[split].append(
                    {"file_name": file_name, "captions": captions_for(phrase), "label": category(phrase),
                     "package": package.name, "source_path": path, "license": licence}
                )  # fmt: skip
                licences[licence] += 1
                kept += 1
            per_package[package.name] = {"version": package.version, "sha256": package.sha256, "clips": kept,
                                         "licenses": dict(licences.most_common())}  # fmt: skip
        for split, split_rows in rows.items():
            (tmp / split).mkdir(parents=True, exist_ok=True)
            with open(tmp / split / "metadata.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in split_rows)
        info = {
            "version": CORPUS_VERSION,
            "packages_pinned": pins,
            "packages": per_package,
            "sampling_rate": SAMPLING_RATE,
            "splits": {split: len(r) for split, r in rows.items()},
            "labels": sorted({r["label"] for rs in rows.values() for r in rs if r["label"]}),
            "mirror": MIRROR,
        }
        (tmp / "corpus_info.json").write_text(json.dumps(info, indent=2) + "\n")
        publish_folder(tmp, root, keep_existing=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "root", type=Path, nargs="?", default=REPO_ROOT / ".cache" / "supclap" / "real_sounds"
    )
    parser.add_argument("--deb_dir", type=Path, default=None, help="read the pinned .debs from here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = build(args.root, args.deb_dir)
    info = json.loads((root / "corpus_info.json").read_text())
    print(f"{root}: {info['splits']} clips, labels {info['labels']}, {time.perf_counter() - start:.1f} s")
    for name, entry in info["packages"].items():
        print(f"  {name} {entry['version']}: {entry['clips']} clips, licences {entry['licenses']}")


if __name__ == "__main__":
    main()
