-- name: report_masks
-- The head masks the report draws: each language's subnetwork in one sweep point, of its first seed.
WITH point_masks AS (
    SELECT * FROM subnetwork_masks WHERE model = 'multilingual' AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
)
SELECT language, layer, head, kept FROM point_masks WHERE seed = (SELECT min(seed) FROM point_masks);
