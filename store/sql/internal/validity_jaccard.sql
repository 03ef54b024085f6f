-- name: validity_jaccard
-- Jaccard of every ordered pair of the multilingual model's subnetworks of one sweep point, per seed (influence validity).
SELECT seed, language_a, language_b, avg(jaccard) AS jaccard
FROM subnetwork_pairs
WHERE model = 'multilingual' AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
GROUP BY ALL;
