"""A deterministic synthetic injection-moulding plant, written as the plant's own Excel exports.

Tests, benchmarks and the CLI's demo need inputs shaped like the real exports, without
shipping plant data. All randomness is `random.Random` seeded with strings, so the same
arguments give the same cells (and bytes); month N of a 120-month plant equals month N of a
3-month one. The real exports' quirks are kept on purpose, because the pipeline must handle
them: the `plasticResine*` spelling, shifts as numbers 1/2/3 next to text "HC"/"hc", resin
and masterbatch codes stored as numbers (10045) next to codes that are text ("101104FJ"),
item codes that look numeric but are text ("24720322", "0300200"), mostly blank defect
counts, blank quantity cells on idle machines, and mold tonnage "50" (a number) next to
"50/100" (text).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import random
from dataclasses import dataclass
from pathlib import Path

from dpo.demo.layout import _DEFECT_RATE, _DEFECTS, _STATIC, MONTHLY_HEADER, PO_HEADER, SCHEMA
from dpo.demo.writers import CellValue, write_xlsb
from dpo.demo.xlsx import write_xlsx

__all__ = ["DEMO_MARK", "MONTHLY_HEADER", "PO_HEADER", "SCHEMA", "DemoPlant", "demo_folder_refusal",
           "generate_plant", "mark_demo_folder", "write_monthly_report", "write_xlsb", "write_xlsx"]

# `dpo demo` marks the folders it creates, so it may overwrite them again and nothing else.
DEMO_MARK = ".dpo-demo"

_RESINS: dict[int | str, str] = {
    10043: "ABS-532X02-T.NL", 10044: "ABS-PA-757-T.NL", 10045: "ABS-PA-758-T.NL",
    10048: "PC122-T.NL", 10049: "PP-VN-J2023GR-T.NL", 10052: "ABS-330-T.NL",
    9913740599: "POM-M9044-T.NL", 9915540700: "PS-RE-GPCD40T-T.NL",
    9915740199: "POM-RE-F20-T.NL", "101104FJ": "PP-RE-J106-T.NL"}
# Colour word in an item name -> (masterbatch code, masterbatch name, colour type).
_COLORS: dict[str, tuple[int | str, str, str]] = {
    "T.SMOKE": (10190, "MB-MFABS-2129-T.SMOKE", "gray"),
    "WHITE": (10091, "MB-WAF-19227-WHITE", "white"),
    "BLACK": (10093, "MB-BAF-49075-BLACK", "black"),
    "LIME": (10069, "MB-MFPC-2789-LIME", "green"),
    "BLUE": (10115, "MB-TCJ-59128-C.BLUE", "blue"),
    "PINK": (10081, "MB-MFPC-2801-PINK", "pink"),
    "GRAY": (10106, "MB-LEF-29045-GRAY", "gray"),
    "PURPLE": (10075, "MB-MFPOM-2886-VIOLET", "purple"),
    "GREEN": (10111, "MB-GEF-59094-GREEN", "green"),
    "RED": (10112, "MB-REF-39104-RED", "red"),
    "IY": (9917349020, "MB-ABT-(3-12-9635)-020-IY", "yellow"),
    "YW": (9917349025, "MB-ABT-(3-14-12381)-025-YW", "yellow"),
    "BK": ("9917349N15", "MB-ABT-(3-29-4246)-N15-BK", "black"),  # a code with a letter: text
}
_ADDITIVE = (10132, "MB-TORAY-BY27-004")
# (item type, mold base, cavities, cycle s, mold tonnage, resin, variants, uses additive)
_FAMILIES: list[tuple[str, str, int, int, str, int | str, list[str], bool]] = [
    ("CT-CA-BASE", "14000CBQ", 8, 18, "50/100", 10045,
     ["NL(NO-PRINT)", "T.SMOKE(NO-PRINT)", "WHITE", "BLACK"], False),
    ("CT-CAX-UPPER-CASE", "15300CBG", 4, 24, "100/130", 10048, ["NL", "LIME", "BLUE", "PINK"],
     False),
    ("CT-CAX-LOCK-BUTTON", "16500CBR", 8, 15, "50", 9915740199, ["GRAY", "BLUE"], False),
    ("CT-PXN-HEAD-COVER", "PXNHC4", 6, 20, "50/100", 9915540700, ["4.2", "5.0", "6.0"], False),
    ("CT-PXN-CORE", "PXNCR5", 6, 18, "50/100/130", 10052, ["4.2", "5.0"], False),
    ("CT-YA-PRINTER-HEAD", "12004CBQ", 8, 18, "50/100/180", 10043, ["4.2MM", "5.0MM"], False),
    ("CT-PS-SMALL-REEL", "PSSR", 6, 21, "100/130", 9913740599,
     ["2.5MM-PURPLE", "4.2MM-GREEN", "5.0MM-RED"], True),
    ("AB-TP-LARGE-CAP", "20101IBE", 4, 21, "50/100", 10049, ["020-IY", "025-YW", "N15-BK"], False),
    ("AB-TP-BODY", "20400IBE", 4, 36, "50/100/130/180", "101104FJ", [""], False),
    ("CT-YX-GEAR-CASE", "YXGC", 4, 24, "130", 10044, [""], False),
]
# (machine no, model, maker, tonnage, months after the start it joins the layout)
_MACHINES = [("NO.01", "MD50S", "Niigata", 50, 0), ("NO.02", "MD50S", "Niigata", 50, 0),
             ("NO.03", "EC50ST", "Toshiba", 50, 0), ("NO.04", "J100ADS", "JSW", 100, 0),
             ("NO.05", "J100ADS", "JSW", 100, 0), ("NO.06", "MD100S", "Niigata", 100, 0),
             ("NO.07", "MD100S", "Niigata", 100, 0), ("NO.08", "MD130S", "Niigata", 130, 0),
             ("NO.09", "MD130S", "Niigata", 130, 0), ("NO.10", "CNS50", "Niigata", 50, 2),
             ("NO.11", "CNS50", "Niigata", 50, 2)]
_REPLACED_AFTER = 4  # NO.03 gets a new press (EC50ST-001) this many months after the start


@dataclass(frozen=True)
class _Machine:
    no: str
    code: str
    model: str
    maker: str
    tonnage: int
    start: dt.date
    end: dt.date | None = None
    previous: str | None = None


@dataclass(frozen=True)
class _Item:
    index: int
    code: str
    name: str
    type: str
    molds: tuple[str, ...]
    cavity: int
    cycle: int
    tonnages: frozenset[int]
    resin: int | str
    color: str | None  # key of _COLORS
    additive: bool
    kg_per_1000: float  # plastic resin needed per 1000 pieces


@dataclass(frozen=True)
class _Catalog:
    items: tuple[_Item, ...]
    machines: tuple[_Machine, ...]
    molds: tuple[tuple[CellValue, ...], ...]  # moldInfo rows


@dataclass(frozen=True)
class DemoPlant:
    root: Path
    schema_path: Path
    monthly_files: tuple[Path, ...]
    po_files: tuple[Path, ...]
    static_files: tuple[Path, ...]
    rows_per_month: int


def _month(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError as exc:
        raise ValueError(f"month must look like 2018-11, got {text!r}") from exc


def _add_months(month: dt.date, n: int) -> dt.date:
    years, idx = divmod(month.month - 1 + n, 12)
    return dt.date(month.year + years, idx + 1, 1)


def _item_code(fam: int, var: int) -> str:
    """Mostly "24720301M"; every fifth is all digits; one has a leading zero (text, always)."""
    if fam == len(_FAMILIES) - 1:
        return "0300200"
    digits = f"247203{fam}{var}"
    return digits if (fam + var) % 5 == 4 else digits + "M"


def _catalog(seed: int, first: dt.date) -> _Catalog:
    rng = random.Random(f"dpo-demo:{seed}:catalog")
    items: list[_Item] = []
    molds: list[tuple[CellValue, ...]] = []
    for f, (kind, base, cav, cycle, tons, resin, variants, additive) in enumerate(_FAMILIES):
        mold_nos = tuple(f"{base}-M-{k:03d}" for k in range(1, 3 if cav >= 8 else 2))
        weight, runner = round(rng.uniform(0.05, 4.0), 2), round(rng.uniform(1.5, 9.0), 1)
        for k, mold_no in enumerate(mold_nos, start=1):
            bought = dt.date(2008, 1, 1) + dt.timedelta(days=rng.randrange(3650))
            molds.append((mold_no, f"{kind}-M-{k:04d}", cav, cycle,
                          int(tons) if tons.isdigit() else tons, bought, weight, runner))
        for v, variant in enumerate(variants):
            color = variant.split("(")[0].rsplit("-", 1)[-1]
            items.append(_Item(len(items), _item_code(f, v), f"{kind}-{variant}".rstrip("-"),
                               kind, mold_nos, cav, cycle, frozenset(map(int, tons.split("/"))),
                               resin, color if color in _COLORS else None, additive,
                               round(weight * 1.04 + runner / cav, 2)))
    return _Catalog(tuple(items), _machines(first), tuple(molds))


def _machines(first: dt.date) -> tuple[_Machine, ...]:
    seen: dict[str, int] = {}
    out: list[_Machine] = []
    swap = _add_months(first, _REPLACED_AFTER) + dt.timedelta(days=9)
    for no, model, maker, tons, after in _MACHINES:
        code = f"{model}-{seen.setdefault(model, 0):03d}"
        seen[model] += 1
        start = _add_months(first, after) + dt.timedelta(days=14 if after else 0)
        if no == "NO.03":  # the replaced press keeps its row, closed the day before the swap
            out.append(_Machine(no, code, model, maker, tons, start, swap - dt.timedelta(days=1)))
            out.append(_Machine(no, f"{model}-001", model, maker, tons, swap, None, code))
        else:
            out.append(_Machine(no, code, model, maker, tons, start))
    return tuple(out)


def _spread(total: int, parts: int) -> list[int]:
    """Split `total` over `parts` as evenly as possible (exact sum, in order)."""
    return [((p + 1) * total) // parts - (p * total) // parts for p in range(parts)]


def _report_rows(cat: _Catalog, month: dt.date, n_rows: int, seed: int) -> list[list[CellValue]]:
    rng = random.Random(f"dpo-demo:{seed}:report:{month:%Y%m}")
    days = [d for d in calendar.Calendar().itermonthdates(month.year, month.month)
            if d.month == month.month and d.weekday() != 6]  # Sundays off
    lots = {code: f"{rng.randint(6, 8)}{rng.choice('SMQC')}{rng.randint(10, 99)}A"
                  f"{rng.randint(100, 999)}" for code in _RESINS}  # one lot per resin and month
    fits = {t: [i for i in cat.items if t in i.tonnages] for t in (50, 100, 130)}
    state: dict[str, tuple[_Item, str]] = {}
    rows: list[list[CellValue]] = []
    for day, count in zip(days, _spread(n_rows, len(days)), strict=True):
        active = [m for m in cat.machines if m.start <= day and (m.end is None or day <= m.end)]
        # The pipeline drops exact duplicates, which would make row counts unpredictable: a
        # clash (likely only when a big report repeats machine-shift slots) is drawn again.
        seen: set[tuple[CellValue, ...]] = set()  # rows of this day, shift upper-cased
        for k in range(count):
            # Spread the day's records over its shift x machine slots, in the plant's order.
            slot = k * 3 * len(active) // count
            machine = active[slot % len(active)]
            for _ in range(1000):
                roll = rng.random()
                shift = "HC" if roll < 0.03 else "hc" if roll < 0.035 else 1 + slot // len(active)
                row = _report_row(rng, day, shift, machine, state, fits, lots)
                key = (str(shift).upper(), *row[2:])
                if key not in seen:
                    break
            else:
                raise RuntimeError(f"cannot draw {n_rows} distinct records for {month:%Y-%m}")
            seen.add(key)
            rows.append(row)
    return rows


def _report_row(rng: random.Random, day: dt.date, shift: CellValue, machine: _Machine,
                state: dict[str, tuple[_Item, str]], fits: dict[int, list[_Item]],
                lots: dict[int | str, str]) -> list[CellValue]:
    """One production record: what a machine made in a shift, its defects and materials."""
    old = state.get(machine.code)
    if old is None or rng.random() < 0.04:  # set-up change: another item, maybe another mold
        item = rng.choice(fits[machine.tonnage])
        mold = rng.choice(item.molds)
        state[machine.code] = (item, mold)
    else:
        item, mold = old
    color_changed = mold_changed = None
    if old is not None and old[0] is not item:
        mold_changed = f"{old[1]}>{mold}" if old[1] != mold else None
        before, after = old[0].color or "NL", item.color or "NL"
        color_changed = f"{before}>{after}" if before != after else None
    # A replaced press: its first records after the swap name the change (like the plant's).
    swapped = machine.previous and old is None and (day - machine.start).days < 7
    machine_changed = f"{machine.previous}>{machine.code}" if swapped else None
    roll = rng.random()
    idle, stopped = roll < 0.025, 0.025 <= roll < 0.045
    shots = 0 if stopped else int(28_800 / item.cycle * rng.uniform(0.55, 0.98))
    total = shots * item.cavity
    defects: list[CellValue] = [
        rng.randint(1, max(1, total // 40)) if total and rng.random() < p else None
        for p in _DEFECT_RATE]
    bad = sum(d for d in defects if isinstance(d, int))
    if bad > total:
        defects, bad = [None] * len(_DEFECTS), 0
    quantities: list[CellValue] = ([None] * (4 + len(_DEFECTS)) if idle else
                                   [shots, None if rng.random() < 0.03 else item.cavity, total,
                                    total - bad, *defects])
    color = _COLORS[item.color] if item.color else None
    materials: list[CellValue] = [None] * 7 if idle else [
        _RESINS[item.resin], item.resin, None if rng.random() < 0.04 else lots[item.resin],
        color[1] if color else None, color[0] if color else None,
        _ADDITIVE[1] if item.additive else None, _ADDITIVE[0] if item.additive else None]
    return [day, shift, machine.no, machine.code, item.code, item.name, color_changed,
            mold_changed, machine_changed, f"IM{day:%y%m}{item.index + 1:03d}", mold,
            *quantities, *materials]


def _composition(item: _Item, per_1000: float) -> list[CellValue]:
    """Material columns for `item`: resin, colour and additive masterbatch with quantities."""
    color = _COLORS[item.color] if item.color else None
    resin_kg = round(per_1000 * item.kg_per_1000, 2)
    return [item.resin, _RESINS[item.resin], resin_kg,
            color[0] if color else None, color[1] if color else None,
            round(resin_kg * 0.025, 2) if color else None,
            _ADDITIVE[0] if item.additive else None, _ADDITIVE[1] if item.additive else None,
            round(resin_kg * 0.03, 2) if item.additive else None]


def _static_rows(cat: _Catalog) -> dict[str, list[list[CellValue]]]:
    resins: list[list[CellValue]] = [[c, n, "plasticResin", "natural"] for c, n in _RESINS.items()]
    resins += [[c, n, "colorMasterbatch", t] for c, n, t in _COLORS.values()]
    resins.append([*_ADDITIVE, "additiveMasterbatch", "natural"])
    return {
        "itemCompositionSummary": [[i.code, i.name, *_composition(i, 1.0)] for i in cat.items],
        "itemInfo": [[i.code, i.name] for i in cat.items],
        "machineInfo": [[m.no, m.code, m.model, m.maker, m.tonnage, 2 if m.previous else 1,
                         m.start, m.end, m.previous] for m in cat.machines],
        "moldInfo": [list(row) for row in cat.molds],
        "moldSpecificationSummary": [[i.code, i.name, i.type, len(i.molds), "/".join(i.molds)]
                                     for i in cat.items],
        "resinInfo": resins,
    }


def _po_plan(first: dt.date, months: int, count: int) -> list[tuple[dt.date, dt.date, int, int]]:
    """(file date, production month, part, parts): files spread over the months in order."""
    plan = []
    for m, parts in enumerate(_spread(count, months)):
        month = _add_months(first, m)
        last = calendar.monthrange(month.year, month.month)[1]
        if parts > last:
            raise ValueError(f"{count} PO files over {months} months: more than one a day")
        plan += [(month.replace(day=1 + k * last // parts), month, k, parts) for k in range(parts)]
    return plan


def _po_rows(cat: _Catalog, received: dt.date, month: dt.date, part: int, parts: int,
             seed: int) -> list[list[CellValue]]:
    rng = random.Random(f"dpo-demo:{seed}:po:{received:%Y%m%d}")
    rows: list[list[CellValue]] = []
    for item in cat.items[part::parts]:
        qty = rng.randrange(2, 60) * 5000
        eta = received + dt.timedelta(days=rng.randint(10, 30))
        rows.append([received, f"IM{month:%y%m}{item.index + 1:03d}", eta, item.code, item.name,
                     qty, *_composition(item, qty / 1000)])
    return rows


def write_monthly_report(path: Path, rows: list[dict[str, object]] | None = None, *,
                         month: str = "2018-11", n_rows: int = 700, seed: int = 0) -> Path:
    """Write one monthly production report (.xlsb, sheet "Sheet1").

    rows=None: `n_rows` synthetic records for `month`. Otherwise each dict is one record keyed
    by MONTHLY_HEADER names (missing keys -> empty cells); keys outside the header become extra
    columns after it, in order of first appearance, so tests can add unexpected columns.
    """
    if rows is None:
        first = _month(month)
        table = _report_rows(_catalog(seed, first), first, n_rows, seed)
        return write_xlsb(Path(path), "Sheet1", MONTHLY_HEADER, table)
    header = list(MONTHLY_HEADER)
    for row in rows:
        header += [k for k in row if k not in header]
    return write_xlsb(Path(path), "Sheet1", header, [[r.get(h) for h in header] for r in rows])


def generate_plant(root: Path, *, months: int = 3, rows_per_month: int = 700,
                   po_files: int | None = None, seed: int = 0, start: str = "2018-11") -> DemoPlant:
    """Write a whole synthetic plant under `root` in the seed's default layout.

    `po_files` defaults to one purchase-order file per month (more spread several over a
    month). Existing files with other names are left alone; ours are overwritten.
    """
    if months < 1 or rows_per_month < 0 or (po_files is not None and po_files < 0):
        raise ValueError("months must be >= 1; rows_per_month and po_files must be >= 0")
    root, first = Path(root), _month(start)
    cat, db = _catalog(seed, first), Path(root) / "database"
    schema_path = db / "databaseSchemas.json"
    schema_path.parent.mkdir(parents=True, exist_ok=True)
    schema_path.write_text(json.dumps(SCHEMA, indent=4) + "\n", encoding="utf-8")
    static = tuple(write_xlsx(db / "staticDatabase" / _STATIC[name][0], _STATIC[name][1],
                              _STATIC[name][2], rows) for name, rows in _static_rows(cat).items())
    reports = db / "dynamicDatabase" / "monthlyReports_history"
    monthly = tuple(
        write_xlsb(reports / f"monthlyReports_{m:%Y%m}.xlsb", "Sheet1", MONTHLY_HEADER,
                   _report_rows(cat, m, rows_per_month, seed))
        for m in (_add_months(first, i) for i in range(months)))
    orders = db / "dynamicDatabase" / "purchaseOrders_history"
    pos = tuple(
        write_xlsx(orders / f"purchaseOrder_{day:%y%m%d}.xlsx", "poList", PO_HEADER,
                   _po_rows(cat, day, month, part, parts, seed))
        for day, month, part, parts in _po_plan(first, months, months if po_files is None
                                                else po_files))
    return DemoPlant(root, schema_path, monthly, pos, static, rows_per_month)


def demo_folder_refusal(target: Path) -> str | None:
    """Why `dpo demo` must not write into `target`, or None when it may.

    A demo overwrites the schema, the master tables and the monthly reports of its layout and
    publishes into the store: it may only go into a missing or empty folder, or one that an
    earlier `dpo demo` made (it holds DEMO_MARK). A real plant must never be touched.
    """
    if not target.exists():
        return None
    if not target.is_dir():
        return f"{target} exists and is not a folder"
    if (target / DEMO_MARK).is_file():
        return None
    if any(target.iterdir()):
        return (f"{target} is not empty and was not made by `dpo demo` (no {DEMO_MARK} file "
                "in it); it may be a real plant, so nothing was written. Give a new or empty "
                "folder")
    return None


def mark_demo_folder(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / DEMO_MARK).write_text("made by `dpo demo`: it may overwrite this folder\n",
                                    encoding="utf-8")
