"""residual_lab: why residual connections let deep networks train."""

from residual_lab.resolvers import register

__version__ = "0.1.0"

register()  # the resolvers conf/ uses and trainer/schema, for every Hydra app, test and notebook
