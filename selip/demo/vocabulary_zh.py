"""Chinese phrase banks of the demo reports (``--language zh``), as
:mod:`selip.demo.vocabulary` is for English.

A finding reads ``在<location>表现为<appearance>`` (the authors' grammar); placeholders:
``{hyper}`` (a high-signal phrase), ``{seq}`` (``T2``, ``FLAIR``), ``{count}``, ``{size}``.
Rules the phrases keep: no ``，`` ``；`` ``。`` inside a finding (they separate findings),
no ``表现为`` outside the grammar, and no ``左`` / ``右`` but in the side.
"""

from __future__ import annotations

#: Side words per writer habit: ``左侧基底节区`` or ``左基底节区``.
SIDE_FORMS_ZH = ({"left": "左侧", "right": "右侧"}, {"left": "左", "right": "右"})
#: Region -> its names (the first is :data:`selip.demo.chinese.REGIONS_ZH`'s).
REGION_PHRASES_ZH: dict[str, tuple[str, ...]] = {
    "frontal lobe": ("额叶", "额部", "额叶皮层下"),
    "parietal lobe": ("顶叶", "顶部", "顶叶皮层下"),
    "temporal lobe": ("颞叶", "颞部", "颞叶皮层下"),
    "occipital lobe": ("枕叶", "枕部", "枕叶皮层下"),
    "basal ganglia": ("基底节区", "基底节", "豆状核", "壳核"),
    "thalamus": ("丘脑", "丘脑区"),
    "periventricular white matter": ("侧脑室旁白质", "侧脑室旁", "侧脑室体旁白质",
                                     "脑室周围白质"),
    "cerebellar hemisphere": ("小脑半球", "小脑"),
}

#: High-signal phrases used inside the tumour and plaque phrases.
HYPER_ZH = ("高信号", "稍高信号", "不均匀高信号", "{seq}高信号")
#: Canonical (English) appearance -> its Chinese phrasings.
APPEARANCE_PHRASES_ZH: dict[str, tuple[str, ...]] = {
    "hyperintense signal": ("高信号", "稍高信号", "片状高信号", "斑片状稍高信号", "异常高信号影",
                            "{seq}高信号"),
    "hypointense signal": ("低信号", "稍低信号", "片状低信号", "低信号影"),
    "isointense signal": ("等信号", "等信号影", "信号未见明显异常"),
    "restricted diffusion": ("弥散受限高信号", "弥散受限", "扩散受限", "DWI高信号（弥散受限）",
                             "明显弥散受限"),
    "hyperintense signal with surrounding oedema": (
        "{hyper}伴周围水肿", "团块状{hyper}伴瘤周水肿", "占位性{hyper}伴周围大片水肿",
        "{hyper}肿块伴周围水肿及轻度占位效应"),
    "mixed signal": ("混杂信号", "不均匀混杂信号", "信号不均", "混杂信号影"),
    "multiple hyperintense foci": ("多发斑点状{hyper}", "散在点状{hyper}",
                                   "{count}个类圆形{hyper}灶", "多发小斑片状{hyper}"),
}
#: Extra phrasings that only read right on one sequence.
SEQUENCE_PHRASES_ZH: dict[tuple[str, str], tuple[str, ...]] = {
    ("hyperintense signal", "t2"): ("长T2信号",),
    ("hypointense signal", "t1"): ("长T1信号",),
    ("hypointense signal", "adc"): ("ADC值减低", "ADC低信号"),
    ("isointense signal", "t1"): ("等T1信号",),
}

#: Size clauses (``{long}`` / ``{short}`` mm, ``{cm}`` cm) and how they join the appearance.
SIZE_FORMS_ZH = ("约{long}mm", "大小约{long}mm×{short}mm", "直径约{cm}cm", "最大径约{long}mm")
SIZE_JOINS_ZH = ("{size}{phrase}", "{phrase}（{size}）", "{size}的{phrase}")
FOCI_SIZE_FORMS_ZH = ("最大者约{long}mm", "较大者直径约{long}mm")

#: Hedged impressions, in parentheses after the appearance.
HEDGES_ZH: dict[str, tuple[str, ...]] = {
    "infarct": ("考虑急性脑梗死", "急性梗死可能", "提示急性缺血灶", "符合急性脑梗死表现"),
    "tumour": ("考虑胶质瘤", "肿瘤性病变可能", "考虑占位性病变", "高级别胶质瘤可能"),
    "demyelination": ("考虑脱髓鞘病变", "脱髓鞘改变可能", "符合脱髓鞘表现"),
}

#: Pertinent negatives (pieces without a location at the end of a sequence's text).
NEGATIVES_ZH = ("中线结构居中", "脑室系统未见扩张", "未见出血", "脑沟脑裂未见增宽", "未见占位效应")
TUMOUR_FALSE_NEGATIVES_ZH = ("中线结构居中", "未见占位效应")

#: Normal reports; each is in :data:`selip.similarity.config.DEFAULT_NORMAL_TEXTS`.
NORMAL_TEXTS_ZH = ("未见明显异常", "颅脑MRI平扫未见明显异常", "脑实质未见明确异常信号",
                   "颅内未见明显异常信号影", "脑实质内未见异常信号，脑室系统未见扩张")

NUMBER_WORDS_ZH = ("一", "两", "三", "四", "五", "六", "七", "八")
