"""Helpers for the reliability suites: real runs in separate processes, faults, hostile files.

`Zygote` is a warm Python process (dpo and its data stack imported, one pipeline run done) that
forks one child per job: every fault run is a real, separate process (SIGKILL-able, runnable as
another user, with its own resource limits and environment), but costs ~0.2 s instead of the
~1 s a fresh interpreter needs to import pyarrow. A child writes the result dict, or the
exception it raised with its traceback, to a JSON file and its log to a text file.

Nothing here mocks dpo: faults are real (files deleted, permissions, rlimits, kill -9).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from dpo.fsio import TMP_MARK
from dpo.tables.parquet import read_verified

SHARED = Path("agents") / "shared_db"
ORCH = SHARED / "DataPipelineOrchestrator"
LOADER = SHARED / "DataLoaderAgent"
ANNOTATIONS = LOADER / "newest" / "path_annotations.json"
PHASE1 = SHARED / "dynamicDatabase"
ORDERS = Path("database") / "dynamicDatabase" / "purchaseOrders_history"
MONTHLY = Path("database") / "dynamicDatabase" / "monthlyReports_history"
STATIC = Path("database") / "staticDatabase"
DYNAMIC_TABLES = ("productRecords", "purchaseOrders")
NOBODY = (65534, 65534)

# -- the zygote ------------------------------------------------------------------------------
ZYGOTE = r'''
import json, os, resource, signal, sys, tempfile, traceback
from pathlib import Path
from loguru import logger
import dpo.collect.collector, dpo.load.loader, dpo.pipeline.heal  # noqa
import dpo.observe.ledger, dpo.observe.dashboard, dpo.observe.metrics  # noqa
from dpo.demo.plant import generate_plant
from dpo.pipeline.orchestrator import DataPipelineOrchestrator

logger.remove()
with tempfile.TemporaryDirectory() as warm:  # one real run: every lazy import is done here
    generate_plant(Path(warm), months=1, rows_per_month=5, seed=1)
    DataPipelineOrchestrator(root_dir=warm).run_pipeline(max_retries=0)


def child(job):
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    out_fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # before setuid
    os.dup2(log, 2)
    os.dup2(log, 1)
    logger.add(sys.stderr, level="DEBUG", backtrace=False, diagnose=False)
    os.environ.update(job.get("env", {}))
    if job.get("fsize") is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize"], resource.RLIM_INFINITY))
    if job.get("umask") is not None:
        os.umask(job["umask"])
    if job.get("uid") is not None:
        os.setgroups([])
        os.setgid(job["gid"])
        os.setuid(job["uid"])
    try:
        orch = DataPipelineOrchestrator(root_dir=job["root"], **job.get("settings", {}))
        out = {"result": orch.run_pipeline(**job.get("run", {}))}
    except BaseException as exc:
        out = {"exception": type(exc).__name__, "message": str(exc),
               "error_type": str(getattr(exc, "error_type", "")),
               "traceback": traceback.format_exc()}
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    with os.fdopen(out_fd, "w", encoding="utf-8") as handle:
        json.dump(out, handle)


for line in sys.stdin:
    request = json.loads(line)
    if request["cmd"] == "spawn":
        pid = os.fork()
        if pid == 0:
            try:
                child(request["job"])
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(0)
        print(json.dumps({"pid": pid}), flush=True)
    elif request["cmd"] == "wait":
        _, status = os.waitpid(request["pid"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
'''


@dataclass
class Outcome:
    """What a forked run left: exit code (-9: killed), result dict or exception, its log."""

    code: int
    result: dict[str, Any] | None
    exception: dict[str, Any] | None
    log: str


@dataclass
class Job:
    pid: int
    out: Path
    log: Path


class Zygote:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o777)  # children running as nobody write their outcome here
        env = {k: v for k, v in os.environ.items() if not k.startswith("DPO_")}
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env,
                                     stderr=subprocess.DEVNULL)
        self.count = 0

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, root: Path, *, env: dict[str, str] | None = None,
              settings: dict[str, Any] | None = None, run: dict[str, Any] | None = None,
              user: tuple[int, int] | None = None, fsize: int | None = None,
              umask: int | None = None) -> Job:
        self.count += 1
        out, log = self.workdir / f"job{self.count}.json", self.workdir / f"job{self.count}.log"
        job = {"root": str(root), "env": env or {}, "settings": settings or {},
               "run": {"max_retries": 0, **(run or {})}, "out": str(out), "log": str(log),
               "fsize": fsize, "umask": umask}
        if user is not None:
            job["uid"], job["gid"] = user
        return Job(self._ask({"cmd": "spawn", "job": job})["pid"], out, log)

    def wait(self, job: Job) -> Outcome:
        code = self._ask({"cmd": "wait", "pid": job.pid})["code"]
        text = job.out.read_text(encoding="utf-8") if job.out.exists() else ""
        data = json.loads(text) if text else {}
        log = job.log.read_text(encoding="utf-8", errors="replace") if job.log.exists() else ""
        return Outcome(code, data.get("result"), data if "exception" in data else None, log)

    def run(self, root: Path, **kw: Any) -> Outcome:
        return self.wait(self.spawn(root, **kw))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def wait_for(path: Path, timeout: float = 30.0) -> str:
    """Wait for a pause marker (or any file) to appear; its text."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)
    time.sleep(0.01)  # the writer writes a few bytes after creating it
    return path.read_text(encoding="utf-8")


