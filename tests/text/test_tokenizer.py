"""Unknown tokens: measured over the reports, named, and optionally added to the
vocabulary (the packaged English MiniLM does not know most Chinese characters)."""

from __future__ import annotations

import pytest

from selip.text.tokenizer import UnknownTokens, load_tokenizer, tokenize, unknown_tokens

CHINESE = ["在左侧基底节区表现为高信号，在右侧额叶表现为低信号", "在右侧丘脑表现为高信号"]
ENGLISH = ["left frontal lobe: hyperintense signal; right thalamus: restricted diffusion"]


@pytest.fixture(scope="module")
def minilm():
    return load_tokenizer(None)


def test_the_packaged_minilm_does_not_know_left_and_right_in_chinese(minilm):
    found = unknown_tokens(CHINESE, minilm)
    assert found.share > 0.5
    assert {"左", "右", "侧", "基", "底", "节", "表", "现", "为"} <= set(found.characters)
    assert found.characters["右"] == 2 and found.characters["左"] == 1
    message = found.message()
    assert "左" in message and "text_encoder.model" in message
    assert "add_unknown_tokens" in message


def test_english_reports_have_no_unknown_tokens(minilm):
    found = unknown_tokens(ENGLISH, minilm)
    assert found.unknown == 0 and found.share == 0.0 and not found.characters
    assert found.total > 5


def test_added_tokens_make_left_and_right_distinct(minilm):
    added = sorted(unknown_tokens(CHINESE, minilm).characters)
    extended = load_tokenizer(None, added)
    assert unknown_tokens(CHINESE, extended).unknown == 0
    ids, _ = tokenize(["在左侧", "在右侧"], extended, 16)
    assert not ids[0].equal(ids[1])  # before: both [CLS] [UNK] [UNK] [UNK] [SEP]
    base, _ = tokenize(["在左侧", "在右侧"], minilm, 16)
    assert base[0].equal(base[1])
    # the added ids follow the tokenizer's own, in the order given
    assert extended.convert_tokens_to_ids(added) == list(range(len(minilm),
                                                                len(minilm) + len(added)))


def test_no_texts_share_zero(minilm):
    assert unknown_tokens([], minilm) == UnknownTokens(0, 0, unknown_tokens([], minilm).characters)
    assert unknown_tokens([], minilm).share == 0.0
