"""Retrieval metrics: hand-built embeddings with known ranks, de-duplication, semantic and
clinical R@K, chance levels and the frequency prior."""

import csv
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from selip.metrics import (
    ClinicalTruth,
    clinical_truth,
    deduplicate,
    retrieval_metrics,
    write_retrieval_outputs,
)

# Images scored against one-hot texts: image i's score for text j is SCORES[i, j] after
# row normalisation (the order within a row is unchanged).
SCORES = F.normalize(torch.tensor([[0.1, 0.9, 0.5],
                                   [0.2, 0.8, 0.3],
                                   [0.7, 0.1, 0.4]]), dim=1)
# i2t: image 0's text is 3rd, image 1's 1st, image 2's 2nd  → ranks [3, 1, 2].
# t2i (columns): [.097 .228 .862] → 3; [.870 .912 .123] → 1; [.483 .342 .492] → 1.
REPORTS = torch.tensor([10, 11, 12])
SAMPLES = torch.tensor([100, 101, 102])


def permuted(**kwargs):
    return retrieval_metrics(SCORES, torch.eye(3), REPORTS, SAMPLES, **kwargs)


def matrix_lookup(matrix: torch.Tensor, offset: int = 0):
    """S lookup over report ids ``offset + row index`` of ``matrix``."""
    def lookup(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return matrix[(rows - offset)[:, None], (cols - offset)[None, :]]
    return lookup


def random_case(n: int = 40, reports: int = 15, dim: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    report_ids = torch.randint(0, reports, (n,), generator=gen)
    text_by_report = F.normalize(torch.randn(reports, dim, generator=gen), dim=1)
    text = text_by_report[report_ids]
    image = F.normalize(text + 0.8 * torch.randn(n, dim, generator=gen), dim=1)
    sample_ids = torch.randperm(n, generator=gen) + 1000
    s = torch.rand(reports, reports, generator=gen)
    s = (s + s.T) / 2
    s.fill_diagonal_(1.0)
    return image, text, report_ids, sample_ids, matrix_lookup(s)


def reference_ranks(image, text, report_ids, lookup, tau):
    """Loop-by-loop reference: (i2t, t2i, i2t semantic, t2i semantic) rank lists."""
    pool_ids = list(dict.fromkeys(report_ids.tolist()))
    pool = torch.stack([text[report_ids.tolist().index(r)] for r in pool_ids])
    rel = lookup(torch.tensor(pool_ids), torch.tensor(pool_ids)) >= tau
    slot = {r: i for i, r in enumerate(pool_ids)}
    i2t, i2t_sem, t2i, t2i_sem = [], [], [], []
    for q in range(image.shape[0]):
        scores = pool @ image[q]
        true = slot[int(report_ids[q])]
        hit = [j == true or bool(rel[true, j]) for j in range(len(pool_ids))]
        i2t.append(pessimistic_rank(scores.tolist(), [j == true for j in range(len(hit))]))
        i2t_sem.append(pessimistic_rank(scores.tolist(), hit))
    for q in range(len(pool_ids)):
        scores = (image @ pool[q]).tolist()
        i2t_ids = report_ids.tolist()
        t2i.append(pessimistic_rank(scores, [r == pool_ids[q] for r in i2t_ids]))
        t2i_sem.append(pessimistic_rank(scores, [bool(rel[q, slot[r]]) for r in i2t_ids]))
    return i2t, t2i, i2t_sem, t2i_sem


def pessimistic_rank(scores: list[float], hit: list[bool]) -> int:
    """1 + the misses scoring at least as high as the best hit (ties never help)."""
    best = max(s for s, h in zip(scores, hit, strict=True) if h)
    return 1 + sum(s >= best and not h for s, h in zip(scores, hit, strict=True))


def brute_force_chance(hits: list[list[bool]], k: int) -> float:
    """Mean over queries of P(a hit in the top k) over every order of the candidates."""
    orders = list(itertools.permutations(range(len(hits[0]))))
    found = [sum(any(row[c] for c in order[:k]) for order in orders) / len(orders)
             for row in hits]
    return sum(found) / len(found)


def test_perfect_retrieval():
    emb = torch.eye(4)
    result = retrieval_metrics(emb, emb, torch.arange(4), torch.arange(4))
    for key in ("i2t", "t2i"):
        assert all(result.metrics[f"{key}_R@{k}"] == 1.0 for k in (1, 5, 10))
        assert result.metrics[f"{key}_median_rank"] == 1.0
    assert not any("semantic" in key for key in result.metrics)


def test_permuted_known_ranks():
    result = permuted(ks=(1, 2, 5))
    assert result.image_to_text_ranks.tolist() == [3, 1, 2]
    assert result.text_to_image_ranks.tolist() == [3, 1, 1]
    m = result.metrics
    assert m["i2t_R@1"] == pytest.approx(1 / 3)
    assert m["i2t_R@2"] == pytest.approx(2 / 3)
    assert m["i2t_R@5"] == 1.0
    assert m["i2t_median_rank"] == 2.0
    assert m["t2i_R@1"] == pytest.approx(2 / 3)
    assert m["t2i_median_rank"] == 1.0


def test_median_is_lower_middle_for_even_counts():
    # Ranks [2, 1, 2, 1] over 2 texts: the lower middle value is 1.
    image = F.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [0.9, 1.0]]), dim=1)
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    result = retrieval_metrics(image, text, torch.tensor([0, 0, 1, 1]), torch.arange(4))
    assert result.image_to_text_ranks.tolist() == [2, 1, 2, 1]
    assert result.metrics["i2t_median_rank"] == 1.0


