"""Writers of synthetic cycler files, for round-trip tests of the readers only.

Each writer prints one synthetic cell the way the vendor's software does
(header lines, column names, units, sign convention, number formats), so a
reader test can assert ``write -> read == original`` within the printed
precision. They are deliberately not part of the package: celltwin reads
these formats, it does not produce them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = [
    "Synthetic",
    "synthetic_cell",
    "write_bdf",
    "write_arbin",
    "write_maccor",
    "write_mpt",
    "write_neware_csv",
    "write_neware_xlsx",
    "write_landt_xlsx",
    "as_xls",
    "step_capacity_mah",
]

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a whole second


@dataclass
class Synthetic:
    t: np.ndarray  # epoch seconds
    v: np.ndarray
    i: np.ndarray  # A, discharge negative
    temp_c: np.ndarray
    cycle: np.ndarray
    step: np.ndarray

    @property
    def elapsed(self) -> np.ndarray:
        return self.t - self.t[0]


def synthetic_cell(n_per_step: int = 20, cycles: int = 2, dt: float = 1.0, gap_s: float = 0.0) -> Synthetic:
    """Discharge / rest / charge steps; voltage falls under discharge, rises on charge.

    ``gap_s`` inserts a pause in the middle of the record (no samples), as a
    cycler does when a channel is stopped and resumed.
    """
    t, v, i, cycle, step = [], [], [], [], []
    clock, volt = 0.0, 3.6
    for c in range(1, cycles + 1):
        for s, current in ((1, -0.5), (2, 0.0), (3, 0.5)):
            for _ in range(n_per_step):
                volt += 0.01 * current / 0.5 if current else 0.0
                t.append(clock)
                v.append(round(volt, 4))
                i.append(current)
                cycle.append(c)
                step.append(s)
                clock += dt
    t_arr = START + np.asarray(t)
    if gap_s:
        t_arr[len(t_arr) // 2 :] += gap_s
    n = len(t)
    temp = np.round(130.0 + 0.5 * np.sin(np.arange(n) / 7.0), 2)
    return Synthetic(t_arr, np.asarray(v), np.asarray(i), temp, np.asarray(cycle), np.asarray(step))


def _hms(seconds: float) -> str:
    h, rem = divmod(seconds, 3600.0)
    m, s = divmod(rem, 60.0)
    return f"{int(h)}:{int(m):02d}:{s:06.3f}"


def _label(current: float, charge: str, discharge: str, rest: str) -> str:
    """A cycler's name for the direction of `current` (A, discharge negative)."""
    return charge if current > 0 else discharge if current < 0 else rest


def _utc(t: float, fmt: str) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime(fmt)


