"""Pulse resistances the pipeline measures on a real HPPC file. Prints figures; asserts nothing.

    python benchmarks/pulse_bench.py [FILE]

Replays the battery-data-toolkit HPPC file (`tests/data/real/p492-13-raw.csv`, an
NMC532/graphite pouch: two C/20 cycles, then 10 s discharge pulses at 0.095 A at eight SOC
levels) through `celltwin replay --generic` and prints, per half-cycle with current steps,
the measured pulse resistance (median over its steps), the hold it was read at, and the
twin's R0 + R_ct beside it (`twin/analytics.py` says how steps are found and measured).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

from connectors.wire import OUT_CYCLES  # noqa: E402

_HPPC = _REPO / "tests" / "data" / "real" / "p492-13-raw.csv"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else _HPPC
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", str(source), "--generic", "--out", out,
                        "--no-report"], cwd=_REPO, check=True, capture_output=True)
        rows = pq.read_table(Path(out) / OUT_CYCLES).to_pylist()
    print(f"{source.name}: {len(rows)} half-cycles, {sum(int(r['pulse_count']) for r in rows)} current steps measured")
    print(f"{'cycle':>5} {'half':>9} {'steps':>5} {'pulse R':>9} {'hold':>7} {'twin R0+Rct':>11}")
    for r in rows:
        if r["pulse_count"]:
            print(f"{r['cycle']:>5} {r['half']:>9} {int(r['pulse_count']):>5} {r['pulse_r_ohm']:>7.3f} ohm "
                  f"{r['pulse_hold_s']:>5.1f} s {r['r0_ohm'] + r['rct_ohm']:>7.3f} ohm")


if __name__ == "__main__":
    main()
