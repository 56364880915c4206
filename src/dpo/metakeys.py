"""Keys of the Parquet key-value metadata dpo writes beside the pandas metadata."""

META_HASH = b"dpo.content_hash"  # content hash of the table, recorded when written
META_ROWS = b"dpo.rows"
META_TABLE = b"dpo.table"
META_SOURCES = b"dpo.sources"

__all__ = ["META_HASH", "META_ROWS", "META_SOURCES", "META_TABLE"]
