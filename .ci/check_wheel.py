"""Check what a built wheel ships: the kernels' .pxd files (the C-level API),
the compiled modules and the data; no generated C sources."""
import sys
import zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
kernels = ["abi", "blas", "activations", "recurrence", "elman", "lstm", "gru"]
missing = [f"crnn/kernels/{k}.pxd" for k in kernels if f"crnn/kernels/{k}.pxd" not in names]
missing += [k for k in kernels
            if not any(n.startswith(f"crnn/kernels/{k}.") and n.endswith(".so") for n in names)]
missing += [n for n in ["crnn/data/sunspots.csv", "crnn/__main__.py"] if n not in names]
generated = sorted(n for n in names if n.endswith((".c", ".cpp", ".html")))
if missing or generated:
    sys.exit(f"wheel {sys.argv[1]}: missing {missing}; generated sources {generated}")
print(f"wheel {sys.argv[1]}: {len(names)} files, every .pxd and kernel, no generated C")
