-- name: findings_thresholds
-- The prune thresholds of one sweep point's subnetworks (one, unless the point mixes settings).
SELECT DISTINCT threshold FROM subnetwork_masks WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point));
