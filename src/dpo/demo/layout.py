"""The demo plant's tables: headers as the plant exports them, and the schema dpo reads them by
(the seed's databaseSchemas.json, with the plant's own dtypes)."""

from __future__ import annotations

from collections.abc import Sequence

_DEFECTS = ("itemBlackSpot", "itemOilDeposit", "itemScratch", "itemCrack", "itemSinkMark",
            "itemShort", "itemBurst", "itemBend", "itemStain", "otherNG")
# Share of rows with a non-blank count, per defect column (otherNG is the usual catch-all).
_DEFECT_RATE = (0.10, 0.13, 0.10, 0.01, 0.004, 0.004, 0.002, 0.002, 0.003, 0.75)
MONTHLY_HEADER = ["recordDate", "workingShift", "machineNo", "machineCode", "itemCode",
                  "itemName", "colorChanged", "moldChanged", "machineChanged", "poNote",
                  "moldNo", "moldShot", "moldCavity", "itemTotalQuantity", "itemGoodQuantity",
                  *_DEFECTS, "plasticResine", "plasticResineCode", "plasticResineLot",
                  "colorMasterbatch", "colorMasterbatchCode", "additiveMasterbatch",
                  "additiveMasterbatchCode"]
_MATERIALS = ["plasticResinCode", "plasticResin", "plasticResinQuantity", "colorMasterbatchCode",
              "colorMasterbatch", "colorMasterbatchQuantity", "additiveMasterbatchCode",
              "additiveMasterbatch", "additiveMasterbatchQuantity"]
PO_HEADER = ["poReceivedDate", "poNo", "poETA", "itemCode", "itemName", "itemQuantity",
             *_MATERIALS]
# Static table -> (file, sheet, columns), as the plant names them (note "resineInfo.xlsx").
_STATIC: dict[str, tuple[str, str, list[str]]] = {
    "itemCompositionSummary": ("itemCompositionSummary.xlsx", "itemComposition",
                               ["itemCode", "itemName", *_MATERIALS]),
    "itemInfo": ("itemInfo.xlsx", "itemInfo", ["itemCode", "itemName"]),
    "machineInfo": ("machineInfo.xlsx", "machineInfo", [
        "machineNo", "machineCode", "machineName", "manufacturerName", "machineTonnage",
        "changedTime", "layoutStartDate", "layoutEndDate", "previousMachineCode"]),
    "moldInfo": ("moldInfo.xlsx", "moldInfo", [
        "moldNo", "moldName", "moldCavityStandard", "moldSettingCycle", "machineTonnage",
        "acquisitionDate", "itemsWeight", "runnerWeight"]),
    "moldSpecificationSummary": ("moldSpecificationSummary.xlsx", "moldSpecification",
                                 ["itemCode", "itemName", "itemType", "moldNum", "moldList"]),
    "resinInfo": ("resineInfo.xlsx", "resinInfo",
                  ["resinCode", "resinName", "resinType", "colorType"]),
}
_INTS = {"moldShot", "moldCavity", "itemTotalQuantity", "itemGoodQuantity", *_DEFECTS,
         "itemQuantity", "machineTonnage", "changedTime", "moldCavityStandard",
         "moldSettingCycle", "moldNum"}
_FLOATS = {"plasticResinQuantity", "colorMasterbatchQuantity", "additiveMasterbatchQuantity",
           "itemsWeight", "runnerWeight"}
_DATES = {"recordDate", "poReceivedDate", "poETA", "layoutStartDate", "layoutEndDate",
          "acquisitionDate"}


def _dtypes(columns: Sequence[str], table: str = "") -> dict[str, str]:
    """Schema dtypes; moldInfo's tonnage is text there ("50/100"), machineInfo's an int."""
    ints = _INTS - {"machineTonnage"} if table == "moldInfo" else _INTS
    return {c.replace("Resine", "Resin"): "datetime64[ns]" if c in _DATES else "Float64"
            if c in _FLOATS else "Int64" if c in ints else "string" for c in columns}


def _dynamic(folder: str, start: str, ext: str, sheet: str, cols: list[str]) -> dict[str, object]:
    return {"path": f"database/dynamicDatabase/{folder}", "name_start": start, "extension": ext,
            "sheet_name": sheet, "required_fields": list(cols), "dtypes": _dtypes(cols)}


# The plant's databaseSchemas.json (same content as the real one); written by generate_plant.
SCHEMA: dict[str, dict[str, dict[str, object]]] = {
    "dynamicDB": {
        "productRecords": _dynamic("monthlyReports_history", "monthlyReports_", ".xlsb",
                                   "Sheet1", MONTHLY_HEADER),
        "purchaseOrders": _dynamic("purchaseOrders_history", "purchaseOrder_", ".xlsx",
                                   "poList", PO_HEADER),
    },
    "staticDB": {name: {"path": f"database/staticDatabase/{file}", "dtypes": _dtypes(cols, name)}
                 for name, (file, _, cols) in _STATIC.items()},
}

# Plastic resins: code (number, or text when the supplier's code has letters) -> name.
