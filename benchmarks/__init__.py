"""Benchmarks of shufflenet_fused: fused vs reference, at op, block and model level.

Run ``python -m benchmarks --help`` (or ``python benchmarks/run.py``). Modules:

- ``cases``: configurations, shapes and the list of cases to run;
- ``variants``: the four callables of a case (reference / fused, eager / torch.compile);
- ``timing``: timers, interleaved measurement, peak memory;
- ``progress``: a text progress bar on stderr;
- ``machine``: what the results were measured on;
- ``report``: console table, JSON, Markdown and the PNG plot;
- ``run``: the command line.
"""
