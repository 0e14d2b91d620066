"""helpers: the library behind the replication notebooks of McLaughlin et al. (2014).

Modules by layer (imports point down this list; README "Architecture"):

- constants: :mod:`helpers.contract`, :mod:`helpers.paper`, :mod:`helpers.paths`
- data: :mod:`helpers.data`, :mod:`helpers.simulate`, :mod:`helpers.tables`, :mod:`helpers.describe`
- detection: :mod:`helpers.sudden`, :mod:`helpers.episodes`, :mod:`helpers.agreement`
- models: :mod:`helpers.ols`, :mod:`helpers.models`, :mod:`helpers.mixed`, :mod:`helpers.growth`
- studies: :mod:`helpers.multiverse`, :mod:`helpers.power`, :mod:`helpers.power_summary`,
  :mod:`helpers.study`, :mod:`helpers.calibration`
- presentation and running: :mod:`helpers.figures`, :mod:`helpers.report`, :mod:`helpers.pipeline`,
  :mod:`helpers.notebook`

Submodules are imported on demand (``from helpers import simulate``) so that importing the
package stays cheap.
"""

__version__ = "0.1.0"