def test_ties_never_help_a_query():
    # Reports 0 and 1 have identical embeddings: each image ties its true text with the
    # other one, and the tied wrong candidate is counted ahead of the correct one.
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    result = retrieval_metrics(text, text, torch.tensor([0, 1, 2]), torch.arange(3))
    assert result.image_to_text_ranks.tolist() == [2, 2, 1]
    assert result.text_to_image_ranks.tolist() == [2, 2, 1]
    assert result.metrics["i2t_R@1"] == pytest.approx(1 / 3)
    assert result.image_to_text_topk[:, 0].tolist() == [0, 0, 2]  # lists: pool order


def test_ties_among_the_correct_candidates_do_not_count_against_a_query():
    # Report 7 is on images 0 and 1, which tie with each other and beat image 2.
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    result = retrieval_metrics(image, image, torch.tensor([7, 7, 8]), torch.arange(3))
    assert result.text_to_image_ranks.tolist() == [1, 1]
    assert result.image_to_text_ranks.tolist() == [1, 1, 1]


def test_a_constant_encoder_scores_at_or_below_chance():
    # A collapsed model: every image and text embedding is the same vector.
    report_ids = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
    constant = torch.full((8, 4), 0.5)
    lookup = matrix_lookup(torch.eye(7) + 0.9 * (torch.arange(7)[:, None] == 6 - torch.arange(7)))
    result = retrieval_metrics(constant, constant, report_ids, torch.arange(8), ks=(1, 5),
                               similarity=lookup)
    m = result.metrics
    for key in ("i2t", "t2i"):
        for k in (1, 5):
            assert m[f"{key}_R@{k}"] <= m[f"chance_{key}_R@{k}"]
            assert m[f"{key}_semantic_R@{k}"] <= m[f"chance_{key}_semantic_R@{k}"]
        assert m[f"{key}_R@1"] == 0.0
    assert m["i2t_median_rank"] == 7.0  # the worst of 7 texts, not 1
    assert result.image_to_text_ranks.tolist() == [7] * 8
    assert result.text_to_image_ranks.tolist() == [7, 8, 8, 8, 8, 8, 8]  # 8 - images + 1
    assert m["t2i_median_rank"] == 8.0


