"""Model families, one module each, found by name through the registry.

    from artforge.families import get_family, load_network, spec_for

Importing this package registers the built-in families; a new family is a new module here
(plus its tests) and one import line below.
"""
from artforge.families.registry import (Family, build_from_checkpoint, families, get_family, load_network,
                                        register, spec_for)

from artforge.families import critic, dcgan, music, poem, restore, style, stylegan, translate  # noqa: E402,F401  (importing them registers the built-ins)

__all__ = ["Family", "build_from_checkpoint", "families", "get_family", "load_network", "register", "spec_for"]
