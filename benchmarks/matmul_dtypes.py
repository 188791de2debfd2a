"""fp32 vs bf16 matmul throughput on this machine, measured back to back, printed as a ratio.

Usage: .venv/bin/python benchmarks/matmul_dtypes.py [--sizes 512 1024 2048] [--seconds 2]
"""
import argparse

from ftkit.core.env import best_device, measure_matmul


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    dtypes = ["float32", "bfloat16"] + (["float16"] if best_device() == "cuda" else [])
    print(f"device: {best_device()}")
    for n in args.sizes:
        speed = {dt: measure_matmul(dt, n=n, seconds=args.seconds) for dt in dtypes}
        cells = "  ".join(f"{dt} {s:7.1f} GFLOP/s" for dt, s in speed.items())
        print(f"n={n:5d}  {cells}  bf16/fp32 = {speed['bfloat16'] / speed['float32']:.2f}x")


if __name__ == "__main__":
    main()
