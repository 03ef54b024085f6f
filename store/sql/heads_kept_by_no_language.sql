-- name: heads_kept_by_no_language
-- Heads that every language's subnetwork masks, per seed and prune setting.
SELECT seed, threshold, step, left(finetune_key, 12) AS finetune, model, layer, head,
       count(*) AS languages, max(importance) AS max_importance
FROM subnetwork_masks
GROUP BY ALL
HAVING NOT bool_or(kept)
ORDER BY seed, threshold, step, finetune, model DESC, layer, head;
