-- name: final_accuracy
-- Accuracy per variant and language at each task's last epoch on one split, mean and spread over the tasks of a run (seeds).
-- needs: finetune
SELECT variant, language, avg(value) AS accuracy, stddev_samp(value) AS sd, count(*) AS n
FROM final_metrics
WHERE metric = 'accuracy'
  AND split = $split
  AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
GROUP BY variant, language
ORDER BY variant, language;
