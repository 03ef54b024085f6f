-- name: specialization
-- Does the subnetwork rely more on in-language data than the full model (S+ subnetwork - full), and does SFT add to that (S+ sft - subnetwork)? Per seed, and their mean and sd (seed = 'mean').
-- needs: tracin
WITH per_seed AS (
    SELECT seed, test_language AS language,
           avg(share) FILTER (WHERE variant = 'full') AS "full",
           avg(share) FILTER (WHERE variant = 'subnetwork') AS subnetwork,
           avg(share) FILTER (WHERE variant = 'sft') AS sft
    FROM point_shares($run_id, $point, $k, false)
    WHERE side = 'proponents' AND train_language = test_language
    GROUP BY seed, test_language
)
SELECT language, seed_label(seed) AS seed,
       avg("full") AS s_plus_full, avg(subnetwork) AS s_plus_subnetwork, avg(sft) AS s_plus_sft,
       avg(subnetwork - "full") AS subnetwork_minus_full, stddev_samp(subnetwork - "full") AS subnetwork_minus_full_sd,
       avg(sft - subnetwork) AS sft_minus_subnetwork, stddev_samp(sft - subnetwork) AS sft_minus_subnetwork_sd,
       count(*) AS seeds
FROM per_seed
GROUP BY language, ROLLUP(per_seed.seed)
ORDER BY language, per_seed.seed NULLS LAST;
