"""Write data/vqa_shapes/manifest.json (the recipe) and sample.jsonl (a few scenes to read).

Scenes are drawn by ftkit.vqa.shapes: one to three shapes (circle, square, triangle) in five
colours on a noisy light background, with a caption and five one-word questions per scene
(colour, shape, count, position, yes/no). Held-out colour-shape pairs never appear in the
``train`` and ``seen`` splits; every ``heldout`` scene contains one and is asked about it.
Only the recipe and its digests are committed: images and questions are regenerated on demand,
identically for the same seed (the digest checks it).

Used by notebooks/17_multimodal_vqa.ipynb (paper §11.2).

    python data/vqa_shapes/make_vqa_shapes.py                 # seed 0: 4000 / 400 / 400 scenes
    python data/vqa_shapes/make_vqa_shapes.py --train 8000 --seed 1 --out /tmp/vqa_shapes
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftkit.vqa import shapes


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000, help="training scenes")
    ap.add_argument("--test", type=int, default=400, help="scenes in each test split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--heldout", default=shapes.DEFAULT_HELDOUT,
                    help="comma-separated held-out 'colour shape' pairs")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": args.train, "seen": args.test, "heldout": args.test}
    manifest = shapes.make_manifest(sizes, args.seed, args.heldout, args.size)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sample = [r for s in sizes for r in shapes.make_split(s, 3, args.seed, args.heldout,
                                                           args.size)]
    (out / "sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample))
    print(f"wrote {out / 'manifest.json'} and {out / 'sample.jsonl'}: {sizes}")
    return out


if __name__ == "__main__":
    main()
