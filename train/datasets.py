"""Demo training data that any machine here can get from package registries.

``python -m dynastream.train.datasets fetch-demo DIR`` downloads Debian wallpaper packages (``apt-get
download``, no root needed, nothing installed) and the scikit-image wheel (``pip download``),
then writes::

    DIR/photos/   content photos for training (resized, longest side 768 px)
    DIR/styles/   style artwork (full size)
    DIR/heldout/  photos never used in training (preview sheets, eval)
    DIR/CREDITS.md  author and license of every file above

``python -m dynastream.train.datasets fetch-emoji DIR`` packs two npm packages (``npm pack``, nothing
installed) and writes the two subsets of the Dynamic DCGAN demo: the same 3786 emoji drawn by
Google (Noto, Apache-2.0) and by Twitter (Twemoji, CC-BY-4.0), 64x64 PNG each::

    DIR/noto/  DIR/twemoji/  DIR/CREDITS.md
"""

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class Asset:
    package: str     # Debian package, or "scikit-image" (PyPI wheel)
    path: str        # path inside the unpacked package
    role: str        # photos | styles | heldout
    name: str        # file name under DIR/role/
    credit: str      # author / copyright holder
    license: str


_MATE = "mate-backgrounds"
_PLASMA = "plasma-workspace-wallpapers"
_UKUI = "ukui-wallpapers"
_SKI = "scikit-image"
_PLASMA_CREDIT = "KDE Visual Design Group"

ASSETS: tuple[Asset, ...] = (
    # content photos: mate-backgrounds "nature" (GPL-2+, authors from its debian/copyright)
    Asset(_MATE, "usr/share/backgrounds/mate/nature/Aqua.jpg", "photos", "aqua.jpg", "Charles Barbin", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/Blinds.jpg", "photos", "blinds.jpg", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/Dune.jpg", "photos", "dune.jpg", "Marco Cogoni, Hylke Bons", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/FreshFlower.jpg", "photos", "freshflower.jpg", "Jens Ansorg", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/Garden.jpg", "photos", "garden.jpg", "Charles Barbin", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/GreenMeadow.jpg", "photos", "greenmeadow.jpg", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/LadyBird.jpg", "photos", "ladybird.jpg", "Charles Barbin", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/RainDrops.jpg", "photos", "raindrops.jpg", "see mate-backgrounds AUTHORS", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/Storm.jpg", "photos", "storm.jpg", "see mate-backgrounds AUTHORS", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/TwoWings.jpg", "photos", "twowings.jpg", "see mate-backgrounds AUTHORS", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/Wood.jpg", "photos", "wood.jpg", "see mate-backgrounds AUTHORS", "GPL-2+"),
    Asset(_MATE, "usr/share/backgrounds/mate/nature/YellowFlower.jpg", "photos", "yellowflower.jpg", "Charles Barbin", "GPL-2+"),
    # content photos: plasma-workspace-wallpapers (GPL-2+, KDE Visual Design Group)
    *(Asset(_PLASMA, f"usr/share/wallpapers/{d}/contents/images/{f}", "photos", f"{d.lower()}.jpg", _PLASMA_CREDIT, "GPL-2+")
      for d, f in (("BytheWater", "1280x1024.jpg"), ("ColdRipple", "1280x1024.jpg"),
                   ("ColorfulCups", "2560x1600.jpg"), ("DarkestHour", "1280x1024.jpg"),
                   ("EveningGlow", "1280x1024.jpg"), ("FallenLeaf", "1280x1024.jpg"), ("Grey", "1280x1024.jpg"),
                   ("Kite", "1280x1024.jpg"), ("OneStandsOut", "1280x1024.jpg"), ("Path", "1280x1024.jpg"),
                   ("summer_1am", "1280x1024.jpg"), ("Volna", "5120x2880.jpg"))),
    # style artwork
    Asset(_MATE, "usr/share/backgrounds/mate/abstract/Elephants.jpg", "styles", "elephants.jpg", "Wyng Stancikaite (2020)", "GPL-2+"),
    Asset(_UKUI, "usr/share/backgrounds/string.jpg", "styles", "string.jpg", "Ubuntu Kylin community contributors", "CC-BY-SA-3.0"),
    Asset(_UKUI, "usr/share/backgrounds/rhythm.jpg", "styles", "rhythm.jpg", "Ubuntu Kylin community contributors", "CC-BY-SA-3.0"),
    # held-out photos (scikit-image sample data; licenses from skimage/data/_fetchers.py)
    Asset(_SKI, "skimage/data/astronaut.png", "heldout", "astronaut.png", "NASA (Eileen Collins)", "public domain"),
    Asset(_SKI, "skimage/data/chelsea.png", "heldout", "chelsea.png", "Stefan van der Walt", "CC0"),
    Asset(_SKI, "skimage/data/coffee.png", "heldout", "coffee.png", "Rachel Michetti", "CC0"),
    Asset(_SKI, "skimage/data/rocket.jpg", "heldout", "rocket.jpg", "SpaceX", "public domain"),
)


class FetchError(Exception):
    pass


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"`{cmd[0]}` is not available on this machine") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise FetchError(f"`{' '.join(cmd)}` failed: {last}")


