-- name: run_scored_training_examples
-- The fewest training examples any TracIn task of a run scored (k must be below it); NULL without TracIn.
SELECT min(examples) AS examples FROM (
    SELECT task_key, count(*) AS examples FROM influence_examples
    WHERE role = 'train' AND task_key IN (SELECT task_key FROM run_tasks($run_id))
    GROUP BY task_key
);
