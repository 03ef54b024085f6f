-- name: final_accuracy
-- Accuracy per variant and language at each task's last epoch on one split, mean and spread over the tasks of a run (seeds).
WITH run_metrics AS (
    SELECT m.*, max(m.epoch) OVER (PARTITION BY m.task_key, m.variant) AS last_epoch
    FROM metrics AS m
    WHERE m.metric = 'accuracy'
      AND m.split = $split
      AND m.task_key IN (SELECT task_key FROM tasks WHERE run_id = $run_id)
)
SELECT variant, language, avg(value) AS accuracy, stddev_samp(value) AS sd, count(*) AS n
FROM run_metrics
WHERE epoch IS NOT DISTINCT FROM last_epoch
GROUP BY variant, language
ORDER BY variant, language;
