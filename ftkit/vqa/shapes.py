"""Procedural shape scenes with captions and one-word question/answer pairs (paper §11.2).

A *scene* is a small JSON-able dict: a background colour, a noise level and one to three
objects, each a (colour, shape) pair with a size and a centre. Within a scene every object has
its own colour and its own shape, so "the circle" or "the red one" always names exactly one
object and every question has exactly one right answer. Objects sit in distinct quadrants,
kept clear of the vertical mid-line, so "left" and "right" are never ambiguous.

Some colour-shape pairs are *held out*: no training scene contains them and no training
question mentions them; the ``heldout`` split puts one in every scene and asks about it, so a
model that scores there has composed a colour and a shape it only ever saw apart.

Rendering is deterministic (the scene's own seed drives the noise); images are drawn at 4x and
downsampled, so edges are anti-aliased. Used in notebooks/17_multimodal_vqa.ipynb and by
data/vqa_shapes/make_vqa_shapes.py.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (215, 40, 40), "green": (40, 160, 60), "blue": (45, 85, 215),
           "yellow": (230, 195, 30), "purple": (145, 60, 185)}
SHAPES = ("circle", "square", "triangle")
COUNT_WORDS = ("zero", "one", "two", "three")
QUESTION_TYPES = ("colour", "shape", "count", "position", "yes/no")
# Every answer a question of each type can have: chance accuracy is one over their number.
ANSWERS = {"colour": tuple(COLOURS), "shape": SHAPES, "count": COUNT_WORDS[1:],
           "position": ("left", "right"), "yes/no": ("yes", "no")}
DEFAULT_HELDOUT = "red triangle,green circle,blue square"
SUFFIX = " Answer with one word."
SPLITS = ("train", "seen", "heldout")


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    """``"red triangle,green circle"`` → ``[("red", "triangle"), ("green", "circle")]``."""
    pairs = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split()
        if len(parts) != 2 or parts[0] not in COLOURS or parts[1] not in SHAPES:
            raise ValueError(f"held-out pair {item!r}: write 'colour shape' with a colour in "
                             f"{list(COLOURS)} and a shape in {list(SHAPES)}")
        pairs.append((parts[0], parts[1]))
    if len(pairs) >= len(COLOURS):
        raise ValueError(f"{len(pairs)} held-out pairs leave too few for training")
    return pairs


def _place(rng: random.Random, n: int, size: int) -> list[tuple[int, int, int]]:
    """``n`` (cx, cy, radius) in distinct quadrants, centres kept off the vertical mid-line."""
    half, out = size // 2, []
    for q in rng.sample(range(4), n):
        r = rng.randint(size // 8, size // 6)  # 32 px: radius 4-5, a shape 8-10 px across
        x0, y0 = (q % 2) * half, (q // 2) * half
        cx = rng.randint(x0 + r + 1, x0 + half - r - 2)
        cy = rng.randint(y0 + r + 1, y0 + half - r - 1)
        out.append((cx, cy, r))
    return out


def make_scene(seed: int, split: str = "train", heldout: list[tuple[str, str]] | None = None,
               size: int = 32, noise: float = 8.0) -> dict:
    """One scene; ``split`` decides whether held-out pairs are excluded or required.

    Args:
        seed: the scene's seed (scenes are independent, so any one can be rebuilt alone).
        split: ``train``/``seen`` use only pairs that are not held out; ``heldout`` makes the
            first object a held-out pair.
        heldout: held-out (colour, shape) pairs (default :data:`DEFAULT_HELDOUT`).
        size: image side in pixels; noise: std of the Gaussian pixel noise (0-255 scale).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; choose one of {SPLITS}")
    heldout = parse_pairs(DEFAULT_HELDOUT) if heldout is None else heldout
    rng = random.Random(seed)
    n = rng.choice((1, 2, 2, 3))
    while True:
        colours, shapes = rng.sample(list(COLOURS), n), rng.sample(SHAPES, n)
        pairs = list(zip(colours, shapes))
        has_heldout = [p in heldout for p in pairs]
        if split == "heldout" and has_heldout[0] or split != "heldout" and not any(has_heldout):
            break
    grey = rng.randint(150, 235)  # low-saturation backgrounds, never one of the object colours
    background = [min(255, grey + rng.randint(-12, 12)) for _ in range(3)]
    objects = [{"colour": c, "shape": s, "x": x, "y": y, "r": r}
               for (c, s), (x, y, r) in zip(pairs, _place(rng, n, size))]
    return {"seed": seed, "size": size, "background": background, "noise": noise,
            "objects": objects}


