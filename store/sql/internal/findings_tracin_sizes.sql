-- name: findings_tracin_sizes
-- Each TracIn task of one sweep point: its seed and variant, and how many training and test examples of each language it scored.
SELECT t.seed, t.variant, x.role, x.language, count(*) AS examples
FROM influence_example_languages AS x
JOIN (SELECT DISTINCT task_key, seed, variant FROM proponents WHERE rank = 1) AS t USING (task_key)
WHERE x.task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
GROUP BY ALL
ORDER BY t.seed, t.variant, x.role, x.language;