def test_topk_shapes_and_content():
    result = permuted(ks=(1, 2))
    assert result.image_to_text_topk.tolist() == [[11, 12], [11, 12], [10, 12]]
    assert torch.allclose(result.image_to_text_scores, SCORES.sort(dim=1, descending=True)
                          .values[:, :2])
    assert result.text_to_image_topk.tolist() == [[102, 101], [101, 100], [102, 100]]
    assert result.text_query_ids.tolist() == [10, 11, 12]
    assert result.image_query_ids.tolist() == [100, 101, 102]
    wide = permuted(ks=(1, 50))  # k is capped at the candidate count
    assert wide.image_to_text_topk.shape == (3, 3)
    assert wide.text_to_image_scores.shape == (3, 3)
    assert wide.image_to_text_topk.device.type == "cpu"


def test_duplicate_report_ids_share_one_pool_entry():
    # Pairs 0 and 1 carry report 7, pair 2 report 8. Pair 1's text embedding differs
    # (noise): the pool must take the first one (e0).
    image = F.normalize(torch.tensor([[1.0, 2.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    result = retrieval_metrics(image, text, torch.tensor([7, 7, 8]), torch.tensor([0, 1, 2]))
    assert result.metrics["num_texts"] == 2
    assert result.text_query_ids.tolist() == [7, 8]
    # image 0 scores report 8 (.894) above report 7 (.447); images 1 and 2 rank 1.
    assert result.image_to_text_ranks.tolist() == [2, 1, 1]
    # query 7: image 1 (score 1) is the best of its two correct images → rank 1.
    assert result.text_to_image_ranks.tolist() == [1, 1]
    assert result.text_to_image_topk[0, 0].item() == 1
    assert result.image_to_text_topk.tolist() == [[8, 7], [7, 8], [8, 7]]


def test_duplicate_sample_ids_counted_once():
    image, text, report_ids, sample_ids, lookup = random_case()
    clean = retrieval_metrics(image, text, report_ids, sample_ids, similarity=lookup)
    pad = torch.tensor([3, 0, 17])  # DDP padding repeats the first samples at the end
    padded = retrieval_metrics(torch.cat([image, image[pad]]), torch.cat([text, text[pad]]),
                               torch.cat([report_ids, report_ids[pad]]),
                               torch.cat([sample_ids, sample_ids[pad]]), similarity=lookup)
    assert padded.metrics == clean.metrics
    assert torch.equal(padded.image_to_text_topk, clean.image_to_text_topk)
    assert torch.equal(padded.text_to_image_topk, clean.text_to_image_topk)
    assert padded.metrics["num_queries_i2t"] == 40


def test_matches_loop_reference():
    image, text, report_ids, sample_ids, lookup = random_case(seed=1)
    result = retrieval_metrics(image, text, report_ids, sample_ids, similarity=lookup,
                               semantic_threshold=0.7)
    i2t, t2i, i2t_sem, t2i_sem = reference_ranks(image, text, report_ids, lookup, 0.7)
    assert result.image_to_text_ranks.tolist() == i2t
    assert result.text_to_image_ranks.tolist() == t2i
    for key, ranks in (("i2t_", i2t), ("t2i_", t2i), ("i2t_semantic_", i2t_sem),
                       ("t2i_semantic_", t2i_sem)):
        for k in (1, 5, 10):
            expected = sum(r <= k for r in ranks) / len(ranks)
            assert result.metrics[f"{key}R@{k}"] == pytest.approx(expected)
    assert result.metrics["i2t_median_rank"] == float(torch.tensor(i2t).median())
    assert result.metrics["i2t_semantic_R@1"] > result.metrics["i2t_R@1"]  # case is useful


def test_semantic_recall():
    # Each image lies on the other report's text; S(0, 1) = 0.8.
    image = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    text = torch.eye(2)
    lookup = matrix_lookup(torch.tensor([[1.0, 0.8], [0.8, 1.0]]), offset=5)
    args = (image, text, torch.tensor([5, 6]), torch.tensor([0, 1]))
    result = retrieval_metrics(*args, similarity=lookup)
    for key in ("i2t", "t2i"):
        assert result.metrics[f"{key}_R@1"] == 0.0
        assert result.metrics[f"{key}_semantic_R@1"] == 1.0
    strict = retrieval_metrics(*args, similarity=lookup, semantic_threshold=0.9)
    assert strict.metrics["i2t_semantic_R@1"] == 0.0
    assert strict.metrics["t2i_semantic_R@1"] == 0.0


def test_exact_match_always_counts_as_semantic_hit():
    # A lookup that (wrongly) gives S = 0 everywhere, diagonal included.
    zero = matrix_lookup(torch.zeros(3, 3), offset=10)
    result = permuted(similarity=zero)
    for key in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert result.metrics[f"{key}_semantic_R@{k}"] == result.metrics[f"{key}_R@{k}"]


def test_chance_values():
    m = permuted(ks=(1, 2, 5)).metrics
    assert m["chance_i2t_R@1"] == pytest.approx(1 / 3)
    assert m["chance_i2t_R@2"] == pytest.approx(2 / 3)
    assert m["chance_i2t_R@5"] == 1.0
    assert m["num_texts"] == 3 and m["num_queries_i2t"] == 3
    # Text→image with report 7 on 2 of 3 images: P(hit@1) = 2/3 and 1/3 → mean 1/2.
    emb = torch.eye(3)
    dup = retrieval_metrics(emb, emb, torch.tensor([7, 7, 8]), torch.arange(3), ks=(1, 2))
    assert dup.metrics["chance_t2i_R@1"] == pytest.approx(0.5)
    assert dup.metrics["chance_t2i_R@2"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert dup.metrics["chance_i2t_R@1"] == pytest.approx(0.5)


def test_frequency_prior_ranks_texts_by_training_count():
    # Pool 10, 11, 12 with 1, 5 and 0 training pairs (12 is past the end: unseen, 0).
    counts = torch.tensor([0] * 10 + [1, 5])
    m = permuted(ks=(1, 2, 5), train_counts=counts).metrics
    # the prior ranks 11, 10, 12 for every image: the images' texts rank 2, 1, 3.
    assert m["prior_i2t_R@1"] == pytest.approx(1 / 3)
    assert m["prior_i2t_R@2"] == pytest.approx(2 / 3)
    assert m["prior_i2t_R@5"] == 1.0
    assert m["prior_i2t_median_rank"] == 2.0
    assert not any(key.startswith("prior_t2i") for key in m)
    # the prior needs no model: perfect embeddings leave it unchanged
    emb = torch.eye(3)
    perfect = retrieval_metrics(emb, emb, REPORTS, SAMPLES, ks=(1, 2, 5), train_counts=counts)
    assert {k: v for k, v in perfect.metrics.items() if k.startswith("prior")} == \
        {k: v for k, v in m.items() if k.startswith("prior")}
    assert "prior_i2t_R@1" not in permuted().metrics  # only with training counts


def test_ties_in_the_frequency_prior_never_help_a_query():
    # 10 and 11 both seen twice: each ranks 2nd; an all-unseen pool ranks everything last.
    tied = permuted(ks=(1, 2), train_counts=torch.tensor([0] * 10 + [2, 2])).metrics
    assert tied["prior_i2t_R@1"] == 0.0
    assert tied["prior_i2t_R@2"] == pytest.approx(2 / 3)
    unseen = permuted(ks=(1, 2), train_counts=torch.zeros(5, dtype=torch.long)).metrics
    assert unseen["prior_i2t_R@2"] == 0.0 and unseen["prior_i2t_median_rank"] == 3.0


def test_frequency_prior_semantic_recall():
    # S(10, 12) = 0.8: image 2 (report 12) is a semantic hit at 10, which the prior puts
    # 2nd; images 0 and 1 keep their exact ranks 2 and 1.
    s = torch.eye(3)
    s[0, 2] = s[2, 0] = 0.8
    m = permuted(ks=(1, 2), train_counts=torch.tensor([0] * 10 + [1, 5]),
                 similarity=matrix_lookup(s, offset=10)).metrics
    assert m["prior_i2t_semantic_R@1"] == pytest.approx(1 / 3)
    assert m["prior_i2t_semantic_R@2"] == 1.0
    assert m["prior_i2t_R@2"] == pytest.approx(2 / 3)


def test_semantic_chance_is_the_exact_expectation_of_a_random_order():
    # Report 0 is on images 0 and 1; S(1, 2) = 0.9, every other pair 0.
    s = torch.eye(4)
    s[1, 2] = s[2, 1] = 0.9
    report_ids = torch.tensor([0, 0, 1, 2, 3])
    emb = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    m = retrieval_metrics(emb, emb, report_ids, torch.arange(5), ks=(1, 2, 3),
                          similarity=matrix_lookup(s)).metrics
    relevant = (s >= 0.5).tolist()
    i2t_hits = [relevant[r] for r in report_ids.tolist()]  # (N, T) over the pool 0..3
    t2i_hits = [[relevant[q][r] for r in report_ids.tolist()] for q in range(4)]  # (T, N)
    for k in (1, 2, 3):
        assert m[f"chance_i2t_semantic_R@{k}"] == pytest.approx(brute_force_chance(i2t_hits, k))
        assert m[f"chance_t2i_semantic_R@{k}"] == pytest.approx(brute_force_chance(t2i_hits, k))
    # one hit per query and K over the pool: the exact chance and certainty
    assert m["chance_i2t_semantic_R@1"] == pytest.approx((1 + 1 + 2 + 2 + 1) / 4 / 5)
    assert "chance_i2t_semantic_R@1" not in retrieval_metrics(emb, emb, report_ids,
                                                               torch.arange(5)).metrics


def test_semantic_chance_of_one_hit_is_the_exact_chance():
    zero = matrix_lookup(torch.zeros(3, 3), offset=10)
    m = permuted(ks=(1, 2, 5), similarity=zero).metrics
    for key in ("i2t", "t2i"):
        for k in (1, 2, 5):
            assert m[f"chance_{key}_semantic_R@{k}"] == pytest.approx(m[f"chance_{key}_R@{k}"])


def test_chunk_size_does_not_change_results():
    image, text, report_ids, sample_ids, lookup = random_case(seed=2)
    small = retrieval_metrics(image, text, report_ids, sample_ids, similarity=lookup,
                              chunk_size=1)
    large = retrieval_metrics(image, text, report_ids, sample_ids, similarity=lookup,
                              chunk_size=1024)
    assert small.metrics == large.metrics
    assert torch.equal(small.image_to_text_topk, large.image_to_text_topk)
    assert torch.equal(small.text_to_image_topk, large.text_to_image_topk)
    assert torch.allclose(small.image_to_text_scores, large.image_to_text_scores, atol=1e-6)


def test_deduplicate_keeps_first_occurrence_in_order():
    ids = torch.tensor([5, 3, 5, 9, 3])
    values = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])
    kept_ids, kept_values = deduplicate(ids, values)
    assert kept_ids.tolist() == [5, 3, 9]
    assert kept_values.flatten().tolist() == [0.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="tensor 0"):
        deduplicate(ids, torch.zeros(4))


def test_write_outputs(tmp_path):
    result = permuted(ks=(1, 2), train_counts=torch.tensor([0] * 10 + [1, 5]),
                      similarity=matrix_lookup(torch.eye(3), offset=10))
    paths = write_retrieval_outputs(result, tmp_path / "eval", prefix="val")
    assert [p.name for p in paths] == ["val_metrics.json", "val_i2t_topk.csv",
                                       "val_t2i_topk.csv"]
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(p.name for p in paths)
    written = json.loads(paths[0].read_text())
    assert written == result.metrics
    assert {"prior_i2t_R@1", "prior_i2t_semantic_R@2", "prior_i2t_median_rank",
            "chance_i2t_semantic_R@1", "chance_t2i_semantic_R@2"} <= set(written)
    with paths[1].open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["query_sample_id", "position", "report_id", "score"]
    assert len(rows) == 3 * 2
    assert rows[0]["query_sample_id"] == "100" and rows[0]["report_id"] == "11"
    assert math.isclose(float(rows[0]["score"]), SCORES[0, 1].item(), rel_tol=1e-6)
    with paths[2].open() as handle:
        header = next(csv.reader(handle))
    assert header == ["query_report_id", "position", "sample_id", "score"]
    assert not any("text" in column for column in header + list(rows[0]))


@pytest.mark.parametrize(("change", "message"), [
    ({"image_emb": torch.zeros(3, 4)}, "image_emb and text_emb"),
    ({"report_ids": torch.tensor([1, 2])}, "report_ids"),
    ({"sample_ids": torch.tensor([0.0, 1.0, 2.0])}, "sample_ids"),
    ({"ks": ()}, "ks"),
    ({"ks": (0, 5)}, "ks"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"image_emb": torch.full((3, 3), math.nan)}, "finite"),
    ({"similarity": lambda rows, cols: torch.ones(1, 1)}, "similarity returned"),
    ({"train_counts": torch.tensor([1, -1])}, "train_counts"),
    ({"train_counts": torch.ones(2, 2)}, "train_counts"),
    ({"train_counts": torch.tensor([1.0, math.nan])}, "train_counts"),
    ({"truth": ClinicalTruth(torch.zeros(3), torch.zeros(3, 1, dtype=torch.long))},
     "truth.pair_classes"),
    ({"truth": ClinicalTruth(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))},
     "truth.report_classes"),
])
def test_invalid_inputs(change, message):
    kwargs = {"image_emb": SCORES, "text_emb": torch.eye(3), "report_ids": REPORTS,
              "sample_ids": SAMPLES} | change
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**kwargs)


