"""residual_lab: why residual connections let deep networks train."""

from residual_lab.naming import register_resolvers
from residual_lab.resolvers import register_schedule_resolvers
from residual_lab.schema import register as register_schema

__version__ = "0.1.0"

register_resolvers()
register_schedule_resolvers()
register_schema()  # trainer/schema for Hydra, the num_classes_of resolver
