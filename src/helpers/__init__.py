"""helpers: the library behind the replication notebooks of McLaughlin et al. (2014).

Modules (one per step of the analysis):

- :mod:`helpers.paths`     -- every path of the project, anchored at the repository root
- :mod:`helpers.contract`  -- the data contract: column specs, :class:`Trial`, the validation error
- :mod:`helpers.tables`    -- deterministic, atomic writing of result tables
- :mod:`helpers.simulate`  -- the simulated prolonged-exposure trial with known truth
- :mod:`helpers.data`      -- loading and validating a user's own trial data
- :mod:`helpers.ruptures`  -- rupture-repair episodes and sudden changes
- :mod:`helpers.models`    -- chi-square tests, outcome regression, mixed growth models
- :mod:`helpers.pipeline`  -- the papermill runner behind ``make reproduce``

Submodules are imported on demand (``from helpers import simulate``) so that importing the
package stays cheap.
"""

__version__ = "0.1.0"