def test_empty_input():
    empty = torch.zeros(0, 3)
    ids = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="N = 0"):
        retrieval_metrics(empty, empty, ids, ids)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image, text, report_ids, sample_ids, lookup = random_case(n=64, seed=3)
    cpu = retrieval_metrics(image, text, report_ids, sample_ids, chunk_size=7)
    gpu = retrieval_metrics(image.cuda(), text.cuda(), report_ids.cuda(), sample_ids.cuda(),
                            chunk_size=7)
    assert gpu.metrics == pytest.approx(cpu.metrics)
    assert gpu.image_to_text_topk.device.type == "cpu"
    s = lookup(torch.arange(15), torch.arange(15)).cuda()
    gpu_sem = retrieval_metrics(image.cuda(), text.cuda(), report_ids.cuda(), sample_ids.cuda(),
                                similarity=matrix_lookup(s))
    assert "t2i_semantic_R@5" in gpu_sem.metrics


def test_the_end_of_run_summary_puts_each_figure_beside_chance_and_prior():
    from selip.metrics import retrieval_summary

    lines = retrieval_summary({"val/i2t_R@1": 0.08, "val/chance_i2t_R@1": 0.03,
                               "val/prior_i2t_R@1": 0.33, "val/t2i_R@1": 0.1,
                               "val/chance_t2i_R@1": 0.05, "val/loss": 3.4,
                               "train/loss": 9.0})
    assert lines[0].split() == ["retrieval", "model", "chance", "prior"]
    assert lines[1].split() == ["i2t_R@1", "0.0800", "0.0300", "0.3300"]
    assert lines[2].split() == ["t2i_R@1", "0.1000", "0.0500", "-"]  # no prior for t2i
    assert lines[3].split() == ["val/loss", "3.4000"] and len(lines) == 4
    assert retrieval_summary({"val/f1": 0.5}) == [f"  {'val/f1':28s}   0.5000"]


