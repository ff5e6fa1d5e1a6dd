"""Model families, one module each, found by name through the registry (artforge.registry).

    from artforge.registry import get_family, load_network, spec_for

Importing this package registers the built-in families (the registry imports it on its first
look-up); a new family is a new module here (plus its tests) and one import line below.
"""
from artforge.families import (critic, dcgan, diffusion, music, poem, restore, style, stylegan,  # noqa: F401
                               translate)  # (they register)
