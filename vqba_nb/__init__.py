__version__ = "0.1.0"
# The public API for using the quantizers as a library (hand-written: nbdev exports every other module from nbs/).
# Importing it loads torch and the quantizers only: no plotting, analysis, sweep or benchmark code.
from .quantizers import QuantOut, Quantizer, CodebookQuantizer, IdentityQuantizer, VQEMAQuantizer
from .ba import BAQuantizer
from .ba_soft import BASoftQuantizer, BalancedQuantizer
from .baselines import KMeansQuantizer, GumbelQuantizer
from .fsq import FSQQuantizer
from .rotation import RotationQuantizer
from .simvq import SimVQQuantizer
from .cvq import CVQQuantizer
from .registry import QUANTIZERS, build_quantizer, quantizer_keys
