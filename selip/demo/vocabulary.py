"""English phrase banks of the demo reports: the ways a radiologist words one finding.

Each finding is written from its truth (:mod:`selip.demo.truth`): a location (side +
region) and a canonical appearance (:data:`selip.demo.lesions.SIGNATURES`), worded
with one of the phrases below. Placeholders: ``{side}`` (``left`` / ``right``),
``{region}``, ``{seq}`` (the sequence header, ``FLAIR``), ``{hyper}`` (a noun phrase for
high signal), ``{count}`` (a number word), ``{size}`` / ``{phrase}`` / ``{hedge}``.

Rules the phrases keep, so that the report grammar and the laterality flip hold:

- no ``;`` (it separates findings) and no ``:`` (it ends a location) in any phrase;
- the only words ``left`` / ``right`` are the side;
- every appearance of a visible finding is a noun phrase, so a size or hedge can follow.
"""

from __future__ import annotations

#: Region -> ways of naming it (the first is the canonical name of
#: :data:`selip.demo.lesions.REGIONS`). A phrase holding ``{side}`` places the side
#: itself; the others take the writer's location form.
REGION_PHRASES: dict[str, tuple[str, ...]] = {
    "frontal lobe": ("frontal lobe", "frontal region", "frontal lobe white matter",
                     "frontal lobe parenchyma"),
    "parietal lobe": ("parietal lobe", "parietal region", "parietal lobe white matter",
                      "parietal lobe parenchyma"),
    "temporal lobe": ("temporal lobe", "temporal region", "temporal lobe parenchyma"),
    "occipital lobe": ("occipital lobe", "occipital region", "occipital lobe parenchyma"),
    "basal ganglia": ("basal ganglia", "lentiform nucleus", "putamen", "basal ganglia region"),
    "thalamus": ("thalamus", "thalamic region", "thalamic nuclei"),
    "periventricular white matter": (
        "periventricular white matter", "periventricular region",
        "white matter adjacent to the {side} lateral ventricle",
        "deep white matter beside the {side} lateral ventricle"),
    "cerebellar hemisphere": ("cerebellar hemisphere", "cerebellum", "hemicerebellum",
                              "cerebellar hemispheric white matter"),
}
#: How a writer places the side (one habit per exam).
LOCATION_FORMS = ("{side} {region}", "{region} on the {side}", "{side}-sided {region}",
                  "{region} ({side})")

#: Noun phrases for high signal, used inside the tumour and plaque phrases.
HYPER_NOUNS = ("hyperintense signal", "high signal", "increased signal", "{seq} hyperintensity",
               "{seq}-bright signal")
#: Canonical appearance -> its phrasings. Isointense findings are not visible (no size, no
#: hedge), so they need not be noun phrases.
APPEARANCE_PHRASES: dict[str, tuple[str, ...]] = {
    "hyperintense signal": ("hyperintense signal", "high signal", "increased signal intensity",
                            "{seq} hyperintensity", "abnormal high signal",
                            "signal hyperintensity", "{seq}-bright signal"),
    "hypointense signal": ("hypointense signal", "low signal", "decreased signal",
                           "hypointensity", "reduced signal intensity", "dark signal"),
    "isointense signal": ("isointense signal", "isointense", "iso-intense signal",
                          "inconspicuous", "no conspicuous signal change"),
    "restricted diffusion": ("restricted diffusion", "diffusion restriction",
                             "reduced diffusivity", "restricted diffusion on b1000"),
    "hyperintense signal with surrounding oedema": (
        "mass of {hyper} with surrounding oedema", "mass of {hyper} and perilesional oedema",
        "heterogeneous mass of {hyper} with vasogenic oedema",
        "oedema surrounding a mass of {hyper}", "mass of {hyper}, oedema and mild mass effect"),
    "mixed signal": ("mixed signal", "heterogeneous signal", "mixed signal intensity",
                     "variable signal", "heterogeneous mixed signal"),
    "multiple hyperintense foci": ("multiple foci of {hyper}", "{count} foci of {hyper}",
                                   "several small foci of {hyper}",
                                   "scattered ovoid foci of {hyper}",
                                   "multifocal {hyper} plaques"),
}
#: Extra phrasings that only read right on one sequence: (appearance, sequence) -> phrases.
SEQUENCE_PHRASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("hypointense signal", "adc"): ("low ADC values", "reduced ADC"),
    ("hyperintense signal", "t2"): ("T2 prolongation",),
    ("hypointense signal", "t1"): ("T1 hypointensity",),
}

#: Size clauses: ``{long}`` / ``{short}`` in mm, ``{cm}`` the long side in cm.
SIZE_FORMS = ("{long} mm", "{long} x {short} mm", "{cm} cm", "approximately {long} mm")
#: How a size joins the appearance.
SIZE_JOINS = ("{phrase}, {size}", "{phrase} measuring {size}", "{phrase} ({size})")
#: Size clauses of plaques (the largest focus).
FOCI_SIZE_FORMS = ("up to {long} mm", "largest {long} mm", "the largest {long} mm")

#: Hedged impressions per kind: after the appearance (``high signal, likely acute infarct``).
HEDGES_AFTER: dict[str, tuple[str, ...]] = {
    "infarct": ("likely acute infarct", "consistent with acute infarction",
                "suggestive of acute ischaemia", "in keeping with an acute infarct"),
    "tumour": ("likely glioma", "suggestive of a neoplasm", "consistent with a tumour",
               "suspicious for high-grade glioma"),
    "demyelination": ("consistent with demyelination", "suggestive of demyelinating disease",
                      "in keeping with demyelinating plaques"),
}
#: Hedged impressions before the appearance (``probable acute infarct with high signal``).
HEDGES_BEFORE: dict[str, tuple[str, ...]] = {
    "infarct": ("probable acute infarct with", "likely recent infarct with",
                "presumed acute infarct with"),
    "tumour": ("probable neoplasm,", "likely glioma,", "presumed tumour,"),
    "demyelination": ("probable demyelination,", "likely demyelinating plaques,"),
}

#: Pertinent negatives, written as findings without a location at the end of a line.
NEGATIVES = ("no midline shift", "no haemorrhage", "ventricles normal in size",
             "no hydrocephalus", "no extra-axial collection", "no mass effect")
#: Negatives a tumour exam cannot state (its mass pushes the surrounding brain).
TUMOUR_FALSE_NEGATIVES = ("no midline shift", "no mass effect")

#: Normal reports: every sequence of a normal exam is paired with its one sentence. Each
#: is in :data:`selip.similarity.config.DEFAULT_NORMAL_TEXTS` (recognised as normal).
NORMAL_TEXTS_EN = ("No abnormality detected.", "Normal MRI of the brain.",
                   "No acute intracranial abnormality.", "Unremarkable MRI of the brain.",
                   "No focal lesion. Ventricles and sulci are normal for age.")

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