# -- clinical R@K: hits by the truth of each pair (the demo's truth.jsonl) ------------------
# Four pairs, one-hot texts of reports 10..13; image i's score for text j is CLINICAL[i, j].
# Truth classes by sample id: 0, 1, 0, 2 — reports 10 and 12 word the same findings apart.
CLINICAL = F.normalize(torch.tensor([[0.1, 0.2, 0.9, 0.3],
                                     [0.8, 0.5, 0.1, 0.2],
                                     [0.1, 0.2, 0.3, 0.9],
                                     [0.2, 0.1, 0.3, 0.8]]), dim=1)
CLINICAL_REPORTS = torch.tensor([10, 11, 12, 13])
CLINICAL_TRUTH = clinical_truth([0, 1, 0, 2], [[]] * 10 + [[0], [1], [0], [2]])


def clinical(**kwargs):
    return retrieval_metrics(CLINICAL, torch.eye(4), CLINICAL_REPORTS, torch.arange(4),
                             truth=CLINICAL_TRUTH, **kwargs)


def truth_hits(truth: ClinicalTruth, report_ids: list[int], sample_ids: list[int]
               ) -> list[list[bool]]:
    """Loop reference: (N, T) image i and pool text t describe the same findings (or t is
    i's own report), the pool in order of first appearance."""
    pool = list(dict.fromkeys(report_ids))
    pair_class = truth.pair_classes.tolist()
    carried = truth.report_classes.tolist()
    return [[r == t or (pair_class[s] >= 0 and pair_class[s] in carried[t]) for t in pool]
            for s, r in zip(sample_ids, report_ids, strict=True)]


