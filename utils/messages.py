"""Error messages that list many items: the first few, then how many more (one line however many there are)."""


def listing(items, n=10, sep=', '):
    """``a, b, c, ... (7 more)``: the first ``n`` of ``items`` joined by ``sep``."""
    items = list(items)
    more = f"{sep}... ({len(items) - n} more)" if len(items) > n else ''
    return sep.join(str(item) for item in items[:n]) + more
