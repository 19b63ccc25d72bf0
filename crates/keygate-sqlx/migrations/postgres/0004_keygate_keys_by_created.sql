-- keygate: list_keys without an owner (an operator listing every key, with
-- status and environment filters): newest first, paged by a cursor, walked
-- through this index instead of sorting the whole table.

CREATE INDEX keygate_keys_by_created ON keygate_keys (created_at DESC, id DESC);