def write_bdf(path: Path, cell: Synthetic) -> Path:
    """Battery Data Format CSV with preferred labels."""
    lines = ["Test Time / s,Unix Time / s,Voltage / V,Current / A,Cycle Count / 1,Step Count / 1,"
             "Surface Temperature T1 / degC"]
    for k in range(len(cell.t)):
        lines.append(f"{cell.elapsed[k]:.3f},{cell.t[k]:.3f},{cell.v[k]:.6f},{cell.i[k]:.6f},"
                     f"{cell.cycle[k]},{cell.step[k]},{cell.temp_c[k]:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_arbin(path: Path, cell: Synthetic) -> Path:
    """Arbin MITS Pro CSV; Date_Time in UTC without zone, charge positive."""
    lines = ["Data_Point,Test_Time(s),Date_Time,Step_Time(s),Step_Index,Cycle_Index,Current(A),Voltage(V),"
             "Charge_Capacity(Ah),Discharge_Capacity(Ah),Aux_Temperature_1(C)"]
    for k in range(len(cell.t)):
        lines.append(f"{k + 1},{cell.elapsed[k]:.4f},{_utc(cell.t[k], '%Y-%m-%d %H:%M:%S')},0.0,"
                     f"{cell.step[k]},{cell.cycle[k]},{cell.i[k]:.6f},{cell.v[k]:.6f},0.0,0.0,{cell.temp_c[k]:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_bitrode(path: Path, cell: Synthetic, stated_units: bool) -> Path:
    """Bitrode CSV: the first layout (no units, none stated) or the later one (``"Total Time, S"``,
    quoted, below a ``Test Name`` / ``Test Date`` preamble); discharge negative."""
    if stated_units:
        lines = ["Test Name,synthetic", f"Test Date,{_utc(cell.t[0], '%m/%d/%Y')}", "",
                 '"Total Time, S","Cycle","Loop Counter #1","Step","Step Time, S","Current, A","Voltage, V",'
                 '"Amp-Hours, AH","Temperature A1, °C","Mode"']
    else:
        lines = ["Total Time,Cycle,Loop Counter #1,Loop Counter #2,Loop Counter #3,Step,Step time,Current,Voltage,"
                 "Amp-Hours,Watt-Hours,Mode,Data Acquisition Flag"]
    for k in range(len(cell.t)):
        mode = _label(cell.i[k], "CHARGE", "DISCHARGE", "REST")
        if stated_units:
            lines.append(f"{cell.elapsed[k]:.3f},{cell.cycle[k]},0,{cell.step[k]},0.0,{cell.i[k]:.6f},{cell.v[k]:.6f},"
                         f"0.0,{cell.temp_c[k]:.2f},{mode}")
        else:
            lines.append(f"{cell.elapsed[k]:.3f},{cell.cycle[k]},0,0,0,{cell.step[k]},0.0,{cell.i[k]:.6f},"
                         f"{cell.v[k]:.6f},0.0,0.0,{mode},T")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_digatron(path: Path, cell: Synthetic) -> Path:
    """Digatron CSV: a preamble, the column names, then a row of their units; current in mA here."""
    lines = ["Digatron Test Report", "Program,cycling.pgm", "",
             "Time Stamp,Step,Status,Prog Time,Cycle,Voltage,Current,Temperature,AhAccu",
             "yyyy-mm-dd hh:mm:ss,,,h:mm:ss,,V,mA,°C,Ah"]
    for k in range(len(cell.t)):
        status = _label(cell.i[k], "CHA", "DCH", "PAU")
        lines.append(f"{_utc(cell.t[k], '%Y-%m-%d %H:%M:%S')},{cell.step[k]},{status},{_hms(cell.elapsed[k])},"
                     f"{cell.cycle[k]},{cell.v[k]:.6f},{1000 * cell.i[k]:.3f},{cell.temp_c[k]:.2f},")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_neware_nested(path: Path, cell: Synthetic) -> Path:
    """Neware BTS 7 CSV: cycle rows, step rows one field in (with the step's name), record rows
    two fields in whose time restarts with each step; current a magnitude in mA."""
    lines = ["Cycle ID,Cap_Chg(mAh),Cap_DChg(mAh)", ",Step ID,Step Name,Step Time(h:min:s.ms)",
             ",,Record ID,Time(h:min:s.ms),Voltage(V),Current(mA),Temperature(C)"]
    step_start = 0.0
    for k in range(len(cell.t)):
        if k == 0 or cell.cycle[k] != cell.cycle[k - 1]:
            lines.append(f"{cell.cycle[k]},0,0")
        if k == 0 or cell.step[k] != cell.step[k - 1]:
            name = _label(cell.i[k], "CC_Chg", "CC_DChg", "Rest")
            lines.append(f",{cell.step[k]},{name},0:00:00.000")
            step_start = cell.elapsed[k - 1] if k else 0.0  # a step's clock runs from the record before it
        lines.append(f",,{k + 1},{_hms(cell.elapsed[k] - step_start)},{cell.v[k]:.6f},{1000 * abs(cell.i[k]):.3f},"
                     f"{cell.temp_c[k]:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_basytec(path: Path, cell: Synthetic) -> Path:
    """BaSyTec text export: ``~`` comment lines, the last of them the tab-separated column names
    (time in hours); its ``Date`` holds the day only."""
    lines = ["~Resultfile from BaSyTec Battery Test System", f"~Date of Test: {_utc(cell.t[0], '%d.%m.%Y')}", "~",
             "~Time[h]\tDataSet\tDate\tLine\tCommand\tU[V]\tI[A]\tT1[°C]"]
    for k in range(len(cell.t)):
        command = _label(cell.i[k], "Charge", "Discharge", "Pause")
        lines.append(f"{cell.elapsed[k] / 3600.0:.9f}\t{k + 1}\t{_utc(cell.t[k], '%d.%m.%Y')}\t{cell.step[k]}\t"
                     f"{command}\t{cell.v[k]:.6f}\t{cell.i[k]:.6f}\t{cell.temp_c[k]:.2f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_maccor(path: Path, cell: Synthetic) -> Path:
    """Maccor raw text export: metadata line, tab separated, current magnitude + State."""
    start = _utc(cell.t[0], "%m/%d/%Y %I:%M:%S %p")
    lines = [f"Today's Date\t11/25/2026\tDate of Test:\t{start}\tFilename:\tsynthetic.001\t"
             "Procedure:\tcycle.000\tComment/Barcode:\t",
             "Rec#\tCyc#\tStep\tTest (Sec)\tStep (Sec)\tAmp-hr\tWatt-hr\tAmps\tVolts\tState\tES\tDPt Time\tTemp 1"]
    for k in range(len(cell.t)):
        state = _label(cell.i[k], "C", "D", "R")
        lines.append(f"{k + 1}\t{cell.cycle[k]}\t{cell.step[k]}\t{cell.elapsed[k]:.4f}\t0.0000\t0.0\t0.0\t"
                     f"{abs(cell.i[k]):.10f}\t{cell.v[k]:.10f}\t{state}\t0\t"
                     f"{_utc(cell.t[k], '%m/%d/%Y %I:%M:%S %p')}\t{cell.temp_c[k]:.2f}")
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def write_mpt(path: Path, cell: Synthetic, decimal_comma: bool = True) -> Path:
    """EC-Lab ASCII export (GCPL), latin-1, CRLF, trailing tab, current in mA."""
    columns = ["mode", "ox/red", "error", "control changes", "Ns changes", "counter inc.", "Ns", "time/s",
               "control/V/mA", "Ewe/V", "<I>/mA", "cycle number", "Temperature/°C"]
    started = _utc(cell.t[0], "%m/%d/%Y %H:%M:%S.%f")[:-3]
    head = ["EC-Lab ASCII FILE", "Nb header lines : {n}", "", "Galvanostatic Cycling with Potential Limitation",
            "", f"Acquisition started on : {started}", "Saved on :", "\tFile : synthetic.mpr", ""]
    head.append("\t".join(columns) + "\t")
    head[1] = head[1].format(n=len(head))
    rows = []
    for k in range(len(cell.t)):
        fields = ["1", "1" if cell.i[k] >= 0 else "0", "0", "0", "0", "0", str(cell.step[k] - 1),
                  f"{cell.elapsed[k]:.15E}", f"{cell.i[k] * 1e3:.7E}", f"{cell.v[k]:.7E}",
                  f"{cell.i[k] * 1e3:.15E}", f"{cell.cycle[k] - 1:.15E}", f"{cell.temp_c[k]:.4E}"]
        row = "\t".join(fields)
        rows.append(row.replace(".", ",") if decimal_comma else row)
    path.write_bytes(("\r\n".join(head + rows) + "\r\n").encode("latin-1"))
    return path


def write_neware_csv(path: Path, cell: Synthetic, discharge_positive: bool = True) -> Path:
    """Neware BTS record CSV: mA, step-type labels, h:mm:ss times, older-version positive discharge."""
    labels = {1: "CC_DChg", 2: "Rest", 3: "CC_Chg"}
    lines = ["DataPoint,Cycle Index,Step Index,Step Type,Time,Total Time,Current(mA),Voltage(V),"
             "Capacity(mAh),Date,T1(°C)"]
    for k in range(len(cell.t)):
        current = abs(cell.i[k]) if discharge_positive else cell.i[k]
        lines.append(f"{k + 1},{cell.cycle[k]},{cell.step[k]},{labels[int(cell.step[k])]},0:00:00.000,"
                     f"{_hms(cell.elapsed[k])},{current * 1e3:.4f},{cell.v[k]:.4f},0.0,"
                     f"{_utc(cell.t[k], '%Y-%m-%d %H:%M:%S')},{cell.temp_c[k]:.2f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_neware_xlsx(path: Path, cell: Synthetic) -> Path:
    """Neware XLSX with a "record" sheet (an empty "cycle" sheet first, as BTS writes)."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "cycle"
    sheet = book.create_sheet("record")
    labels = {1: "CC_DChg", 2: "Rest", 3: "CC_Chg"}
    sheet.append(["DataPoint", "Cycle Index", "Step Index", "Step Type", "Total Time", "Current(A)",
                  "Voltage(V)", "Date"])
    for k in range(len(cell.t)):
        sheet.append([k + 1, int(cell.cycle[k]), int(cell.step[k]), labels[int(cell.step[k])],
                      _hms(cell.elapsed[k]), float(cell.i[k]), float(cell.v[k]),
                      datetime.fromtimestamp(cell.t[k], timezone.utc).replace(tzinfo=None)])
    book.save(path)
    return path


def write_arbin_xlsx(path: Path, channels: dict[str, Synthetic], rows_per_sheet: int) -> Path:
    """Arbin XLSX: an "Info" sheet, then each channel's rows over "Channel_..." sheets of
    `rows_per_sheet` rows each ("_1", "_2" after the first), as Arbin splits a channel past
    Excel's row limit."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Info"
    book.active.append(["TEST REPORT"])
    header = ["Data_Point", "Test_Time(s)", "Date_Time", "Step_Index", "Cycle_Index", "Current(A)", "Voltage(V)",
              "Charge_Capacity(Ah)", "Discharge_Capacity(Ah)"]
    for name, cell in channels.items():
        for part, first in enumerate(range(0, len(cell.t), rows_per_sheet)):
            sheet = book.create_sheet(name + (f"_{part}" if part else ""))
            sheet.append(header)
            for k in range(first, min(first + rows_per_sheet, len(cell.t))):
                stamp = datetime.fromtimestamp(cell.t[k], timezone.utc).replace(tzinfo=None)
                sheet.append([k + 1, float(cell.elapsed[k]), stamp, int(cell.step[k]), int(cell.cycle[k]),
                              float(cell.i[k]), float(cell.v[k]), 0.0, 0.0])
    book.save(path)
    return path


def as_xls(xlsx: Path) -> Path:
    """The workbook at `xlsx` saved as Excel 97-2003 (``.xls``, as older Arbin software
    exports), values and sheet names alike; dates keep a date format, as Excel writes them."""
    import openpyxl
    import xlwt

    source = openpyxl.load_workbook(xlsx, read_only=True)
    book = xlwt.Workbook()
    date = xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm:ss")
    for ws in source.worksheets:
        sheet = book.add_sheet(ws.title)
        for r, row in enumerate(ws.iter_rows(values_only=True)):
            for c, value in enumerate(row):
                if isinstance(value, datetime):
                    sheet.write(r, c, value, date)
                elif value is not None:
                    sheet.write(r, c, value)
    source.close()
    path = xlsx.with_suffix(".xls")
    book.save(str(path))
    return path


def write_landt_xlsx(
    path: Path, cell: Synthetic, *, single_sheet: bool = False, hours: bool = False, systime: bool = True,
    rows_per_sheet: int = 0,
) -> Path:
    """Landt XLSX: signed current in mA, the step's capacity in mAh, TestTime in s or h (two decimals).

    The LANDdt layout puts the record on "Record" (continued on "Record1" ... without a header when
    ``rows_per_sheet`` is set); the single-sheet layout has a few rows of test information above the
    header. Times in hours are truncated to 0.01 h as the export prints them.
    """
    import openpyxl

    unit = "h" if hours else "Sec"
    header = ["Index", f"TestTime/{unit}", f"StepTime/{unit}", "Current/mA", "Capacity/mAh", "SpeCap/mAh/g",
              "Voltage/V", "Energy/mWh"] + (["SysTime"] if systime else [])
    capacity = step_capacity_mah(cell)
    rows = []
    for k in range(len(cell.t)):
        elapsed = float(np.floor(cell.elapsed[k] / 36.0) * 0.01) if hours else float(cell.elapsed[k])
        row = [k + 1, round(elapsed, 2) if hours else elapsed, 0.0, float(cell.i[k] * 1e3), float(capacity[k]),
               float(capacity[k] / 0.02), float(cell.v[k]), 0.0]
        if systime:
            row.append(datetime.fromtimestamp(cell.t[k], timezone.utc).replace(tzinfo=None))
        rows.append(row)
    book = openpyxl.Workbook()
    sheet = book.active
    if single_sheet:
        sheet.title = "Sheet1"
        for info in (["Test information"], ["Channel", "1-3"], ["Active material", "20 mg"], []):
            sheet.append(info)
        chunks = [rows]
    else:
        sheet.title = "Record"
        size = rows_per_sheet or len(rows)
        chunks = [rows[k:k + size] for k in range(0, len(rows), size)]
    sheet.append(header)
    for number, chunk in enumerate(chunks):
        target = sheet if number == 0 else book.create_sheet(f"Record{number}")
        for row in chunk:
            target.append(row)
    if not single_sheet:
        book.create_sheet("Cycle").append(["Cycle", "CapC/mAh", "CapD/mAh"])
    book.save(path)
    return path


def step_capacity_mah(cell: Synthetic) -> np.ndarray:
    """The charge counted since the step began, a magnitude, as Landt and Maccor print it."""
    dt = np.diff(cell.t, prepend=cell.t[0])
    passed = np.abs(cell.i) * dt / 3.6
    new_step = np.r_[True, np.diff(cell.step) != 0]
    total = np.cumsum(passed)
    return total - np.maximum.accumulate(np.where(new_step, total, 0.0))