def _unpack_packages(packages: set[str], work: Path) -> dict[str, Path]:
    roots = {}
    for package in sorted(packages):
        root = work / package
        root.mkdir()
        if package == _SKI:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(work), _SKI], work)
            wheel = next(work.glob("scikit_image-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(root, [n for n in zf.namelist() if n.startswith("skimage/data/")])
        else:
            _run(["apt-get", "download", package], work)
            deb = next(work.glob(f"{package}_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), str(root)], work)
        roots[package] = root
    return roots


def fetch_demo(out: Path, max_side: int = 768) -> list[Asset]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dynastream-fetch-") as tmp:
        roots = _unpack_packages({a.package for a in ASSETS}, Path(tmp))
        for asset in ASSETS:
            src = roots[asset.package] / asset.path
            if not src.is_file():
                raise FetchError(f"{asset.package} no longer contains {asset.path}")
            dst = out / asset.role / asset.name
            dst.parent.mkdir(exist_ok=True)
            if asset.role == "photos":
                with Image.open(src) as im:
                    im = im.convert("RGB")
                    im.thumbnail((max_side, max_side), Image.LANCZOS)
                    im.save(dst, quality=92)
            else:
                shutil.copyfile(src, dst)
    (out / "CREDITS.md").write_text(credits_markdown(ASSETS))
    return list(ASSETS)


def credits_markdown(assets) -> str:
    lines = ["# Credits of the demo training data", "",
             "| file | source | author | license |", "| --- | --- | --- | --- |"]
    for a in assets:
        where = f"Debian package `{a.package}`" if a.package != _SKI else "PyPI wheel `scikit-image`"
        lines.append(f"| {a.role}/{a.name} | {where}: `{a.path}` | {a.credit} | {a.license} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EmojiSet:
    folder: str      # DIR/folder
    package: str     # npm package
    images: str      # folder of 64x64 PNGs inside the package tarball
    credit: str
    license: str


EMOJI_VERSION = "16.0.0"
EMOJI_SETS = (
    EmojiSet("noto", "emoji-datasource-google", "package/img/google/64/", "Google Inc. (Noto Emoji)", "Apache-2.0"),
    EmojiSet("twemoji", "emoji-datasource-twitter", "package/img/twitter/64/",
             "Twitter, Inc. and other contributors (Twemoji, jdecked/twemoji)", "CC-BY-4.0"),
)


def fetch_emoji(out: Path) -> dict[str, int]:
    """The emoji both sets draw, one PNG per emoji and set; returns the count per folder. Nothing is
    written unless both packages were fetched."""
    names: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="dynastream-fetch-") as tmp:
        for es in EMOJI_SETS:
            _run(["npm", "pack", "--silent", f"{es.package}@{EMOJI_VERSION}"], Path(tmp))
            tarball = next(Path(tmp).glob(f"{es.package}-*.tgz"))
            with tarfile.open(tarball) as tf:
                names[es.folder] = {Path(m.name).name: tf.extractfile(m).read() for m in tf.getmembers()
                                    if m.isfile() and m.name.startswith(es.images) and m.name.endswith(".png")}
    common = sorted(set.intersection(*(set(v) for v in names.values())))
    if not common:
        raise FetchError("the emoji packages hold no common 64x64 images")
    out.mkdir(parents=True, exist_ok=True)
    for es in EMOJI_SETS:
        folder = out / es.folder
        folder.mkdir(exist_ok=True)
        for name in common:
            (folder / name).write_bytes(names[es.folder][name])
    lines = ["# Credits of the emoji data", "",
             f"Both folders hold the same {len(common)} emoji, 64x64 PNG, from the npm packages below "
             "(the packages' code is MIT, Cal Henderson; the images keep their own licenses).", "",
             "| folder | npm package | images by | license |", "| --- | --- | --- | --- |"]
    lines += [f"| {es.folder}/ | `{es.package}@{EMOJI_VERSION}` ({es.images}) | {es.credit} | {es.license} |"
              for es in EMOJI_SETS]
    (out / "CREDITS.md").write_text("\n".join(lines) + "\n")
    return {es.folder: len(common) for es in EMOJI_SETS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynastream.train.datasets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch-demo", help="gather the demo photos, styles and held-out images into DIR")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("fetch-emoji", help="gather the Dynamic DCGAN demo's two emoji subsets into DIR")
    p.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch-emoji":
            counts = fetch_emoji(args.dir)
            print(f"wrote {', '.join(f'{n} images to {args.dir / k}' for k, n in counts.items())} "
                  f"(credits in {args.dir / 'CREDITS.md'})")
            return 0
        assets = fetch_demo(args.dir)
    except FetchError as e:
        print(f"{args.command}: error: {e}", file=sys.stderr)
        return 2
    counts = {r: sum(a.role == r for a in assets) for r in ("photos", "styles", "heldout")}
    print(f"wrote {counts['photos']} photos, {counts['styles']} styles and {counts['heldout']} held-out images "
          f"to {args.dir} (credits in {args.dir / 'CREDITS.md'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
