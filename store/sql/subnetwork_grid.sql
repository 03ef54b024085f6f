-- name: subnetwork_grid
-- One language's mask as a layers x heads grid (1 kept, 0 masked), per seed and prune setting.
SELECT seed, threshold, step, left(finetune_key, 12) AS finetune, model, layer,
       string_agg(CASE WHEN kept THEN '1' ELSE '0' END, ' ' ORDER BY head) AS heads
FROM subnetwork_masks
WHERE language = $language
GROUP BY ALL
ORDER BY seed, threshold, step, finetune, model DESC, layer;
