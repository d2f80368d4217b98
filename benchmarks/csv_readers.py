"""Reading a large CSV file of numbers into one float32 array: time and peak memory per reader.

A 1,000,000-row, 20-column file of floats (with a header row) is read by each reader in a
fresh process: Python's ``csv`` module, NumPy's ``loadtxt``, pandas (its C parser and its
pyarrow engine) and pyarrow's CSV reader. Each reports the seconds to a ``[rows, columns]``
float32 array and the peak memory the read added to the process (Linux's VmHWM, reset once
the reader's modules are imported), beside the array's own size.

Run: ``.venv/bin/python -m benchmarks.csv_readers`` (``--rows 100000`` for a short check). The
pyarrow readers need ``pip install pyarrow``, which the project's set-up leaves out; without it
they are skipped.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

READERS = {
    "csv module": (
        "import csv, numpy as np",
        "rows = csv.reader(open(path, newline='')); next(rows); "
        "array = np.array([[float(v) for v in row] for row in rows], dtype=np.float32)",
    ),
    "numpy loadtxt": (
        "import numpy as np",
        "array = np.loadtxt(path, delimiter=',', skiprows=1, dtype=np.float32)",
    ),
    "pandas (C parser)": (
        "import numpy as np, pandas as pd",
        "array = pd.read_csv(path, dtype=np.float32).to_numpy()",
    ),
    "pandas (pyarrow engine)": (
        "import numpy as np, pandas as pd",
        "array = pd.read_csv(path, dtype=np.float32, engine='pyarrow').to_numpy()",
    ),
    "pyarrow": (
        "import numpy as np, pyarrow as pa, pyarrow.csv as pc",
        "table = pc.read_csv(path); "
        "array = np.column_stack([c.to_numpy().astype(np.float32) for c in table.columns]); "
        "del table",
    ),
}

CHILD = """
import sys, time
{imports}
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
path = sys.argv[1]
open('/proc/self/clear_refs', 'w').write('5')  # the peak so far is forgotten
before = status('VmRSS:')
start = time.perf_counter()
{read}
seconds = time.perf_counter() - start
print(seconds, status('VmHWM:') - before, array.nbytes, array.shape[0], array.shape[1])
"""


def write_file(path: Path, rows: int, columns: int) -> None:
    import numpy as np

    generator = np.random.default_rng(0)
    with path.open("w") as handle:
        handle.write(",".join(f"x{i}" for i in range(columns)) + "\n")
        for start in range(0, rows, 100_000):
            block = generator.standard_normal((min(100_000, rows - start), columns))
            np.savetxt(handle, block, delimiter=",", fmt="%.6f")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "numbers.csv"
        write_file(path, args.rows, args.columns)
        size = path.stat().st_size / 2**20
        print(f"{args.rows} rows x {args.columns} columns, {size:.0f} MiB of text")
        print(f"{'reader':<26}{'seconds':>9}{'peak MiB':>10}{'array MiB':>11}")
        for name, (imports, read) in READERS.items():
            child = CHILD.format(imports=imports, read=read)
            done = subprocess.run(
                [sys.executable, "-c", child, str(path)], capture_output=True, text=True
            )
            if done.returncode != 0:
                last = done.stderr.strip().splitlines()[-1]
                if last.startswith("ModuleNotFoundError"):  # pyarrow: not in the set-up
                    missing = last.split("'")[1].split(".")[0]
                    last = f"skipped: {missing} is not installed (pip install {missing})"
                print(f"{name:<26}{last}")
                continue
            seconds, peak, nbytes, rows, columns = done.stdout.split()
            assert (int(rows), int(columns)) == (args.rows, args.columns), name
            print(
                f"{name:<26}{float(seconds):>9.2f}{int(peak) / 2**20:>10.0f}"
                f"{int(nbytes) / 2**20:>11.0f}"
            )


if __name__ == "__main__":
    main()
