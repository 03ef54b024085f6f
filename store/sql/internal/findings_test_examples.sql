-- name: findings_test_examples
-- Per TracIn test example of one sweep point: how many of its top-k proponents come from each training language, by TracInCP (checkpoint NULL) or by each checkpoint's term (per_checkpoint).
WITH examples AS (
    SELECT * FROM influence_example_languages WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
)
SELECT p.seed, p.variant, p.checkpoint, te.example_id AS test_id, te.language AS test_language,
       tr.language AS train_language, count(*) AS proponents
FROM point_proponents($run_id, $point, $k, $per_checkpoint) AS p
JOIN examples AS te ON te.example_no = p.test_no AND te.role = 'test'
JOIN examples AS tr ON tr.example_no = p.train_no AND tr.role = 'train'
WHERE p.side = 'proponents'
GROUP BY ALL
ORDER BY p.seed, p.variant, p.checkpoint, test_id, train_language;
