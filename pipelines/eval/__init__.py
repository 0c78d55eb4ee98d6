"""Benchmark evaluation for ``vqa eval``; pure (no models, no torch) except :mod:`.runner`.

- ``items``: :class:`EvalItem`, :class:`Skipped` and the normalisers every layout shares;
- ``files``: reading annotation files, finding a record's video;
- one module per benchmark layout: ``native``, ``lvhaystack``, ``videomme``, ``mlvu``,
  ``longvideobench``, ``egoschema``, ``nextqa``; ``detect`` guesses the layout (``--format auto``),
  ``load`` reads any of them (:func:`load_items`); ``subtitles`` turns a benchmark's subtitles into the
  transcript the indexer reads;
- ``metrics`` (temporal precision / recall / F1 / hit, accuracy), ``baselines`` (uniform, top-K);
- ``results`` (the results file), ``run`` (the resumable loop, :func:`run_eval`), ``summary``
  (per-method summary and table);
- ``runner``: the binding to the product (index, search, answer), one call per (item, method).
"""
