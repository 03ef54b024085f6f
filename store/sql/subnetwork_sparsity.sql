-- name: subnetwork_sparsity
-- Per language: heads kept, sparsity, and the pruning split's accuracy of the full model and of the subnetwork, in one run's sweep point.
-- needs: prune
WITH final AS (
    SELECT task_key, arg_max(metric_value, step) FILTER (WHERE accepted) AS subnetwork_metric,
           arg_min(metric_value, step) AS full_metric, count(*) - 1 AS steps
    FROM prune_steps
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
    GROUP BY task_key
)
SELECT m.seed, m.threshold, m.step, left(m.finetune_key, 12) AS finetune, m.model, m.language,
       count(*) FILTER (WHERE m.kept) AS heads_kept, count(*) AS heads_total,
       1 - heads_kept / heads_total AS sparsity,
       any_value(f.full_metric) AS full_metric, any_value(f.subnetwork_metric) AS subnetwork_metric,
       subnetwork_metric / nullif(full_metric, 0) AS retention, any_value(f.steps) AS steps
FROM subnetwork_masks AS m JOIN final AS f USING (task_key)
GROUP BY ALL
ORDER BY m.seed, m.threshold, m.step, finetune, m.model DESC, m.language;
