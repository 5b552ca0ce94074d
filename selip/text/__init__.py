"""Report text: parsing findings, rendering reports, the tokenizer.

Below both ``selip.data`` and ``selip.similarity``, which import it; the modules are
imported on use (``selip.text.reports``, ``selip.text.tokenizer``), nothing here eagerly.
"""
