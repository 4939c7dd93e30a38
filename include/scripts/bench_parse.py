"""Parse time of each DAG file, measured as Airflow's dag-processor pays it (issue 7, DAG hygiene: <= 0.3 s).

The dag-processor parses each file in a fresh child process that has Airflow loaded but not the file's own
imports, every ``[dag_processor] min_file_process_interval`` (30 s by default). So each measurement here runs in
a new interpreter that first imports Airflow's DagBag and Task SDK (not timed), then loads the one file with
``DagBag`` and reads the duration Airflow itself records for it (``dagbag_stats``): the file's imports (this
package, pandas ...) plus building the DAG objects. The median of ``--runs`` fresh processes is reported.

Usage::

    python include/scripts/bench_parse.py [--runs 5] [--target 0.3] [--json]

Exit status 1 when a file is over the target or fails to import (so CI can run it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"

# Runs in the child: everything the dag-processor has loaded before it forks, then one timed DagBag load.
_CHILD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
[stat] = bag.dagbag_stats
print(json.dumps({
    "seconds": stat.duration.total_seconds(),
    "dags": stat.dag_num,
    "tasks": stat.task_num,
    "warnings": stat.warning_num,
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
}))
"""


def measure(dag_file: Path, runs: int) -> dict[str, object]:
    """Parse ``dag_file`` in ``runs`` fresh interpreters.

    :return: ``{"file", "median_s", "max_s", "dags", "tasks", "warnings", "import_errors"}`` (seconds).
    :raises RuntimeError: when the child interpreter itself fails.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")])}
    samples: list[float] = []
    last: dict[str, object] = {}
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(dag_file)], capture_output=True, text=True, env=env, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"parsing {dag_file.name} crashed: {result.stderr[-2000:]}")
        last = json.loads(result.stdout.strip().splitlines()[-1])
        samples.append(float(str(last["seconds"])))
    return {
        "file": dag_file.name,
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
        "dags": last["dags"],
        "tasks": last["tasks"],
        "warnings": last["warnings"],
        "import_errors": last["import_errors"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per file (median reported)")
    parser.add_argument("--target", type=float, default=0.3, help="seconds per file (issue 7)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("files", nargs="*", type=Path, help="DAG files (default: every dags/*.py)")
    args = parser.parse_args(argv)

    files = args.files or sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
    figures = [measure(path.resolve(), args.runs) for path in files]
    failing = [f for f in figures if float(str(f["median_s"])) > args.target or f["import_errors"]]
    if args.json:
        print(json.dumps({"target_s": args.target, "runs": args.runs, "files": figures}, indent=2))
    else:
        print(f"DAG file parse time (median of {args.runs} fresh processes; target <= {args.target} s)")
        print(f"{'file':<28} {'median s':>9} {'max s':>7} {'dags':>5} {'tasks':>6} {'warnings':>9}")
        for f in figures:
            flag = "  OVER TARGET" if float(str(f["median_s"])) > args.target else ""
            flag += "  IMPORT ERROR" if f["import_errors"] else ""
            print(
                f"{f['file']:<28} {f['median_s']:>9.3f} {f['max_s']:>7.3f} {f['dags']:>5} {f['tasks']:>6} "
                f"{f['warnings']:>9}{flag}"
            )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