def test_clinical_hits_are_texts_of_the_same_findings():
    result = clinical(ks=(1, 2, 5))
    m = result.metrics
    # exact ranks [4, 2, 2, 1]; image 0 ranks report 12 (its findings, other words) first
    assert result.image_to_text_ranks.tolist() == [4, 2, 2, 1]
    assert m["i2t_R@1"] == pytest.approx(1 / 4)
    # clinical: image 0 → 12 first (rank 1); image 1 → only 11 (rank 2); image 2 → 12 behind
    # 13 (rank 2); image 3 → 13 (rank 1)
    assert m["i2t_clinical_R@1"] == pytest.approx(2 / 4)
    assert m["i2t_clinical_R@2"] == 1.0
    hits = truth_hits(CLINICAL_TRUTH, CLINICAL_REPORTS.tolist(), list(range(4)))
    t2i = [pessimistic_rank(CLINICAL[:, t].tolist(), [row[t] for row in hits]) for t in range(4)]
    for k in (1, 2, 5):
        assert m[f"t2i_clinical_R@{k}"] == pytest.approx(sum(r <= k for r in t2i) / 4)
    assert m["t2i_clinical_R@1"] > m["t2i_R@1"]  # the case is useful
    assert not any("semantic" in key for key in m)  # independent of S
    assert "i2t_clinical_R@1" not in permuted().metrics  # only with a truth


