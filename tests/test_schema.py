"""databaseSchemas.json validation (docs/behaviour.md, section 1): parsed into TableSpecs, or
rejected at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, dynamic_entry, make_paths, skip_or_fail, write_schema

from dpo.collect.collector import DataCollector
from dpo.errors import ConfigError, ErrorType, SchemaError
from dpo.schema import DTYPE_KINDS, load_schema

STATIC_OK = {"path": "database/staticDatabase/itemInfo.xlsx",
             "dtypes": {"itemCode": "string", "itemName": "string"}}


def _write_raw(root: Path, body: Any) -> Path:
    path = root / "database" / "databaseSchemas.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def _problems(root: Path, body: Any) -> list[str]:
    path = _write_raw(root, body)
    with pytest.raises(SchemaError) as info:
        load_schema(path, root)
    assert info.value.error_type is ErrorType.SCHEMA_INVALID
    # The message carries every problem, one line each.
    for problem in info.value.problems:
        assert problem in info.value.message
    return info.value.problems


def test_sample_like_schema_parses_in_required_order_with_resin_rename(tmp_path: Path) -> None:
    entry = dynamic_entry(
        required=["itemCode", "plasticResine", "plasticResineCode", "recordDate", "quantity"],
        dtypes={  # dtypes listed in a different order, with both resin spellings
            "recordDate": "datetime64[ns]",
            "quantity": "Int64",
            "plasticResin": "string",
            "plasticResineCode": "string",
            "itemCode": "string",
        },
    )
    path = write_schema(tmp_path, {"records": entry}, {"itemInfo": STATIC_OK})
    schema = load_schema(path, tmp_path)

    assert [t.name for t in schema.dynamic] == ["records"]
    assert [t.name for t in schema.static] == ["itemInfo"]
    spec = schema.table("records")
    assert spec.kind == "dynamic"
    assert spec.columns == ("itemCode", "plasticResin", "plasticResinCode", "recordDate",
                            "quantity")
    assert spec.dtype_of("plasticResinCode") == "string"
    assert spec.kind_of("recordDate") == "datetime"
    assert spec.kind_of("quantity") == "int"
    assert spec.name_start == "records_"
    assert spec.extension == ".xlsx"
    assert spec.sheet_name == "Sheet1"
    assert spec.path == (tmp_path / "database/dynamicDatabase/records_history").resolve()
    static = schema.table("itemInfo")
    assert static.columns == ("itemCode", "itemName")
    assert static.sheet_name is None  # first sheet unless named
    assert static.path == (tmp_path / STATIC_OK["path"]).resolve()
    with pytest.raises(KeyError):
        schema.table("nope")


def test_fingerprint_follows_meaning(tmp_path: Path) -> None:
    first = load_schema(write_schema(tmp_path), tmp_path).fingerprint
    assert load_schema(write_schema(tmp_path), tmp_path).fingerprint == first
    changed = dynamic_entry(sheet_name="Other")
    assert load_schema(write_schema(tmp_path, {"records": changed}), tmp_path).fingerprint != first


def test_real_sample_schema(tmp_path: Path) -> None:
    if not SAMPLES.is_dir():
        skip_or_fail(f"the sample plant is not at {SAMPLES}")
    body = json.loads((SAMPLES / "databaseSchemas.json").read_text(encoding="utf-8"))
    schema = load_schema(_write_raw(tmp_path, body), tmp_path)
    records = schema.table("productRecords")
    assert len(records.columns) == 32
    assert records.columns[:3] == ("recordDate", "workingShift", "machineNo")
    assert records.columns[25:28] == ("plasticResin", "plasticResinCode", "plasticResinLot")
    assert "plasticResine" not in records.columns
    assert schema.table("purchaseOrders").sheet_name == "poList"
    assert {t.name for t in schema.static} >= {"itemInfo", "machineInfo", "resinInfo"}
    assert schema.table("resinInfo").path.name == "resineInfo.xlsx"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as info:
        load_schema(tmp_path / "database" / "databaseSchemas.json", tmp_path)
    assert "not found" in info.value.message
    assert "databaseSchemas.json" in info.value.message


@pytest.mark.parametrize("text", ["{not json", "", "\xff\xfe garbage"])
def test_not_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "databaseSchemas.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SchemaError) as info:
        load_schema(path, tmp_path)
    assert "JSON" in info.value.message


def test_top_level_not_an_object(tmp_path: Path) -> None:
    problems = _problems(tmp_path, [1, 2])
    assert "dynamicDB" in problems[0] and "staticDB" in problems[0]


@pytest.mark.parametrize("section", ["dynamicDB", "staticDB"])
def test_missing_section(tmp_path: Path, section: str) -> None:
    body = {"dynamicDB": {"records": dynamic_entry()}, "staticDB": {"itemInfo": STATIC_OK}}
    del body[section]
    problems = _problems(tmp_path, body)
    assert len(problems) == 1
    assert section in problems[0]


def test_both_sections_missing_reports_both(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"dynamicdb": {}})
    assert any("dynamicDB" in p for p in problems)
    assert any("staticDB" in p for p in problems)


@pytest.mark.parametrize(
    "key", ["path", "name_start", "extension", "sheet_name", "required_fields", "dtypes"]
)
def test_dynamic_table_missing_key(tmp_path: Path, key: str) -> None:
    entry = dynamic_entry()
    del entry[key]
    problems = _problems(tmp_path, {"dynamicDB": {"records": entry}, "staticDB": {}})
    hits = [p for p in problems if "records" in p and key in p and "missing" in p]
    assert hits, problems


@pytest.mark.parametrize("key", ["path", "dtypes"])
def test_static_table_missing_key(tmp_path: Path, key: str) -> None:
    entry = dict(STATIC_OK)
    del entry[key]
    problems = _problems(tmp_path, {"dynamicDB": {}, "staticDB": {"itemInfo": entry}})
    assert any("itemInfo" in p and key in p and "missing" in p for p in problems), problems


def test_unknown_dtype_names_table_column_and_dtype(tmp_path: Path) -> None:
    entry = dynamic_entry(dtypes={**dynamic_entry()["dtypes"], "quantity": "int64"})
    problems = _problems(tmp_path, {"dynamicDB": {"records": entry}, "staticDB": {}})
    (hit,) = [p for p in problems if "unknown dtype" in p]
    assert "records" in hit and "quantity" in hit and "'int64'" in hit


def test_unknown_dtype_in_static_table(tmp_path: Path) -> None:
    entry = {"path": "database/staticDatabase/x.xlsx", "dtypes": {"a": "object"}}
    problems = _problems(tmp_path, {"dynamicDB": {}, "staticDB": {"machineInfo": entry}})
    assert any("machineInfo" in p and "'object'" in p for p in problems), problems


def test_required_field_without_dtype(tmp_path: Path) -> None:
    entry = dynamic_entry(required=[*dynamic_entry()["required_fields"], "moldNo"])
    problems = _problems(tmp_path, {"dynamicDB": {"records": entry}, "staticDB": {}})
    assert any("records" in p and "moldNo" in p and "dtypes" in p for p in problems), problems


@pytest.mark.parametrize("dtype", sorted(DTYPE_KINDS))
def test_every_allowed_dtype_is_accepted(tmp_path: Path, dtype: str) -> None:
    entry = {"path": "database/staticDatabase/x.xlsx", "dtypes": {"a": dtype}}
    schema = load_schema(_write_raw(tmp_path, {"dynamicDB": {}, "staticDB": {"t": entry}}),
                         tmp_path)
    assert schema.table("t").dtype_of("a") == dtype


def test_spec_dtypes_are_allowed() -> None:
    for dtype in ("string", "Int64", "Float64", "boolean", "datetime64[ns]", "Int32", "Float32"):
        assert dtype in DTYPE_KINDS


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    broken_dynamic = dynamic_entry(dtypes={**dynamic_entry()["dtypes"], "weight": "float"})
    del broken_dynamic["sheet_name"]
    del broken_dynamic["extension"]
    other = dynamic_entry("po_history", name_start="po_")
    del other["path"]
    body = {
        "dynamicDB": {"records": broken_dynamic, "orders": other},
        "staticDB": {"itemInfo": {"dtypes": {"a": "string"}}, "moldInfo": {"path": "x.xlsx"}},
    }
    problems = _problems(tmp_path, body)
    expected = [
        ("records", "sheet_name"), ("records", "extension"), ("records", "'float'"),
        ("orders", "path"), ("itemInfo", "path"), ("moldInfo", "dtypes"),
    ]
    for table, key in expected:
        assert any(table in p and key in p for p in problems), (table, key, problems)
    assert len(problems) >= len(expected)


@pytest.mark.parametrize("escape", ["../../etc", "/etc", "database/../../outside"])
def test_schema_path_escaping_root_is_refused(tmp_path: Path, escape: str) -> None:
    root = tmp_path / "plant"
    root.mkdir()
    entry = dynamic_entry()
    entry["path"] = escape
    problems = _problems(root, {"dynamicDB": {"records": entry},
                                "staticDB": {"s": {"path": escape, "dtypes": {"a": "string"}}}})
    assert any("records" in p and "escapes" in p for p in problems), problems
    assert any("staticDB.s" in p and "escapes" in p for p in problems), problems


def test_wrong_value_types(tmp_path: Path) -> None:
    entry = dynamic_entry()
    entry["sheet_name"] = ""
    entry["required_fields"] = "recordDate"
    entry["name_start"] = 5
    problems = _problems(tmp_path, {"dynamicDB": {"records": entry, "x": []}, "staticDB": {}})
    assert any("sheet_name" in p for p in problems)
    assert any("required_fields" in p for p in problems)
    assert any("name_start" in p for p in problems)
    assert any("dynamicDB.x" in p for p in problems)


def test_collector_rejects_bad_schema_before_reading_data(tmp_path: Path) -> None:
    entry = dynamic_entry()
    del entry["dtypes"]
    _write_raw(tmp_path, {"dynamicDB": {"records": entry}, "staticDB": {}})
    with pytest.raises(SchemaError) as info:
        DataCollector(make_paths(tmp_path), max_retries=0)
    assert isinstance(info.value, ConfigError)
    assert "records" in info.value.message and "dtypes" in info.value.message
    assert not (tmp_path / "agents").exists()
