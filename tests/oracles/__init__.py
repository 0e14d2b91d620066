"""Independent references of the tests: loop implementations of the written rules and the
one-at-a-time routes the batched code replaced. Nothing in ``src/helpers`` imports them.

- :mod:`oracles.ruptures`: rupture detection, sudden changes and classification, one
  participant at a time in plain Python.
- :mod:`oracles.power`: one replication of the power study at a time, on the loop detection,
  statsmodels and the table route of the growth model.
- :mod:`oracles.imputation`: the pattern imputation's Gibbs sampler with one row of
  categories per client, as its docstring reads.
"""
