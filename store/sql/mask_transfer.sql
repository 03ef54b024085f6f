-- name: mask_transfer
-- Accuracy of language's test set under mask_language's subnetwork (the fine-tuned model, last epoch), next to the accuracy under its own mask; per seed, and their mean and sd (seed = 'mean').
-- needs: mask_transfer
WITH transfer AS (
    SELECT * FROM mask_transfer WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
per_seed AS (
    SELECT t.seed, t.language, t.mask_language, t.heads_kept, t.examples, t.accuracy,
           own.accuracy AS own_accuracy, own.accuracy - t.accuracy AS own_minus_this
    FROM transfer AS t
    JOIN transfer AS own ON own.task_key = t.task_key AND own.language = t.language AND own.mask_language = t.language
)
SELECT language, mask_language, seed_label(seed) AS seed,
       avg(accuracy) AS accuracy, stddev_samp(accuracy) AS accuracy_sd,
       avg(own_accuracy) AS own_accuracy, avg(own_minus_this) AS own_minus_this, stddev_samp(own_minus_this) AS own_minus_this_sd,
       avg(heads_kept) AS heads_kept, avg(examples) AS examples, count(*) AS seeds
FROM per_seed
GROUP BY language, mask_language, ROLLUP(per_seed.seed)
ORDER BY language, mask_language, per_seed.seed NULLS LAST;
