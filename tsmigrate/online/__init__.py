"""The operator's command for an online conversion, kept where the documents print it
(``python -m tsmigrate.online status|verify|swap-back|drop-legacy``); the code is in tsmigrate/convert/online/."""

from ..convert.online import (
    chooses_online,
    conversion_state,
    convert_online,
    drop_legacy,
    legacy_tables,
    online_tables,
    swap_back,
    verify,
)

__all__ = [
    "chooses_online",
    "conversion_state",
    "convert_online",
    "drop_legacy",
    "legacy_tables",
    "online_tables",
    "swap_back",
    "verify",
]
