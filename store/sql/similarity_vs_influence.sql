-- name: similarity_vs_influence
-- Do languages with similar subnetworks rely on each other? Pearson and Spearman correlation of J(a, b) with M+[a, b] over pairs a != b, per variant; per seed, and their mean and sd (seed = 'mean').
WITH masks AS (
    SELECT * FROM subnetwork_masks WHERE task_key IN (SELECT task_key FROM tasks WHERE run_id = $run_id)
),
jaccard AS (
    SELECT a.seed, a.language AS language_a, b.language AS language_b,
           coalesce(count(*) FILTER (WHERE a.kept AND b.kept) / nullif(count(*) FILTER (WHERE a.kept OR b.kept), 0), 1.0) AS jaccard
    FROM masks AS a
    JOIN masks AS b
      ON a.finetune_key = b.finetune_key AND a.config = b.config AND a.layer = b.layer AND a.head = b.head
    WHERE a.language <> b.language
    GROUP BY a.seed, a.finetune_key, a.config, a.language, b.language
),
pairs AS (
    SELECT s.variant, s.seed, s.test_language, s.train_language, s.share, avg(j.jaccard) AS jaccard
    FROM language_shares($run_id, $k, false) AS s
    JOIN jaccard AS j ON j.seed = s.seed AND j.language_a = s.test_language AND j.language_b = s.train_language
    WHERE s.side = 'proponents'
    GROUP BY ALL
),
ranked AS ( -- average ranks, so ties count as in Spearman's definition
    SELECT *,
           rank() OVER (PARTITION BY variant, seed ORDER BY jaccard)
             + (count(*) OVER (PARTITION BY variant, seed, jaccard) - 1) / 2 AS jaccard_rank,
           rank() OVER (PARTITION BY variant, seed ORDER BY share)
             + (count(*) OVER (PARTITION BY variant, seed, share) - 1) / 2 AS share_rank
    FROM pairs
),
per_seed AS (
    SELECT variant, seed, corr(jaccard, share) AS pearson, corr(jaccard_rank, share_rank) AS spearman, count(*) AS pairs
    FROM ranked
    GROUP BY variant, seed
)
SELECT variant, coalesce(CAST(seed AS VARCHAR), 'mean') AS seed,
       avg(pearson) AS pearson, stddev_samp(pearson) AS pearson_sd,
       avg(spearman) AS spearman, stddev_samp(spearman) AS spearman_sd,
       avg(pairs) AS pairs, count(*) AS seeds
FROM per_seed
GROUP BY GROUPING SETS ((variant, per_seed.seed), (variant))
ORDER BY list_position(['full', 'subnetwork', 'sft'], variant), per_seed.seed NULLS LAST;
