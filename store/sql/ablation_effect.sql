-- name: ablation_effect
-- The measured effect of leaving language s out of fine-tuning (mode without) or training on s alone (only): per test language t, the test loss and accuracy minus the full model's; per seed, and their mean and sd (seed = 'mean').
-- needs: ablation
WITH per_seed AS (
    SELECT mode, ablated, language, seed, avg(loss_effect) AS loss_effect, avg(accuracy_effect) AS accuracy_effect,
           avg(loss) AS loss, avg(full_loss) AS full_loss
    FROM ablation_effects
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
    GROUP BY mode, ablated, language, seed
)
SELECT mode, ablated, language, seed_label(seed) AS seed,
       avg(loss_effect) AS loss_effect, stddev_samp(loss_effect) AS loss_effect_sd,
       avg(accuracy_effect) AS accuracy_effect, stddev_samp(accuracy_effect) AS accuracy_effect_sd,
       avg(loss) AS loss, avg(full_loss) AS full_loss, count(*) AS seeds
FROM per_seed
GROUP BY mode, ablated, language, ROLLUP(per_seed.seed)
ORDER BY mode DESC, ablated, language, per_seed.seed NULLS LAST;
