-- name: validity_tests
-- Each TracIn test example's summed TracInCP score and proponent share per training language, of one sweep point (influence validity).
SELECT seed, variant, test_no, test_language, train_language, score, share
FROM validity_tests($run_id, $point, $k)
ORDER BY variant, seed, test_no, train_language;
