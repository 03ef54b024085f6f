-- name: validity_effects
-- Each test example's loss without each ablated language minus its loss with every language, of one sweep point (influence validity).
SELECT seed, ablated, language, example_id, loss - full_loss AS loss_effect
FROM ablation_examples
WHERE mode = 'without' AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
ORDER BY seed, ablated, language, example_id;