def test_a_text_of_several_truths_is_a_hit_for_each_and_unknown_pairs_count_exactly():
    # Report 11 is carried by pairs of classes 1 and 0: a clinical hit for the images of
    # class 0 too. Pair 2's truth is unknown (-1): only its own report is its hit.
    several = clinical_truth([0, 1, -1, 2], [[]] * 10 + [[0], [0, 1], [0], [2]])
    m = retrieval_metrics(CLINICAL, torch.eye(4), CLINICAL_REPORTS, torch.arange(4), ks=(1, 2),
                          truth=several).metrics
    hits = truth_hits(several, CLINICAL_REPORTS.tolist(), list(range(4)))
    assert hits[0] == [True, True, True, False] and hits[2] == [False, False, True, False]
    i2t = [pessimistic_rank(CLINICAL[i].tolist(), hits[i]) for i in range(4)]
    assert i2t == [1, 2, 2, 1]
    assert m["i2t_clinical_R@1"] == pytest.approx(2 / 4)
    # sample and report ids past the tables are unknown: clinical R@K is exact R@K then
    far = retrieval_metrics(CLINICAL, torch.eye(4), CLINICAL_REPORTS + 100,
                            torch.arange(4) + 100, truth=CLINICAL_TRUTH).metrics
    for key in ("i2t", "t2i"):
        assert far[f"{key}_clinical_R@1"] == far[f"{key}_R@1"]
        assert far[f"chance_{key}_clinical_R@1"] == pytest.approx(far[f"chance_{key}_R@1"])


