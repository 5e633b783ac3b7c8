"""Run every `bench/bench_*.py`, print their tables, and (with --readme) put them in README.md
between the `<!-- bench:start -->` and `<!-- bench:end -->` markers.

    make bench              # full run (minutes)
    make bench-quick        # small sizes, < ~3 minutes
    .venv/bin/python bench/run.py --only server memgine --readme
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and counts")
    ap.add_argument("--only", nargs="*", help="areas to run (server, memgine, runs, browser, ...)")
    ap.add_argument("--readme", action="store_true", help="write the tables into README.md")
    args = ap.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    sections = []
    failed = False
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        t0 = time.monotonic()
        print(f"== {script.name}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            failed = True
            sections.append(f"### {script.stem}\n\nfailed:\n```\n{proc.stderr[-2000:]}\n```")
        else:
            sections.append(proc.stdout.strip())
        print(f"   {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    header = (
        f"Measured with `{'make bench-quick' if args.quick else 'make bench'}` on "
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}."
    )
    report = header + "\n\n" + "\n\n".join(sections)
    print(report)
    if args.readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        start, end = "<!-- bench:start -->", "<!-- bench:end -->"
        if start in text and end in text:
            before, rest = text.split(start, 1)
            _, after = rest.split(end, 1)
            readme.write_text(f"{before}{start}\n{report}\n{end}{after}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
