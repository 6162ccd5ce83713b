-- SQLite's BOOLEAN flags became INTEGER in this step; PostgreSQL keeps BOOLEAN, which the hub reads
-- through the same `Flag` type. Nothing to change.
SELECT 1;
