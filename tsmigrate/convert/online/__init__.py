"""The online path: the hypertable built beside the legacy table while the application writes, then swapped in.

Layers, bottom to top: ``state`` (names, where a conversion stands), ``build`` (the table beside, its indexes, the
copy), ``capture`` (change capture and replay), ``swap`` (the swap, swap-back, verify, drop-legacy), ``driver``
(the whole path); ``__main__`` is the operator's command (``python -m tsmigrate.online``).
"""

from .driver import OnlineReport, convert_online
from .state import chooses_online, conversion_state, legacy_tables, online_tables
from .swap import drop_legacy, swap_back, verify

__all__ = [
    "OnlineReport",
    "chooses_online",
    "conversion_state",
    "convert_online",
    "drop_legacy",
    "legacy_tables",
    "online_tables",
    "swap_back",
    "verify",
]
