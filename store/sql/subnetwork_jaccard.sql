-- name: subnetwork_jaccard
-- Jaccard similarity of kept heads for every ordered pair of languages, per seed and prune setting, of the multilingual model's subnetworks (model = multilingual) or the monolingual models' (only), in one run's sweep point.
-- needs: prune
SELECT seed, threshold, step, left(finetune_key, 12) AS finetune, model, language_a, language_b, both_kept, either_kept, jaccard
FROM subnetwork_pairs
WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
ORDER BY seed, threshold, step, finetune, model DESC, language_a, language_b;
