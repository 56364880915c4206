"""Keys of the Parquet key-value metadata dpo writes beside the pandas metadata, and the
format of the content hash it records. Stdlib only: the no-change run imports it."""

META_HASH = b"dpo.content_hash"  # content hash of the table, recorded when written
META_ROWS = b"dpo.rows"
META_TABLE = b"dpo.table"
META_SOURCES = b"dpo.excel.discover"

# A content hash is HASH_PREFIX + hex (frames.content_hash, over dpo.transform.rowhash's row hashes);
# one without a prefix was made by the legacy algorithm (frames.legacy_content_hash) and is
# still verified by it. Changing dpo.transform.rowhash changes ROW_HASH_VERSION, which also drops
# every cache of row hashes (incremental.TableCache).
ROW_HASH_VERSION = 2
HASH_PREFIX = f"r{ROW_HASH_VERSION}:"

__all__ = ["HASH_PREFIX", "META_HASH", "META_ROWS", "META_SOURCES", "META_TABLE", "ROW_HASH_VERSION"]