def render(scene: dict):
    """The scene as an RGB ``PIL.Image`` of ``scene["size"]`` pixels, deterministically."""
    k, size = 4, scene["size"]
    img = Image.new("RGB", (size * k, size * k), tuple(scene["background"]))
    draw = ImageDraw.Draw(img)
    for o in scene["objects"]:
        x, y, r, fill = o["x"] * k, o["y"] * k, o["r"] * k, COLOURS[o["colour"]]
        if o["shape"] == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif o["shape"] == "square":
            draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    img = img.resize((size, size), Image.BILINEAR)
    pixels = np.asarray(img, dtype=np.float32)
    noise = np.random.default_rng(scene["seed"]).normal(0, scene["noise"], pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def side(obj: dict, size: int) -> str:
    return "left" if obj["x"] < size / 2 else "right"


def caption(scene: dict) -> str:
    """``"two shapes: a red circle on the left and a blue square on the right"``."""
    objs = sorted(scene["objects"], key=lambda o: (o["x"], o["y"]))
    parts = [f"a {o['colour']} {o['shape']} on the {side(o, scene['size'])}" for o in objs]
    n = len(objs)
    listed = parts[0] if n == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{COUNT_WORDS[n]} shape{'s' if n > 1 else ''}: {listed}"


def questions(scene: dict, split: str = "train",
              heldout: list[tuple[str, str]] | None = None) -> list[dict]:
    """One question of each type about ``scene``: dicts with ``type``, ``question``, ``answer``.

    In the ``heldout`` split the colour, shape, position and "yes" questions ask about the
    held-out object (the first one); in ``train`` and ``seen`` no question names a held-out pair.
    """
    heldout = parse_pairs(DEFAULT_HELDOUT) if heldout is None else heldout
    rng = random.Random(scene["seed"] * 7 + 1)
    objs, size = scene["objects"], scene["size"]
    target = objs[0] if split == "heldout" else rng.choice(objs)
    present = {(o["colour"], o["shape"]) for o in objs}
    absent = [(c, s) for c in COLOURS for s in SHAPES
              if (c, s) not in present and (split == "heldout" or (c, s) not in heldout)]
    ask_yes = rng.random() < 0.5
    colour, shape = (target["colour"], target["shape"]) if ask_yes else rng.choice(absent)
    rows = [("colour", f"What colour is the {target['shape']}?", target["colour"]),
            ("shape", f"What shape is the {target['colour']} object?", target["shape"]),
            ("count", "How many shapes are there?", COUNT_WORDS[len(objs)]),
            ("position", f"Is the {target['colour']} {target['shape']} on the left or the "
                         "right?", side(target, size)),
            ("yes/no", f"Is there a {colour} {shape}?", "yes" if ask_yes else "no")]
    return [{"type": t, "question": q, "answer": a} for t, q, a in rows]


def make_split(split: str, n: int, seed: int = 0, heldout: str = DEFAULT_HELDOUT,
               size: int = 32) -> list[dict]:
    """``n`` scenes of ``split``, each with its caption and questions (the manifest rows).

    Scene seeds are ``seed * 1_000_000 + offset + i`` with a different offset per split, so the
    splits never share a scene and a larger ``n`` extends a smaller one.
    """
    pairs = parse_pairs(heldout)
    offset = {"train": 0, "seen": 300_000, "heldout": 600_000}[split]
    rows = []
    for i in range(n):
        scene = make_scene(seed * 1_000_000 + offset + i, split, pairs, size)
        rows.append({**scene, "split": split, "caption": caption(scene),
                     "qa": questions(scene, split, pairs)})
    return rows


def qa_rows(scenes: list[dict]) -> list[dict]:
    """Flatten scenes to one row per question: ``scene``, ``type``, ``question``, ``answer``."""
    return [{"scene": s, **qa} for s in scenes for qa in s["qa"]]


def chance(qtype: str) -> float:
    """Accuracy of guessing uniformly among the answers a question type can have."""
    return 1.0 / len(ANSWERS[qtype])


def digest(rows: list[dict]) -> str:
    """sha256 of the rows' canonical JSON: the same scenes give the same digest everywhere."""
    text = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def make_manifest(sizes: dict[str, int], seed: int = 0, heldout: str = DEFAULT_HELDOUT,
                  size: int = 32) -> dict:
    """The data set as a recipe: seed, image size, held-out pairs, and per split its scene
    count and digest (images and questions are regenerated from it on demand)."""
    splits = {s: {"n": n, "sha256": digest(make_split(s, n, seed, heldout, size))}
              for s, n in sizes.items()}
    return {"seed": seed, "image_size": size, "heldout": heldout, "splits": splits}


def load_split(manifest_path: str | Path, split: str, n: int = 0) -> list[dict]:
    """The first ``n`` scenes (0 = all) of ``split``, regenerated from a manifest file."""
    path = Path(manifest_path)
    if not path.is_file():
        raise FileNotFoundError(f"no scene manifest at {path}; build it with "
                                "`python data/vqa_shapes/make_vqa_shapes.py`")
    spec = json.loads(path.read_text())
    if split not in spec["splits"]:
        raise ValueError(f"split {split!r} is not in {path}; it has {list(spec['splits'])}")
    total = spec["splits"][split]["n"]
    if n > total:
        raise ValueError(f"{path} defines {total} {split} scenes, {n} were asked for; "
                         "regenerate it with larger sizes")
    return make_split(split, n or total, spec["seed"], spec["heldout"], spec["image_size"])
