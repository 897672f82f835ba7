-- recjob sql's run_catalog view: every published date joined to the catalog snapshot its run
-- used (the manifest's catalog_dt, in the runs table). `catalog` holds every snapshot, so a join
-- of recommendations with it repeats each row once per snapshot; join this view on both keys:
--   recommendations r JOIN run_catalog c ON c.dt = r.dt AND c.item_id = r.item_id
-- item_id is text, as in the published tables; the catalog's other columns follow.
-- Tables: runs, catalog
-- Output: dt, catalog_dt, item_id, <the catalog's other columns>
SELECT r.dt, c.dt AS catalog_dt, CAST(c.item_id AS VARCHAR) AS item_id, c.* EXCLUDE (dt, item_id)
FROM runs r
JOIN catalog c ON c.dt = r.catalog_dt
