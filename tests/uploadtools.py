"""A plant's inputs put on object storage, for the tests and the benchmarks of a remote plant
(docs/storage.md): its source folders, its master files and its schema, whose master-file
paths are rewritten to the URLs they were put at. Nothing in a run imports this."""

from __future__ import annotations

import json
from pathlib import Path


def upload_plant_inputs(database: Path, url: str) -> dict[str, str]:
    """`database` (a plant's `database/` folder: dynamicDatabase/, the master files, the schema)
    put under `url`; the settings that name it all there."""
    import obstore

    from dpo.store.objects.client import open_store

    store = open_store(url)
    dynamic = database / "dynamicDatabase"
    for path in sorted(p for p in dynamic.rglob("*") if p.is_file()):
        obstore.put(store, f"dynamicDatabase/{path.relative_to(dynamic).as_posix()}",
                    path.read_bytes())
    schema = json.loads((database / "databaseSchemas.json").read_text(encoding="utf-8"))
    root = database.parent
    for entry in schema.get("staticDB", {}).values():
        source = root / entry["path"]
        obstore.put(store, f"static/{source.name}", source.read_bytes())
        entry["path"] = f"{url}/static/{source.name}"
    obstore.put(store, "databaseSchemas.json", json.dumps(schema, indent=1).encode())
    return {"dynamic_db_source_dir": f"{url}/dynamicDatabase",
            "databaseSchemas_path": f"{url}/databaseSchemas.json"}
