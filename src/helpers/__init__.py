"""helpers: the library behind the replication notebooks of McLaughlin et al. (2014).

One module per step. The modules, by layer, are the README's "Architecture" table (imports point
down it; ``tests/test_imports.py`` checks the table against the code).

Submodules are imported on demand (``from helpers import simulate``) so that importing the
package stays cheap.
"""

__version__ = "0.1.0"
