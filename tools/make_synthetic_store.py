"""Write a synthetic activation store of a chosen size (class-structured, ReLU-sparse).

Usage: python tools/make_synthetic_store.py OUT.zarr --classes 1000 --rows-per-class 1300 --channels 512
           [--height 1 --width 1 --sparsity 0.5 --seed 0] [--model demo-resnet --units 16,32,64]

--model makes the layer that model's default layer (give its shape: demo-resnet is 8x8x64), so the
topic model and accuracy through the head run on it; --units adds VEBI unit features (channels per
layer). The store is written block by block: memory stays flat whatever its size.
"""

from __future__ import annotations

import argparse
import time

from actstore.extract.synthetic import write_synthetic_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rows-per-class", type=int, default=100)
    ap.add_argument("--channels", type=int, default=512)
    ap.add_argument("--height", type=int, default=1)
    ap.add_argument("--width", type=int, default=1)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="a demo model whose default layer the maps stand for")
    ap.add_argument("--units", default="", help="VEBI unit layers: channel counts, comma-separated")
    args = ap.parse_args()
    start = time.perf_counter()
    path = write_synthetic_store(args.out, classes=args.classes, rows_per_class=args.rows_per_class,
                                 channels=args.channels, height=args.height, width=args.width,
                                 sparsity=args.sparsity, seed=args.seed, model=args.model,
                                 unit_layers=[int(c) for c in args.units.split(",") if c])
    print(f"{path}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
