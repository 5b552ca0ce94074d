"""The one question a training step asks about S — ``batch_rows`` — answered by every kind
of lookup: a table looks the rows up, the per-batch mode takes what the loader workers
computed and checks, once per fit, that they scored this step's columns. The task only
asks; a fourth kind would only answer."""

from __future__ import annotations

import inspect

import pytest
import torch

from selip.similarity import PRESETS
from selip.similarity.per_batch import PerBatchSimilarity, column_checksum, parse_reports
from selip.similarity.table import load_or_build

TEXTS = ["FLAIR: left frontal lobe: hyperintense signal.",
         "FLAIR: right frontal lobe: hyperintense signal.",
         "DWI: left thalamus: restricted diffusion.",
         "No abnormality detected."]


def test_a_table_answers_with_its_lookup(tmp_path):
    table, _ = load_or_build(tmp_path, TEXTS, PRESETS["english"], progress=False)
    ids, columns = torch.tensor([0, 2]), torch.tensor([0, 2, 1, 3])
    rows = table.batch_rows({"report_id": ids}, ids, columns)
    torch.testing.assert_close(rows, table.lookup(ids, columns), rtol=0, atol=0)


def test_the_per_batch_mode_answers_with_the_workers_rows_checked_once():
    config = PRESETS["english"]
    similarity = PerBatchSimilarity(parse_reports(TEXTS, config), config, "key")
    ids, columns = torch.tensor([0, 2]), torch.tensor([0, 2, 1, 3])
    computed = torch.from_numpy(similarity.rows(ids.numpy(), columns.numpy()))
    batch = {"similarity_bits": computed.half().view(torch.int16),
             "similarity_check": column_checksum(columns).repeat(2)}
    similarity.start_fit()
    torch.testing.assert_close(similarity.batch_rows(batch, ids, columns), computed)
    # an evaluation batch carries no rows: looked up
    torch.testing.assert_close(similarity.batch_rows({}, ids, columns), computed)
    similarity.start_fit()  # a new fit checks its first batch again
    with pytest.raises(RuntimeError, match="other reports than this step gathered"):
        similarity.batch_rows(batch, ids, torch.tensor([3, 1, 2, 0]))


def test_the_pretraining_task_never_asks_which_kind_it_holds():
    from selip.tasks import pretrain

    source = inspect.getsource(pretrain)
    for word in ("per_batch", "PerBatchSimilarity", "similarity_bits", "similarity_mode",
                 "column_checksum"):
        assert word not in source, word
    assert "batch_rows(batch, ids, all_ids)" in source
