"""Benchmarks and evaluations as modules: each runs only from its ``main()`` (``python -m pipeline.bench.X``).

``perf`` is ``make bench``; ``inproc``, ``passthrough`` and ``health`` are its subprocesses. The rest are
the entry points of ``scripts/`` and of the reproduce lines in ``benchmarks/*.md``. Importing any module
here starts nothing, so doctest collection stays quick and quiet.
"""
