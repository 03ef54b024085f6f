-- name: influence_validity
-- Does TracIn predict the effect of removing a language? Per variant, seed and (t, s): P, the mean over t's TracIn test examples of the summed TracInCP of s's scored training examples (only the tracin.train_per_language TracIn scored); E, t's mean test loss without s minus with every language (and accuracy); M+ share and Jaccard; Pearson and Spearman of P with E over the seed's pairs.
-- needs: ablation, tracin
WITH point AS (SELECT task_key FROM point_tasks($run_id, $point)),
per_test AS (
    SELECT * FROM validity_tests($run_id, $point, $k)
),
predicted AS (
    SELECT seed, variant, test_language, train_language, avg(score) AS predicted, avg(share) AS share,
           count(*) AS tracin_test_examples
    FROM per_test GROUP BY ALL
),
measured AS (
    SELECT seed, language AS test_language, ablated AS train_language, loss_effect, accuracy_effect, examples
    FROM ablation_effects
    WHERE mode = 'without' AND task_key IN (SELECT task_key FROM point)
),
jaccard AS ( -- of the multilingual model's subnetworks
    SELECT seed, language_a AS test_language, language_b AS train_language, avg(jaccard) AS jaccard
    FROM subnetwork_pairs
    WHERE model = 'multilingual' AND task_key IN (SELECT task_key FROM point)
    GROUP BY ALL
),
pairs AS (
    SELECT p.variant, p.seed, p.test_language, p.train_language, p.test_language = p.train_language AS diagonal,
           p.predicted, m.loss_effect, m.accuracy_effect, p.share, j.jaccard,
           p.tracin_test_examples, m.examples AS test_examples
    FROM predicted AS p
    JOIN measured AS m USING (seed, test_language, train_language)
    LEFT JOIN jaccard AS j USING (seed, test_language, train_language)
),
ranked AS ( -- average ranks, so ties count as in Spearman's definition
    SELECT *,
           rank() OVER (PARTITION BY variant, seed ORDER BY predicted)
             + (count(*) OVER (PARTITION BY variant, seed, predicted) - 1) / 2 AS predicted_rank,
           rank() OVER (PARTITION BY variant, seed ORDER BY loss_effect)
             + (count(*) OVER (PARTITION BY variant, seed, loss_effect) - 1) / 2 AS effect_rank
    FROM pairs
)
SELECT variant, seed, test_language, train_language, diagonal, predicted, loss_effect, accuracy_effect, share, jaccard,
       corr(predicted, loss_effect) OVER seed_pairs AS pearson,
       corr(predicted_rank, effect_rank) OVER seed_pairs AS spearman,
       count(*) OVER seed_pairs AS pairs, tracin_test_examples, test_examples
FROM ranked
WINDOW seed_pairs AS (PARTITION BY variant, seed)
ORDER BY variant_position(variant), seed, test_language, train_language;
