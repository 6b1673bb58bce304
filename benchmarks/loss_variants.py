"""The ten loss variants the benchmarks compare: name -> (base_loss, svr_mode, svr_bilateral)."""

VARIANTS: dict[str, tuple[str, str, bool]] = {
    "infonce": ("infonce", "none", True),
    "infonce+static-uni": ("infonce", "static", False),
    "infonce+static-bi": ("infonce", "static", True),
    "infonce+dynamic-uni": ("infonce", "dynamic", False),
    "infonce+dynamic-bi": ("infonce", "dynamic", True),
    "siglip": ("siglip", "none", True),
    "siglip+static-uni": ("siglip", "static", False),
    "siglip+static-bi": ("siglip", "static", True),
    "siglip+dynamic-uni": ("siglip", "dynamic", False),
    "siglip+dynamic-bi": ("siglip", "dynamic", True),
}
