"""Every family's hooks are "module:attribute" names: each one imports and is what its command expects."""
import pytest

from artforge.options import Command
from artforge.registry import Evaluator, Family, families
from artforge.training.loop import TrainCommand

KINDS = {"trainer": TrainCommand, "client": Command, "evaluator": Evaluator}


@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_every_hook_of_a_built_in_family_loads_and_has_its_type(family):
    for hook, kind in KINDS.items():
        if getattr(family, hook):
            assert isinstance(family.hook(hook), kind), (family.name, hook)
    if family.peers:
        assert callable(family.hook("peers"))
    assert family.trainer and family.client  # every built-in family trains and has a client command


def test_a_hook_that_is_not_module_colon_attribute_is_refused_at_declaration():
    with pytest.raises(ValueError, match="trainer 'artforge.families.dcgan.train' is not a 'module:attribute'"):
        Family(name="x", description="", config_cls=object, build_network=object, make_spec=object,
               trainer="artforge.families.dcgan.train")


def test_a_hook_that_does_not_load_is_a_one_line_error():
    family = Family(name="x", description="", config_cls=object, build_network=object, make_spec=object,
                    client="artforge.families.dcgan.train:NO_SUCH_VERB")
    with pytest.raises(Exception, match="family 'x': its client hook 'artforge.families.dcgan.train:NO_SUCH_VERB' "
                                        "cannot be loaded"):
        family.hook("client")
