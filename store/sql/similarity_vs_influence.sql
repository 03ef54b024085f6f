-- name: similarity_vs_influence
-- Do languages with similar subnetworks rely on each other? Pearson and Spearman correlation of J(a, b) with M+[a, b] over pairs a != b, per variant; per seed, and their mean and sd (seed = 'mean').
-- needs: prune, tracin
WITH jaccard AS (
    SELECT * FROM subnetwork_pairs
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point)) AND language_a <> language_b AND model = 'multilingual'
),
pairs AS (
    SELECT s.variant, s.seed, s.test_language, s.train_language, s.share, avg(j.jaccard) AS jaccard
    FROM point_shares($run_id, $point, $k, false) AS s
    JOIN jaccard AS j ON j.seed = s.seed AND j.language_a = s.test_language AND j.language_b = s.train_language
    WHERE s.side = 'proponents'
    GROUP BY ALL
),
ranked AS ( -- average ranks, so ties count as in Spearman's definition; a share is a mean of proponent counts that
            -- DuckDB sums in any order, so two equal shares can differ in their last bits: they tie rounded
    SELECT *,
           rank() OVER (PARTITION BY variant, seed ORDER BY jaccard)
             + (count(*) OVER (PARTITION BY variant, seed, jaccard) - 1) / 2 AS jaccard_rank,
           rank() OVER (PARTITION BY variant, seed ORDER BY round(share, 12))
             + (count(*) OVER (PARTITION BY variant, seed, round(share, 12)) - 1) / 2 AS share_rank
    FROM pairs
),
per_seed AS (
    SELECT variant, seed, corr(jaccard, share) AS pearson, corr(jaccard_rank, share_rank) AS spearman, count(*) AS pairs
    FROM ranked
    GROUP BY variant, seed
)
SELECT variant, seed_label(seed) AS seed,
       avg(pearson) AS pearson, stddev_samp(pearson) AS pearson_sd,
       avg(spearman) AS spearman, stddev_samp(spearman) AS spearman_sd,
       avg(pairs) AS pairs, count(*) AS seeds
FROM per_seed
GROUP BY variant, ROLLUP(per_seed.seed)
ORDER BY variant_position(variant), per_seed.seed NULLS LAST;
