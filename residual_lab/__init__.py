"""residual_lab: why residual connections let deep networks train."""

from residual_lab.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # for every config loaded from a run directory; composing conf/ adds trainer/schema (conf_dir)