def pause_env(point: str, folder: Path, timeout: float = 30.0) -> dict[str, str]:
    return {"DPO_PAUSE_AT": point, "DPO_PAUSE_DIR": str(folder),
            "DPO_PAUSE_TIMEOUT": str(timeout)}


def release(folder: Path) -> None:
    (folder / "release").write_text("go\n", encoding="utf-8")


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


# -- the published state --------------------------------------------------------------------
def published_bytes(root: Path) -> dict[str, bytes]:
    """The annotations file and every file it points at: the published state, byte for byte."""
    path = root / ANNOTATIONS
    snapshot = {"path_annotations.json": path.read_bytes()}
    for table, stored in json.loads(path.read_text(encoding="utf-8")).items():
        snapshot[table] = (root / stored).read_bytes()
    return snapshot


def phase1_bytes(root: Path) -> dict[str, bytes]:
    return {t: (root / PHASE1 / f"{t}.parquet").read_bytes() for t in DYNAMIC_TABLES
            if (root / PHASE1 / f"{t}.parquet").exists()}


def temp_files(root: Path) -> list[str]:
    """Temp files dpo left anywhere below the root, and SQLite journals of a dead writer."""
    found = [p for p in root.rglob("*") if p.name.startswith(TMP_MARK)
             or p.name.endswith(("-journal", "-wal", "-shm"))]
    return sorted(str(p.relative_to(root)) for p in found)


def assert_phase1_readable(root: Path) -> None:
    for table in DYNAMIC_TABLES:
        path = root / PHASE1 / f"{table}.parquet"
        if path.exists():
            read_verified(path)


def errors_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for phase in ("collector_result", "loader_result")
            for e in result[phase].get("errors", [])]


