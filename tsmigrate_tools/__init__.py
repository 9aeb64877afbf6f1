"""The project's own tools beside the product: the kill sweep, the soak, the conversion benchmark and the
application simulator they drive. Nothing an operator's run loads imports from here."""
