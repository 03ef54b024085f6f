-- name: heads_kept_by_no_language
-- Heads that every language's subnetwork masks, per seed and prune setting, of one run's sweep point.
-- needs: prune
SELECT seed, threshold, step, left(finetune_key, 12) AS finetune, model, layer, head,
       count(*) AS languages, max(importance) AS max_importance
FROM subnetwork_masks
WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
GROUP BY ALL
HAVING NOT bool_or(kept)
ORDER BY seed, threshold, step, finetune, model DESC, layer, head;
