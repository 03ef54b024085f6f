-- name: subnetwork_grid
-- One language's mask as a layers x heads grid (1 kept, 0 masked), per seed and prune setting, of one run's sweep point.
-- needs: prune
SELECT seed, threshold, step, left(finetune_key, 12) AS finetune, model, layer,
       string_agg(CASE WHEN kept THEN '1' ELSE '0' END, ' ' ORDER BY head) AS heads
FROM subnetwork_masks
WHERE language = $language AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
GROUP BY ALL
ORDER BY seed, threshold, step, finetune, model DESC, layer;
