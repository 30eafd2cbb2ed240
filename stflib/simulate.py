"""``stflib.simulate``: the simulator's public names under the import path other code and the design
contracts use (``stflib.simulate.WORLDS``, ``default_cohort``, ...). The code lives in the
``stflib.sim`` package; its docstring says what is simulated and which module owns what."""
from .sim import *  # noqa: F401,F403  (re-exports exactly stflib.sim.__all__)
from .sim import __all__  # noqa: F401
