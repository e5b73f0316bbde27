"""Check what a built wheel ships: the kernels' .pxd files (the C-level API),
the compiled modules and the data; no generated C sources; and its size, at
most MAX_BYTES (release builds carry no debug information: see setup.py)."""
import os
import sys
import zipfile

# The stripped release wheel is 1.52 MB (CPython 3.11, x86-64, with token
# input and sample weights in the stack); debug information would multiply
# the kernels' size several times over, which this bound catches.
MAX_BYTES = 2_000_000

wheel = sys.argv[1]
names = set(zipfile.ZipFile(wheel).namelist())
size = os.path.getsize(wheel)
kernels = ["abi", "blas", "activations", "recurrence", "elman", "lstm", "gru"]
missing = [f"crnn/kernels/{k}.pxd" for k in kernels + ["_activation_codes"]
           if f"crnn/kernels/{k}.pxd" not in names]
missing += [k for k in kernels + ["stack", "optim"]
            if not any(n.startswith(f"crnn/kernels/{k}.") and n.endswith(".so") for n in names)]
missing += [n for n in ["crnn/data/sunspots.csv", "crnn/data/coriolanus.txt", "crnn/__main__.py"] if n not in names]
generated = sorted(n for n in names if n.endswith((".c", ".cpp", ".html")))
print(f"wheel {wheel}: {size / 1e6:.2f} MB ({size} bytes), {len(names)} files")
if missing or generated:
    sys.exit(f"wheel {wheel}: missing {missing}; generated sources {generated}")
if size > MAX_BYTES:
    sys.exit(f"wheel {wheel} is {size / 1e6:.2f} MB, over {MAX_BYTES / 1e6:.1f} MB: "
             f"is the release build stripped of debug information (setup.py)?")
print(f"wheel {wheel}: every .pxd and kernel, no generated C, at most "
      f"{MAX_BYTES / 1e6:.1f} MB")
