-- name: findings_full_model
-- The sanity gates' numbers, per seed and language of one sweep point: the full model's test accuracy at the last epoch, its test examples, the majority-class rate, how many labels there are and how many it predicted at least once.
WITH final AS (
    SELECT * FROM final_metrics
    WHERE variant = 'full' AND split = 'test' AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
labels AS (
    SELECT f.task_key, e.language, e.label, count(*) AS examples
    FROM (SELECT DISTINCT task_key FROM final) AS f
    JOIN task_params AS t USING (task_key)
    JOIN examples AS e ON e.task_key = t.inputs ->> 'data' AND e.split = 'test'
    GROUP BY ALL
),
classes AS (
    SELECT task_key, language, sum(examples) AS examples, max(examples) / sum(examples) AS majority_rate
    FROM labels GROUP BY ALL
)
SELECT f.seed, f.language,
       any_value(f.value) FILTER (WHERE f.metric = 'accuracy') AS accuracy,
       CAST(any_value(c.examples) AS INTEGER) AS examples, any_value(c.majority_rate) AS majority_rate,
       count(*) FILTER (WHERE f.metric LIKE 'predicted_label_%') AS labels,
       count(*) FILTER (WHERE f.metric LIKE 'predicted_label_%' AND f.value > 0) AS labels_predicted
FROM final AS f JOIN classes AS c USING (task_key, language)
GROUP BY f.seed, f.language
ORDER BY f.seed, f.language;
