-- name: subnetwork_jaccard
-- Jaccard similarity of kept heads for every ordered pair of languages, per seed and prune setting.
SELECT a.seed, a.threshold, a.step, left(a.finetune_key, 12) AS finetune,
       a.language AS language_a, b.language AS language_b,
       count(*) FILTER (WHERE a.kept AND b.kept) AS both_kept,
       count(*) FILTER (WHERE a.kept OR b.kept) AS either_kept,
       coalesce(both_kept / nullif(either_kept, 0), 1.0) AS jaccard -- two empty masks are equal
FROM subnetwork_masks AS a
JOIN subnetwork_masks AS b
  ON a.finetune_key = b.finetune_key AND a.config = b.config AND a.layer = b.layer AND a.head = b.head
GROUP BY ALL
ORDER BY a.seed, a.threshold, a.step, finetune, language_a, language_b;
