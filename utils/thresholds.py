"""The binarization thresholds of the IoU metrics, shared by the config checks and metrics.py."""


def parse_threshold(threshold):
    """'median' | 'fixed:v' (0 <= v <= 1) | 'max_ratio:r' (0 < r <= 1) -> (mode, number or None).

    fixed:v switches on the pixels whose min-max normalized score is >= v; max_ratio:r those >= r
    times the map's largest normalized score (1); median those >= the median normalized score.
    Anything else raises ValueError.
    """
    mode, _, number = str(threshold).partition(":")
    if mode == "median" and not number:
        return mode, None
    if mode in ("fixed", "max_ratio") and number:
        try:
            v = float(number)
        except ValueError:
            v = -1.0
        if (0 <= v <= 1) if mode == "fixed" else (0 < v <= 1):
            return mode, v
    raise ValueError(f"threshold must be median, fixed:v (0 <= v <= 1) or max_ratio:r "
                     f"(0 < r <= 1); got {threshold!r}")