# -- users and permissions ------------------------------------------------------------------
@contextmanager
def nobody_tree(prefix: str = "dpo-rel-") -> Iterator[Path]:
    """A folder in /tmp that user nobody can reach (pytest's tmp_path is 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for item in path.rglob("*"):
        os.chown(item, uid, gid, follow_symlinks=False)


# -- hostile files --------------------------------------------------------------------------
def _col(index: int) -> str:
    letters, index = "", index + 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@dataclass(frozen=True)
class Raw:
    """A cell written as raw XML: attributes of <c> and its body (e.g. a formula, no value)."""

    attrs: str
    body: str


def raw_xlsx(path: Path, sheet: str, header: list[Any], rows: list[list[Any]], *,
             dimension: str | None = None, extra_parts: dict[str, bytes] | None = None,
             content_type: str = "application/vnd.openxmlformats-officedocument."
                                 "spreadsheetml.sheet.main+xml") -> Path:
    """A minimal .xlsx written by hand, for what real writers refuse to write (100k-character
    cells, formulas without a cached value, a lying dimension). Text is stored inline."""
    lines = []
    for r, row in enumerate([header, *rows], start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{_col(c)}{r}"
            if value is None:
                continue
            if isinstance(value, Raw):
                cells.append(f'<c r="{ref}"{value.attrs}>{value.body}</c>')
            elif isinstance(value, int | float) and not isinstance(value, bool):
                cells.append(f'<c r="{ref}"><v>{value!r}</v></c>')
            else:
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">'
                             f"{escape(str(value))}</t></is></c>")
        lines.append(f'<row r="{r}">{"".join(cells)}</row>')
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    ns = "http://schemas.openxmlformats.org"
    parts = {
        "[Content_Types].xml": f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{ns}/package/'
        f'2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
        f'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
        f'"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="{content_type}"/>'
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
        f'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}/package/'
        f'2006/relationships"><Relationship Id="rId1" Type="{ns}/officeDocument/2006/'
        f'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}/'
        f'spreadsheetml/2006/main" xmlns:r="{ns}/officeDocument/2006/relationships"><sheets>'
        f'<sheet name="{escape(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships '
        f'xmlns="{ns}/package/2006/relationships"><Relationship Id="rId1" Type="{ns}/'
        f'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
        f"</Relationships>",
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<worksheet xmlns="{ns}/spreadsheetml/2006/main">{dim}<sheetData>{"".join(lines)}'
        f"</sheetData></worksheet>",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
        for name, data in (extra_parts or {}).items():
            archive.writestr(name, data)
    return path


def zip_with_zeros(path: Path, parts: dict[str, bytes], name: str, size: int) -> Path:
    """A zip holding `parts` (deflated) and a member `name` that inflates to `size` zero bytes.

    Written by hand: zipfile would run deflate over all `size` bytes. After a full flush a
    compressor turns the same input block into the same bytes, so one compressed MiB is
    repeated: a real, valid deflate stream whose CRC is computed for real (~0.25 s per GiB).
    """
    mib = 1 << 20
    assert size % mib == 0 and size < 1 << 32  # no zip64 needed below 4 GiB
    zeros = bytes(mib)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush()
    crc = 0
    for _ in range(size // mib):
        crc = zlib.crc32(zeros, crc)
    members: list[tuple[str, int, int, int, list[bytes]]] = []
    for part, data in parts.items():
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        packed = deflater.compress(data) + deflater.flush()
        members.append((part, zlib.crc32(data), len(packed), len(data), [packed]))
    members.append((name, crc, len(block) * (size // mib) + len(tail), size,
                    [*([block] * (size // mib)), tail]))
    central, offset = [], 0
    with open(path, "wb") as out:
        for part, crc32, packed_size, plain_size, chunks in members:
            encoded = part.encode()
            fields = (20, 0, 8, 0, 0x21, crc32, packed_size, plain_size, len(encoded), 0)
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + encoded)
            for chunk in chunks:
                out.write(chunk)
            central.append(struct.pack("<IH", 0x02014B50, 20) + struct.pack(
                "<HHHHHIIIHHHHHII", *fields, 0, 0, 0, 0, offset) + encoded)
            offset = out.tell()
        directory = b"".join(central)
        out.write(directory)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                              len(directory), offset, 0))
    return path


def bomb_xlsx(path: Path, template: Path, unpacked: int, member: str = "xl/media/pad.bin") -> Path:
    """A real workbook plus a member that inflates to `unpacked` bytes of zeros."""
    with zipfile.ZipFile(template) as src:
        parts = {item.filename: src.read(item) for item in src.infolist()}
    return zip_with_zeros(path, parts, member, unpacked)


def cfb_bytes(stream_names: tuple[str, ...] = ("EncryptionInfo", "EncryptedPackage")) -> bytes:
    """An OLE2 compound file header (what a password-protected .xlsx or a legacy .xls is),
    followed by filler naming the streams an encrypted workbook holds."""
    header = bytearray(512)
    header[:8] = bytes.fromhex("D0CF11E0A1B11AE1")
    struct.pack_into("<HHHH", header, 24, 0x3E, 3, 0xFFFE, 9)  # minor, major, byte order, 2^9
    filler = b"".join(n.encode("utf-16-le") for n in stream_names)
    return bytes(header) + filler + bytes(4096)


def encrypt_workbook(path: Path, password: str = "secret") -> None:
    """Encrypt a real .xlsx in place, as Excel's "Protect with password" does (an OLE2
    container holding EncryptionInfo and EncryptedPackage; msoffcrypto-tool writes it)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = path.read_bytes()
    with open(path, "wb") as out:
        OOXMLFile(io.BytesIO(plain)).encrypt(password, out)


def legacy_xls(path: Path, sheet: str, header: list[Any], rows: list[list[Any]]) -> None:
    """A real Excel 97-2003 .xls (BIFF8, written by xlwt) at `path`, whatever its name says."""
    import xlwt

    book = xlwt.Workbook()
    ws = book.add_sheet(sheet)
    for r, row in enumerate([header, *rows]):
        for c, value in enumerate(row):
            if value is not None:
                ws.write(r, c, value if isinstance(value, str | int | float) else str(value))
    book.save(str(path))


def settle(path: Path, seconds: float = 120.0) -> None:
    """Backdate a file: a fresh unreadable file is retried as 'still being copied'."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))