def test_a_constant_encoder_scores_clinical_recall_at_or_below_chance():
    constant = torch.full((8, 4), 0.5)
    report_ids = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
    truth = clinical_truth([0, 0, 1, 0, 2, 1, 3, 0], [[0], [1], [0], [2], [1], [3], [0]])
    m = retrieval_metrics(constant, constant, report_ids, torch.arange(8), ks=(1, 5),
                          truth=truth).metrics
    for key in ("i2t", "t2i"):
        for k in (1, 5):
            assert m[f"{key}_clinical_R@{k}"] <= m[f"chance_{key}_clinical_R@{k}"]
        assert m[f"{key}_clinical_R@1"] == 0.0


def test_clinical_chance_is_the_exact_expectation_of_a_random_order():
    report_ids = [0, 0, 1, 2, 3]
    truth = clinical_truth([0, 0, 1, 0, 2], [[0], [1, 2], [0], [2]])
    emb = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    m = retrieval_metrics(emb, emb, torch.tensor(report_ids), torch.arange(5), ks=(1, 2, 3),
                          truth=truth).metrics
    i2t_hits = truth_hits(truth, report_ids, list(range(5)))  # (N, T)
    t2i_hits = [list(column) for column in zip(*i2t_hits, strict=True)]  # (T, N)
    for k in (1, 2, 3):
        assert m[f"chance_i2t_clinical_R@{k}"] == pytest.approx(brute_force_chance(i2t_hits, k))
        assert m[f"chance_t2i_clinical_R@{k}"] == pytest.approx(brute_force_chance(t2i_hits, k))
    # images 0, 1, 3 (class 0) have texts 0 and 2 of 4, image 2 texts 1, image 4 texts 1 and 3
    assert m["chance_i2t_clinical_R@1"] == pytest.approx((3 * 2 + 1 + 2) / 4 / 5)


def test_the_frequency_prior_ranks_clinical_hits_too():
    # training counts 10: 1, 11: 5, 12: 3, 13: 0 → the prior ranks 11, 12, 10, 13
    counts = torch.tensor([0] * 10 + [1, 5, 3, 0])
    m = clinical(ks=(1, 2, 5), train_counts=counts).metrics
    # clinical hits: image 0 {10, 12} → rank 2; image 1 {11} → 1; image 2 as image 0 → 2;
    # image 3 {13} → 4
    assert m["prior_i2t_clinical_R@1"] == pytest.approx(1 / 4)
    assert m["prior_i2t_clinical_R@2"] == pytest.approx(3 / 4)
    assert m["prior_i2t_R@2"] == pytest.approx(2 / 4)  # exact: ranks 3, 1, 2, 4
    assert not any(key.startswith("prior_t2i") for key in m)


def test_the_summary_puts_clinical_recall_beside_its_chance_and_prior(tmp_path):
    from selip.metrics import retrieval_summary

    result = clinical(ks=(1, 5), train_counts=torch.tensor([0] * 10 + [1, 5, 3, 0]))
    lines = retrieval_summary({f"val/{k}": v for k, v in result.metrics.items()})
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    for k in (1, 5):
        assert len(rows[f"i2t_clinical_R@{k}"]) == 3 and "-" not in rows[f"i2t_clinical_R@{k}"]
        assert rows[f"t2i_clinical_R@{k}"][2] == "-"  # no prior for text→image
    assert not any(key.startswith(("chance_", "prior_")) for key in rows)
    [path, *_] = write_retrieval_outputs(result, tmp_path)
    assert {"i2t_clinical_R@1", "chance_t2i_clinical_R@5",
            "prior_i2t_clinical_R@5"} <= set(json.loads(path.read_text()))
