"""What a selection did, at a glance: `gotd-stream report`, before a GPU-day is spent training on it.

    build.py   the numbers (report.json): OT distances from the target to the selection, to a sample of the pool
               and to a random subset of it; score and length histograms; the composition by a field; the
               method's assumption (the pool resembles the pre-training data) checked against a reference sample;
               the best and worst kept records and the first ones below the cut
    html.py    index.html: the same numbers with their plots embedded as PNG (matplotlib, Agg), no server

Both import numpy, POT and matplotlib inside their functions, so `gotd-stream --help` stays instant.
"""
