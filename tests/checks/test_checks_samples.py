"""The plant's real sample files: `dpo check --suggest` finds the plant's references and keys,
those checks pass with no warning, and one injected unknown mold fails exactly its row."""

from __future__ import annotations

from pathlib import Path

from checktools import checks_of, failing, write_checks
from pipelinetools import MONTHLY, Clock, age, dpo, read_book, run

from dpo.checks.spec import load_checks
from dpo.demo.plant import write_xlsb
from dpo.schema import load_schema

FIVE = """
[[check]]
table = "productRecords"
column = "moldNo"
references = "moldInfo.moldNo"

[[check]]
table = "productRecords"
column = "itemCode"
references = "itemInfo.itemCode"

[[check]]
table = "productRecords"
column = "machineCode"
references = "machineInfo.machineCode"

[[check]]
table = "productRecords"
column = "poNote"
references = "purchaseOrders.poNo"

[[check]]
table = "purchaseOrders"
unique = ["poNo"]
"""


def suggested_lines(text: str) -> list[tuple[str, ...]]:
    """(table, rule line...) of each suggested [[check]]."""
    blocks = []
    for block in text.split("[[check]]")[1:]:
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith("#")]
        blocks.append(tuple(lines))
    return blocks


def test_suggest_finds_the_plants_references_and_keys(samples_root: Path) -> None:
    assert dpo("run", "--root", samples_root, "--no-notify", timeout=300).returncode == 0
    out = samples_root / "suggested.toml"
    done = dpo("check", "--suggest", "--root", samples_root, "--out", "suggested.toml")
    assert done.returncode == 0, done.stderr
    blocks = suggested_lines(out.read_text(encoding="utf-8"))
    for table, column, target in (("productRecords", "moldNo", "moldInfo.moldNo"),
                                  ("productRecords", "itemCode", "itemInfo.itemCode"),
                                  ("productRecords", "machineCode", "machineInfo.machineCode"),
                                  ("productRecords", "poNote", "purchaseOrders.poNo")):
        assert (f'table = "{table}"', f'column = "{column}"',
                f'references = "{target}"') in blocks
    assert ('table = "purchaseOrders"', 'unique = ["poNo"]') in blocks
    schema = load_schema(samples_root / "database" / "databaseSchemas.json", samples_root)
    assert len(load_checks(out, schema).checks) == len(blocks)  # a valid checks file
    checked = dpo("check", "--root", samples_root, "--checks", "suggested.toml", "--json")
    assert checked.returncode == 0 and '"status": "passed"' in checked.stdout  # all hold


def test_the_five_checks_pass_on_the_samples_and_catch_one_unknown_mold(
        samples_root: Path) -> None:
    write_checks(samples_root, FIVE)
    clock = Clock()
    result = run(samples_root, clock=clock)
    assert result["overall_status"] == "success"
    assert [c["status"] for c in result["loader_result"]["checks"]] == ["passed"] * 5
    assert "check" not in result["warnings"]["by_kind"]
    (report,) = sorted((samples_root / MONTHLY).iterdir())
    sheet, header, rows = read_book(report)
    extra = [list(r) for r in rows[:5]]
    extra[3][header.index("moldNo")] = "NO-SUCH-MOLD"
    added = samples_root / MONTHLY / "monthlyReports_201812.xlsb"
    write_xlsb(added, sheet, header, extra)
    age(added)
    clock.advance()
    after = run(samples_root, clock=clock)
    molds = checks_of(after)["moldNo references moldInfo.moldNo"]
    assert molds["status"] == "failed" and molds["failing_rows"] == 1
    assert failing(molds) == [(added.name, sheet, 5)]
    assert molds["examples"][0]["values"] == {"moldNo": "NO-SUCH-MOLD"}
    others = [(c["table"], c["status"]) for c in after["loader_result"]["checks"]
              if c is not molds]
    # purchaseOrders did not change: its check does not run again
    assert others == [("productRecords", "passed")] * 3
